export * from './sdk/client.js';
export * from './sdk/errors.js';
export * from './sdk/identity.js';
export * from './verify/verify.js';
export * from './sdk/approvals.js';
