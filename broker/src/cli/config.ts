// `countersign-broker config check FILE`: the validation `serve` runs on its configuration,
// without starting anything. The Helm chart's tests run it on the ConfigMap the chart renders,
// so the chart cannot write a configuration the broker refuses at start-up.
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { formatDuration } from '../config/duration.js';
import { parseConfig } from '../config/config.js';
import { YamlValidationError } from '../config/yaml-file.js';
import { CountersignError } from '../errors.js';
import { err, out } from './output.js';

async function readInput(file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new YamlValidationError('ERR_CONFIG_INVALID', file, [
      { where: file, path: '', message: `cannot read: ${(e as Error).message}` },
    ]);
  }
}

/** Checks each file; prints a verdict per file and returns false when any is invalid. */
export async function runConfigCheck(files: string[]): Promise<boolean> {
  let allValid = true;
  for (const file of files) {
    const name = file === '-' ? 'config.yaml (stdin)' : file;
    try {
      const config = parseConfig(await readInput(file), name, process.env);
      out(`${name}: valid`);
      out(
        `  trust domain ${config.trust_domain}; gRPC ${config.grpc.listen}, HTTP ${config.http.listen}${config.health.grpc_listen ? `, health ${config.health.grpc_listen}` : ''}`,
      );
      out(
        `  credentials: default TTL ${formatDuration(config.credentials.default_ttl)}, at most ${formatDuration(config.credentials.max_ttl)}`,
      );
      for (const o of config.identity.oidc) {
        out(
          `  OIDC exchange: ${o.name} (${o.issuer}, aud ${o.audience}) -> ${o.spiffe_id}, SVIDs up to ${formatDuration(o.svid_ttl)}${Object.keys(o.require).length === 0 ? '; WARNING: no require, every token of this issuer for this audience gets an SVID' : ''}`,
        );
      }
    } catch (e) {
      if (!(e instanceof CountersignError)) throw e;
      allValid = false;
      err(e.message);
    }
  }
  out(
    '(the files a configuration names - SVID, bundles, policy, principals, signing keys, the OIDC CA - are read when the broker starts)',
  );
  return allValid;
}

export function configCommand(): Command {
  const config = new Command('config').description('check broker configuration files');
  config
    .command('check')
    .description(
      'validate configuration files exactly as serve does, without starting anything (exit 0 all valid, 3 otherwise)',
    )
    .argument('<files...>', 'broker configuration (YAML); - reads one from stdin')
    .action(async (files: string[]) => {
      if (!(await runConfigCheck(files))) process.exitCode = 3;
    });
  return config;
}
