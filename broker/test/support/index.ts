export * from './broker.js';
export * from './redis.js';
export { CertificateAuthority, KeyUsageFlags, type CertificateOptions, type IssuedSvid } from '../../src/dev/ca.js';
export * from './svid-cases.js';
export * from './workload-api.js';
export { createLogger, silentLogger, type Logger } from '../../src/observability/logger.js';
export * from './process.js';
export { connectRedis } from '../../src/redis/connection.js';
export * from './audit.js';
// The Slack Web API fake, for tests that run a broker with Slack on.
export { FakeSlack, type FakeMessage, type FakeSlackOptions, type FakeView } from '@countersign/approvers/testing';
export * from './sentinel.js';
export * from './cluster.js';
