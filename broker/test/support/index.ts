export * from './broker.js';
export * from './redis.js';
export { CertificateAuthority, KeyUsageFlags, type CertificateOptions, type IssuedSvid } from '../../src/dev/ca.js';
export * from './process.js';
export { connectRedis } from '../../src/redis/connection.js';
export * from './audit.js';
