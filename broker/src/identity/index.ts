// SPIFFE primitives, shared by the broker and the requester side (agents/).
export * from './spiffe-id.js';
export * from './bundle.js';
export * from './x509-svid.js';
export * from './svid-cache.js';
