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
} as const;
