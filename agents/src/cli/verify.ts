// `countersign verify`: check a credential the way a resource server would, and
// optionally redeem it once. Exit 0 only when it is valid for what was asked.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { ENV } from '../sdk/env.js';
import type { RemoteJwks } from '../verify/jwks.js';
import type { VerifiedCredential } from '../verify/verify.js';

export const VERIFY_EXIT = { valid: 0, error: 1, usage: 2, invalid: 3, expired: 4, alreadyRedeemed: 7 } as const;

export const VERIFY_EXIT_HELP = `
Exit codes of verify:
  0  valid for this audience (and operation, resource, parameters, certificate when given); redeemed when --redeem
  1  error: the JWKS or the broker could not be reached
  2  usage error
  3  invalid, or not valid for what was asked (the reason and its code are printed)
  4  expired
  7  already redeemed (--redeem): when and by whom is printed

Token: COUNTERSIGN_TOKEN, --token-file FILE, or --token - to read it from stdin (--token JWT
works too, but puts the credential where ps and shell history see it).
Keys: --jwks-url or ${ENV.jwksUrl} (countersign-broker dev writes it into its env files).`;

interface VerifyFlags {
  token?: string;
  tokenFile?: string;
  audience: string;
  issuer?: string;
  operation?: string;
  resource?: string;
  param: string[];
  parametersJson?: string;
  cert?: string;
  jwksUrl?: string;
  redeem?: boolean;
  output: 'text' | 'json';
  addr?: string;
  identityCert?: string;
  key?: string;
  ca?: string;
}

const out = (line: string) => process.stdout.write(`${line}\n`);
const err = (line: string) => process.stderr.write(`${line}\n`);
/** What verify needs once it runs, loaded then (the client, jose): `countersign --help` does not pay for it. */
async function load() {
  const [client, errors, jwks, verify, params] = await Promise.all([
    import('../sdk/client.js'),
    import('../sdk/errors.js'),
    import('../verify/jwks.js'),
    import('../verify/verify.js'),
    import('./params.js'),
  ]);
  return { ...client, ...errors, ...jwks, ...verify, ...params };
}

function readToken(flag: string | undefined, file: string | undefined, usage: (message: string) => Error): string {
  if (flag !== undefined && file !== undefined) throw usage('--token and --token-file: give the credential one way');
  if (file !== undefined) {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (e) {
      throw usage(`--token-file: cannot read ${file}: ${(e as Error).message}`);
    }
  }
  const value = flag ?? process.env.COUNTERSIGN_TOKEN;
  if (value === undefined || value === '')
    throw usage('no token: set COUNTERSIGN_TOKEN, or give --token-file FILE or --token - (stdin)');
  return (value === '-' ? readFileSync(0, 'utf8') : value).trim();
}

function summary(v: VerifiedCredential): string[] {
  const c = v.claims;
  const lines = [
    `valid: ${v.details.operation} on ${v.details.resource} for ${c.sub}`,
    `  audience    ${Array.isArray(c.aud) ? c.aud.join(', ') : c.aud}`,
    `  issuer      ${c.iss}  (key ${v.kid ?? '-'}, ${v.alg})`,
    `  expires     ${new Date(c.exp * 1000).toISOString()}`,
    `  id          ${c.jti}`,
    `  assurance   ${c.acr ?? '-'}`,
  ];
  if (c.act) lines.push(`  on behalf   ${c.act.sub}`);
  if (c.approval) {
    lines.push(`  approval    request ${c.approval.request_id}, rule ${c.approval.rule}`);
    for (const a of c.approval.approvers)
      lines.push(
        `              ${a.principal} via ${a.channel} at ${new Date(a.at * 1000).toISOString()} (${a.step_up})`,
      );
  }
  if (v.redeemedAt)
    lines.push(`  redeemed    ${v.redeemedAt.toISOString()} (single use: a second redemption is refused)`);
  return lines;
}

