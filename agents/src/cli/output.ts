// What `countersign request`, `watch` and `run` print about an outcome: the
// token, one JSON object, or shell assignments (--output token|json|env).
import type { OperationResult } from '../sdk/client.js';
import { printPending } from './approvals-output.js';

import { OUTPUT_MODES, type OutputMode } from './output-modes.js';

export { OUTPUT_MODES, type OutputMode };

type Print = (line: string) => void;

/** A value quoted for POSIX shells: 'it'\''s'. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

export function resultJson(result: OperationResult): Record<string, unknown> {
  return {
    state: result.state,
    request_id: result.requestId,
    rule: result.rule || undefined,
    message: result.message || undefined,
    token: result.token,
    credential_id: result.credentialId,
    credential_expires_at: result.credentialExpiresAt?.toISOString(),
    expires_at: result.expiresAt?.toISOString(),
    poll_interval_ms: result.pollIntervalMs,
  };
}

/** Why a request did not end approved, for people: "denied: denied by bob (cli): freeze (rule prod-deploys)". */
export function outcomeLine(result: OperationResult): string {
  return `${result.state.toLowerCase()}: ${result.message || 'no reason given'}${result.rule ? ` (rule ${result.rule})` : ''}`;
}

/**
 * token: the credential on stdout (the request id when pending; the reason on stderr otherwise).
 * json:  one JSON object on stdout.
 * env:   `export COUNTERSIGN_...=...` lines for `eval "$(countersign ...)"`.
 */
export function printResult(result: OperationResult, mode: OutputMode, out: Print, err: Print): void {
  switch (mode) {
    case 'json':
      out(JSON.stringify(resultJson(result), null, 2));
      return;
    case 'env': {
      const vars: [string, string | undefined][] = [
        ['COUNTERSIGN_REQUEST_ID', result.requestId],
        ['COUNTERSIGN_STATE', result.state],
        ['COUNTERSIGN_TOKEN', result.token],
        ['COUNTERSIGN_TOKEN_EXPIRES_AT', result.credentialExpiresAt?.toISOString()],
      ];
      for (const [name, value] of vars) if (value !== undefined) out(`export ${name}=${shellQuote(value)}`);
      if (result.state !== 'APPROVED' && result.state !== 'PENDING_APPROVAL') err(outcomeLine(result));
      return;
    }
    case 'token':
      switch (result.state) {
        case 'APPROVED':
          out(result.token ?? '');
          return;
        case 'PENDING_APPROVAL':
          printPending(result, err);
          out(result.requestId);
          return;
        default:
          err(outcomeLine(result));
      }
  }
}
