// The identity a client presents and checks the broker with, wherever it came from
// (files, the Workload API, an exchanged OIDC token). A leaf, so that the sources
// (workload-api.ts, oidc.ts) and identity.ts, which picks one, do not import each other.

export interface ClientIdentity {
  /** SVID chain, leaf first (PEM). */
  certChainPem: string;
  keyPem: string;
  /** Trust bundle used to authenticate the broker (PEM). */
  caPem: string;
}
