// The environment variables the SDK and CLI read, in a module of their own (no imports) so
// the CLI can name them in --help without loading the client.
export const ENV = {
  addr: 'COUNTERSIGN_ADDR',
  cert: 'COUNTERSIGN_CERT',
  key: 'COUNTERSIGN_KEY',
  ca: 'COUNTERSIGN_CA',
  serverId: 'COUNTERSIGN_SERVER_ID',
  /** The broker's JWKS (countersign verify). */
  jwksUrl: 'COUNTERSIGN_JWKS_URL',
  /** "1"/"true": use the Workload API at SPIFFE_ENDPOINT_SOCKET; or an endpoint address. */
  workloadApi: 'COUNTERSIGN_WORKLOAD_API',
  /** github | gitlab | k8s | file:PATH: exchange that platform's OIDC token for an SVID (no SPIRE needed). */
  oidc: 'COUNTERSIGN_OIDC',
  /** The audience to ask the platform for (GitHub); default countersign. */
  oidcAudience: 'COUNTERSIGN_OIDC_AUDIENCE',
  /** The broker's name for the issuer (identity.oidc[].name); default: found by the token's iss. */
  oidcIssuer: 'COUNTERSIGN_OIDC_ISSUER',
} as const;
