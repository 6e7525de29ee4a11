// Operator commands read the same configuration as `serve` (--config FILE) or
// a dev-mode directory (--dir DIR, whose config.yaml `dev` wrote).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { loadConfig, type BrokerConfig } from '../config/config.js';
import { CountersignError } from '../errors.js';

export interface ConfigFlags {
  config?: string;
  dir?: string;
}

export const DEFAULT_DEV_DIR = '.countersign/dev';

export const withConfigOptions = (cmd: Command): Command =>
  cmd
    .option('--config <file>', 'broker configuration, as for serve')
    .option(
      '--dir <dir>',
      `dev-mode directory (uses DIR/config.yaml; default ${DEFAULT_DEV_DIR} when neither is given)`,
    );

export function configFileOf(
  flags: ConfigFlags,
  options: { required: boolean } = { required: true },
): string | undefined {
  if (flags.config !== undefined && flags.dir !== undefined)
    throw new InvalidArgumentError('give --config or --dir, not both');
  if (flags.config !== undefined) return flags.config;
  const dir = flags.dir ?? DEFAULT_DEV_DIR;
  const file = join(dir, 'config.yaml');
  if (existsSync(file)) return file;
  if (flags.dir !== undefined) {
    throw new CountersignError(
      'invalid_argument',
      'ERR_CONFIG_INVALID',
      `${file} does not exist; run countersign-broker dev --dir ${dir} first`,
    );
  }
  if (options.required) {
    throw new CountersignError(
      'invalid_argument',
      'ERR_CONFIG_INVALID',
      `no configuration: give --config FILE or --dir DIR (${DEFAULT_DEV_DIR}/config.yaml does not exist)`,
    );
  }
  return undefined;
}

export async function loadConfigFrom(flags: ConfigFlags): Promise<BrokerConfig> {
  return loadConfig(configFileOf(flags) as string);
}

export { loadKeyring } from '../credentials/load.js';
