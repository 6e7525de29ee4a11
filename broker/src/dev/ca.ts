// The dev trust domain's CA now lives in identity/ca.ts (the OIDC exchange signs SVIDs with it too).
export * from '../identity/ca.js';
