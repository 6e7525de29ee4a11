// `countersign-broker keys`: create signing keys and see which one signs, which
// are published, and which can be removed. Private keys are never printed.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { systemClock } from '../clock.js';
import { formatDuration } from '../config/duration.js';
import {
  generateSigningKeyPem,
  loadSigningKey,
  parseSigningKey,
  type KeyStatus,
  type SigningAlgorithm,
} from '../credentials/keys.js';
import { CountersignError } from '../errors.js';
import { loadConfigFrom, loadKeyring, withConfigOptions, type ConfigFlags } from './config-source.js';
import { out } from './output.js';

/** How long to publish a new key before it signs: resource servers cache the JWKS (jose's default is 10 minutes). */
export const SUGGESTED_PUBLISH_LEAD_MS = 15 * 60_000;

const iso = (ms: number | undefined): string => (ms === undefined ? '-' : new Date(ms).toISOString());

function describe(s: KeyStatus, now: number): string {
  switch (s.state) {
    case 'upcoming':
      return `upcoming: published, signs from ${iso(s.activateAt)} (in ${formatDuration(Math.ceil(((s.activateAt as number) - now) / 1000) * 1000)})`;
    case 'signing':
      return 'signing';
    case 'retiring':
      return `retiring: replaced at ${iso(s.replacedAt)}, published until ${iso(s.publishedUntil)}`;
    case 'expired':
      return `expired: no longer published since ${iso(s.publishedUntil)}; its file can be removed from the configuration`;
  }
}

export function keysCommand(): Command {
  const keys = new Command('keys').description('create and inspect credential signing keys');

  keys
    .command('create')
    .description('write a new private key (PKCS#8 PEM, mode 0600) and print its kid and the configuration to add')
    .requiredOption('--out <file>', 'where to write the key')
    .addOption(new Option('--alg <alg>', 'signature algorithm').choices(['ES256', 'EdDSA']).default('ES256'))
    .option('--force', 'overwrite an existing file')
    .action(async (o: { out: string; alg: SigningAlgorithm; force?: boolean }) => {
      if (existsSync(o.out) && !o.force)
        throw new InvalidArgumentError(`${o.out} exists; choose another --out or add --force`);
      const pem = generateSigningKeyPem(o.alg);
      await mkdir(dirname(o.out), { recursive: true });
      await writeFile(o.out, pem, { mode: 0o600 });
      const key = await parseSigningKey(pem, o.out);
      const activateAt = new Date(Math.ceil((systemClock.now() + SUGGESTED_PUBLISH_LEAD_MS) / 60_000) * 60_000)
        .toISOString()
        .replace('.000Z', 'Z');
      out(`created ${o.out} (${key.alg}), kid ${key.kid}`);
      out('');
      out('Add it to credentials.signing_keys; it is published at once and signs from activate_at.');
      out('Leave resource servers time to fetch the new JWKS first (15 minutes or more):');
      out('');
      out(`    - file: ${o.out}`);
      out(`      activate_at: ${activateAt}`);
      out('');
      out(
        'Once it signs, the previous key stays published for max_ttl + 5 minutes; `keys list` says when its file can go.',
      );
    });

  withConfigOptions(
    keys
      .command('list')
      .description('list the configured keys: which signs, which are published, which can be removed'),
  )
    .addOption(new Option('--output <mode>', 'what to print').choices(['text', 'json']).default('text'))
    .action(async (o: ConfigFlags & { output: 'text' | 'json' }) => {
      const config = await loadConfigFrom(o);
      const keyring = await loadKeyring(config);
      const now = systemClock.now();
      const status = keyring.status(now);
      if (o.output === 'json') {
        out(JSON.stringify(status, null, 2));
        return;
      }
      for (const s of status) out(`${s.kid}  ${s.alg.padEnd(5)}  ${s.source}\n    ${describe(s, now)}`);
    });

  withConfigOptions(
    keys
      .command('jwks')
      .description('print the JWKS the broker publishes now (--all: every configured key, for auditors)'),
  )
    .option('--all', 'include keys no longer published (to verify old audit checkpoints)')
    .action(async (o: ConfigFlags & { all?: boolean }) => {
      const keyring = await loadKeyring(await loadConfigFrom(o));
      out(JSON.stringify(o.all ? keyring.allPublicJwks() : keyring.jwks(systemClock.now()), null, 2));
    });

  keys
    .command('show')
    .description("print a key file's kid, algorithm and public JWK (never the private key)")
    .argument('<file>', 'PKCS#8 PEM private key')
    .action(async (file: string) => {
      const key = await loadSigningKey(file).catch((e: unknown) => {
        throw e instanceof CountersignError
          ? e
          : new CountersignError('invalid_argument', 'ERR_SIGNING_KEY_INVALID', String(e));
      });
      out(`kid ${key.kid}  ${key.alg}`);
      out(JSON.stringify(key.publicJwk, null, 2));
    });

  return keys;
}
