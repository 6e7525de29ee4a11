export {
  createCountersignMcpServer,
  outcomeText,
  MAX_WAIT_SECONDS,
  OwnRequests,
  type CountersignMcpOptions,
} from './tools.js';
export { serveHttp, serveStdio, type HttpOptions, type HttpServing } from './serve.js';
export { bearerMatches, defaultSecretFile, loadBearerSecret } from './bearer-secret.js';
export { McpGuardProxy, type ProxyOptions } from './proxy.js';
export {
  loadProxyConfig,
  parseProxyConfig,
  DEFAULT_CREDENTIAL_META_KEY,
  REQUEST_ID_META_KEY,
  type GuardedTool,
  type ProxyConfig,
} from './proxy-config.js';
export { compileTemplate, TemplateError, type Template } from './template.js';
