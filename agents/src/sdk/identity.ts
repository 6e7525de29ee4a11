// The requester's own SVID and the trust bundle it checks the broker against,
// from explicit files or the environment.
import { readFileSync } from 'node:fs';
import { CountersignClientError } from './errors.js';

export interface IdentityFiles {
  certFile?: string | undefined;
  keyFile?: string | undefined;
  caFile?: string | undefined;
}

export interface ClientIdentity {
  /** SVID chain, leaf first (PEM). */
  certChainPem: string;
  keyPem: string;
  /** Trust bundle used to authenticate the broker (PEM). */
  caPem: string;
}

export const ENV = {
  addr: 'COUNTERSIGN_ADDR',
  cert: 'COUNTERSIGN_CERT',
  key: 'COUNTERSIGN_KEY',
  ca: 'COUNTERSIGN_CA',
  serverId: 'COUNTERSIGN_SERVER_ID',
  /** The broker's JWKS (countersign verify). */
  jwksUrl: 'COUNTERSIGN_JWKS_URL',
} as const;

function readPem(file: string, what: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new CountersignClientError('ERR_IDENTITY_FILE', `${what} ${file} (${flag}): ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

/** Files from options, falling back to COUNTERSIGN_CERT / _KEY / _CA. */
export function loadIdentity(files: IdentityFiles, env: NodeJS.ProcessEnv = process.env): ClientIdentity {
  const certFile = files.certFile ?? env[ENV.cert];
  const keyFile = files.keyFile ?? env[ENV.key];
  const caFile = files.caFile ?? env[ENV.ca];
  const missing = [
    certFile ? undefined : `--cert or ${ENV.cert}`,
    keyFile ? undefined : `--key or ${ENV.key}`,
    caFile ? undefined : `--ca or ${ENV.ca}`,
  ].filter((m) => m !== undefined);
  if (missing.length > 0) {
    throw new CountersignClientError('ERR_IDENTITY_MISSING', `no SVID to authenticate with: set ${missing.join(', ')}`);
  }
  return {
    certChainPem: readPem(certFile as string, 'SVID certificate', `--cert/${ENV.cert}`),
    keyPem: readPem(keyFile as string, 'SVID key', `--key/${ENV.key}`),
    caPem: readPem(caFile as string, 'trust bundle', `--ca/${ENV.ca}`),
  };
}
