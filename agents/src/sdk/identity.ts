// The requester's own SVID and the trust bundle it checks the broker against,
// from explicit files, the environment, or the SPIFFE Workload API.
import { readFileSync } from 'node:fs';
import { SPIFFE_ENDPOINT_SOCKET } from '@countersign/proto/workload-api';
import type { ClientIdentity } from './client-identity.js';
import { CountersignClientError } from './errors.js';
import { devEnvHint } from './hints.js';
import { WorkloadApiIdentity } from './workload-api.js';

export interface IdentityFiles {
  certFile?: string | undefined;
  keyFile?: string | undefined;
  caFile?: string | undefined;
}

export type { ClientIdentity } from './client-identity.js';

import { ENV } from './env.js';

export { ENV };

export interface IdentityChoice extends IdentityFiles {
  /** Use the Workload API: true for SPIFFE_ENDPOINT_SOCKET, or an endpoint (unix:///path, tcp://IP:port). */
  workloadApi?: boolean | string | undefined;
  /** Which of the Workload API's SVIDs to use; default the first. */
  spiffeId?: string | undefined;
  /** How long to wait for the first SVID from the Workload API. Default 30 s. */
  workloadApiTimeoutMs?: number | undefined;
  /** Exchange an OIDC token for an SVID: github, gitlab, k8s or file:PATH (needs caFile: the broker's bundle). */
  oidc?: string | undefined;
  oidcAudience?: string | undefined;
  oidcIssuer?: string | undefined;
}

const truthy = (v: string | undefined): boolean => v !== undefined && /^(1|true|yes)$/i.test(v);

/**
 * Files when any are named (flags or COUNTERSIGN_CERT/_KEY/_CA); the Workload API
 * when asked for (--workload-api, COUNTERSIGN_WORKLOAD_API) or, with no files
 * named, when SPIFFE_ENDPOINT_SOCKET is set.
 */
export async function resolveIdentity(
  choice: IdentityChoice,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ClientIdentity | { source: WorkloadApiIdentity }> {
  const filesNamed = [choice.certFile, choice.keyFile, choice.caFile, env[ENV.cert], env[ENV.key], env[ENV.ca]].some(
    (f) => f !== undefined && f !== '',
  );
  const envChoice = env[ENV.workloadApi];
  const wanted: boolean | string =
    choice.workloadApi !== undefined && choice.workloadApi !== false
      ? choice.workloadApi
      : envChoice !== undefined && envChoice !== '' && !/^(0|false|no)$/i.test(envChoice)
        ? truthy(envChoice) || envChoice
        : false;
  const explicitFiles = [choice.certFile, choice.keyFile, choice.caFile].some((f) => f !== undefined);
  if (wanted !== false && explicitFiles) {
    throw new CountersignClientError(
      'ERR_USAGE',
      'use either --cert/--key/--ca or the Workload API (--workload-api), not both',
    );
  }
  const useWorkloadApi = wanted !== false || (!filesNamed && (env[SPIFFE_ENDPOINT_SOCKET] ?? '') !== '');
  if (!useWorkloadApi) return loadIdentity(choice, env);
  const source = await WorkloadApiIdentity.connect({
    address: typeof wanted === 'string' ? wanted : undefined,
    spiffeId: choice.spiffeId,
    timeoutMs: choice.workloadApiTimeoutMs,
    env,
  });
  return { source };
}

function readPem(file: string, what: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new CountersignClientError(
      'ERR_IDENTITY_FILE',
      `${what} ${file} (${flag}): ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
    );
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
    throw new CountersignClientError(
      'ERR_IDENTITY_MISSING',
      `no SVID to authenticate with: set ${missing.join(', ')}, or use the SPIFFE Workload API (--workload-api, or ${SPIFFE_ENDPOINT_SOCKET})${devEnvHint()}`,
    );
  }
  return {
    certChainPem: readPem(certFile as string, 'SVID certificate', `--cert/${ENV.cert}`),
    keyPem: readPem(keyFile as string, 'SVID key', `--key/${ENV.key}`),
    caPem: readPem(caFile as string, 'trust bundle', `--ca/${ENV.ca}`),
  };
}