export function verifyCommand(): Command {
  return new Command('verify')
    .description(
      'check a credential as a resource server would (signature, audience, expiry, operation, parameters, certificate)',
    )
    .option(
      '--token <jwt>',
      'the credential (default COUNTERSIGN_TOKEN; - reads stdin; prefer --token-file or stdin: argv is visible in ps)',
    )
    .option('--token-file <file>', 'read the credential from this file')
    .requiredOption('--audience <aud>', 'who you are: the credential must be issued for this audience')
    .option('--issuer <iss>', 'expected issuer (the broker SPIFFE ID)')
    .option('--operation <op>', 'the operation you are about to perform')
    .option('--resource <res>', 'the resource you are about to act on')
    .option(
      '--param <k=v>',
      'an actual parameter (repeatable); k:=JSON for non-strings',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option('--parameters-json <json>', 'the actual parameters as one JSON object')
    .option('--cert <file>', 'the client certificate the caller presented (PEM); the credential must be bound to it')
    .option('--jwks-url <url>', `the broker's JWKS (default ${ENV.jwksUrl})`)
    .option('--redeem', 'after the checks pass, redeem it once with the broker (needs COUNTERSIGN_ADDR and an SVID)')
    .option('--addr <host:port>', 'broker address for --redeem (default COUNTERSIGN_ADDR)')
    .option('--identity-cert <file>', 'your SVID for --redeem (default COUNTERSIGN_CERT)')
    .option('--key <file>', 'your SVID key for --redeem (default COUNTERSIGN_KEY)')
    .option('--ca <file>', 'trust bundle for --redeem (default COUNTERSIGN_CA)')
    .addOption(new Option('--output <mode>', 'what to print').choices(['text', 'json']).default('text'))
    .addHelpText('after', VERIFY_EXIT_HELP)
    .action(async (o: VerifyFlags) => {
      const {
        CountersignClient,
        CountersignClientError,
        CredentialVerificationError,
        parseParams,
        RemoteJwks,
        verifyCredential,
      } = await load();
      const usage = (message: string) => new CountersignClientError('ERR_USAGE', message);
      const token = readToken(o.token, o.tokenFile, usage);
      const jwksUrl = o.jwksUrl ?? process.env[ENV.jwksUrl];
      if (!jwksUrl)
        throw usage(
          `no JWKS: give --jwks-url (e.g. http://127.0.0.1:7080/.well-known/jwks.json) or set ${ENV.jwksUrl}`,
        );
      let jwks: RemoteJwks;
      try {
        jwks = new RemoteJwks(jwksUrl);
      } catch (e) {
        throw usage(`--jwks-url: ${(e as Error).message}`);
      }
      let certificate: string | undefined;
      if (o.cert !== undefined) {
        try {
          certificate = readFileSync(o.cert, 'utf8');
        } catch (e) {
          throw usage(`--cert ${o.cert}: ${(e as Error).message}`);
        }
      }
      const hasParams = o.param.length > 0 || o.parametersJson !== undefined;
      const client = o.redeem
        ? CountersignClient.fromEnv({ address: o.addr, certFile: o.identityCert, keyFile: o.key, caFile: o.ca })
        : undefined;
      try {
        const verified = await verifyCredential(token, {
          jwks,
          audience: o.audience,
          issuer: o.issuer,
          operation: o.operation,
          resource: o.resource,
          parameters: hasParams ? parseParams(o.param, o.parametersJson) : undefined,
          clientCertificate: certificate,
          redeem: client,
        });
        if (o.output === 'json') {
          out(
            JSON.stringify(
              {
                valid: true,
                kid: verified.kid,
                alg: verified.alg,
                redeemed_at: verified.redeemedAt?.toISOString(),
                claims: verified.claims,
              },
              null,
              2,
            ),
          );
        } else {
          for (const line of summary(verified)) out(line);
          const unchecked = [
            o.operation === undefined ? 'operation' : undefined,
            o.resource === undefined ? 'resource' : undefined,
            hasParams ? undefined : 'parameters',
            certificate === undefined ? 'certificate binding' : undefined,
            o.issuer === undefined ? 'issuer' : undefined,
          ].filter((x) => x !== undefined);
          if (unchecked.length > 0) err(`note: not checked (nothing given to compare with): ${unchecked.join(', ')}`);
        }
        process.exitCode = VERIFY_EXIT.valid;
      } catch (e) {
        if (!(e instanceof CredentialVerificationError)) throw e;
        if (o.output === 'json') out(JSON.stringify({ valid: false, code: e.code, message: e.message }, null, 2));
        else err(`invalid: ${e.message} [${e.code}]`);
        process.exitCode =
          e.code === 'ERR_CREDENTIAL_EXPIRED'
            ? VERIFY_EXIT.expired
            : e.code === 'ERR_CREDENTIAL_ALREADY_REDEEMED'
              ? VERIFY_EXIT.alreadyRedeemed
              : e.code === 'ERR_JWKS_UNAVAILABLE' || e.code === 'ERR_CREDENTIAL_REDEMPTION_FAILED'
                ? VERIFY_EXIT.error
                : VERIFY_EXIT.invalid;
      } finally {
        client?.close();
      }
    });
}
