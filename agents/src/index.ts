export * from './sdk/client.js';
export * from './sdk/errors.js';
export * from './sdk/identity.js';
export * from './sdk/workload-api.js';
export * from './verify/index.js';
export * from './sdk/approvals.js';
export { newClientRequestId, type RetryOptions } from './sdk/retry.js';
export * from './sdk/oidc.js';
