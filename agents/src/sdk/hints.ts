// What a person should check when the broker cannot be reached or trusted, or no identity is
// set: the address, the CA bundle, and in a repository with dev mode, the env files it wrote.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CountersignClientError } from './errors.js';

/** The dev-mode directory `npm start` creates, relative to the working directory. */
export const DEV_DIR = '.countersign/dev';

/** "; in dev mode: source .countersign/dev/env/deployer.env" when that directory exists here. */
export function devEnvHint(cwd: string = process.cwd()): string {
  if (!existsSync(join(cwd, DEV_DIR))) return '';
  return `; in this repository's dev mode: source ${DEV_DIR}/env/deployer.env (a workload) or ${DEV_DIR}/env/alice.env (an approver)`;
}

// Node's TLS errors about the broker's certificate chain, as grpc-js passes them on.
const UNTRUSTED =
  /self[- ]signed certificate|unable to (get local issuer|verify the first) certificate|unable to get issuer certificate|certificate (has expired|is not yet valid|signature failure)|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_HAS_EXPIRED|broker certificate has no SPIFFE ID|broker presented spiffe:/i;
const REFUSED = /ECONNREFUSED|connection refused/i;

/** The useful part of grpc-js's "No connection established. Last error: X. Resolution note: ..." text. */
function lastError(message: string): string {
  const m = /Last error: (.*?)(?:\. Resolution note:.*)?$/s.exec(message);
  return (m?.[1] ?? message).replace(/\s*\(\d{4}-\d{2}-\d{2}T[\d:.]+Z\)$/, '').trim();
}

/**
 * An UNAVAILABLE error rewritten for a person: a certificate the client cannot trust fails at
 * once (ERR_BROKER_UNTRUSTED, never retried: waiting does not fix a wrong CA); a refused
 * connection names the address and how to start a broker. Other errors pass unchanged.
 */
export function explainConnectionError(e: CountersignClientError, address: string): CountersignClientError {
  if (e.code !== 'ERR_BROKER_UNAVAILABLE') return e;
  const cause = lastError(e.message);
  if (UNTRUSTED.test(e.message)) {
    return new CountersignClientError(
      'ERR_BROKER_UNTRUSTED',
      `cannot trust the broker at ${address}: ${cause}. Check the CA bundle (--ca or COUNTERSIGN_CA): it must hold the CA of the broker's trust domain, and --server-id (COUNTERSIGN_SERVER_ID) the broker's SPIFFE ID${devEnvHint()}`,
      e.grpcStatus,
      { cause: e },
    );
  }
  if (REFUSED.test(e.message)) {
    return new CountersignClientError(
      'ERR_BROKER_UNAVAILABLE',
      `no broker answers at ${address} (connection refused). Is it running? In the repository, \`npm start\` runs one in dev mode; the address comes from --addr or COUNTERSIGN_ADDR${devEnvHint()}`,
      e.grpcStatus,
      { cause: e },
    );
  }
  return new CountersignClientError(
    'ERR_BROKER_UNAVAILABLE',
    `cannot reach the broker at ${address}: ${cause}`,
    e.grpcStatus,
    { cause: e },
  );
}
