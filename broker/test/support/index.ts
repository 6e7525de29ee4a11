export * from './broker.js';
export * from './redis.js';
export { CertificateAuthority, KeyUsageFlags, type CertificateOptions, type IssuedSvid } from '../../src/dev/ca.js';
export * from './svid-cases.js';
export * from './workload-api.js';
export { createLogger, silentLogger, type Logger } from '../../src/observability/logger.js';
