// `countersign-broker audit export|verify`: the command definitions; audit.ts runs them, imported
// when one runs.
import { Command, InvalidArgumentError, Option } from 'commander';
import { systemClock } from '../clock.js';
import { parseDuration } from '../config/duration.js';
import { withConfigOptions, type ConfigFlags } from './config-source.js';
import type { RangeFlags, VerifyFlags } from './audit.js';
import { AUDIT_EXIT_HELP } from './constants.js';

function seqOption(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError(`expected a sequence number >= 1, got ${JSON.stringify(value)}`);
  return n;
}

/** An RFC 3339 time, or a duration meaning "that long ago" (24h, 30m). */
function timeOption(value: string): number {
  const ago = parseDuration(value);
  if (ago !== undefined) return systemClock.now() - ago;
  const ms = Date.parse(value);
  if (Number.isNaN(ms) || !/^\d{4}-\d{2}-\d{2}/.test(value))
    throw new InvalidArgumentError(
      `expected a time like 2026-03-01T00:00:00Z or a duration ago like 24h, got ${JSON.stringify(value)}`,
    );
  return ms;
}

export function auditCommand(): Command {
  const audit = new Command('audit')
    .description('export and verify the tamper-evident audit trail')
    .addHelpText('after', AUDIT_EXIT_HELP);

  withConfigOptions(audit.command('export').description('write the audit chain and its checkpoints as JSON lines'))
    .option('--from-seq <n>', 'first sequence number', seqOption)
    .option('--to-seq <n>', 'last sequence number', seqOption)
    .option(
      '--since <time>',
      'from the first record at or after this time (RFC 3339, or a duration ago: 24h)',
      timeOption,
    )
    .option('--until <time>', 'up to the last record at or before this time', timeOption)
    .option('--out <file>', 'write here instead of stdout')
    .action(async (o: ConfigFlags & RangeFlags & { out?: string }) => (await import('./audit.js')).runAuditExport(o));

  withConfigOptions(
    audit
      .command('verify')
      .description('check the chain, the checkpoint signatures and the approval evidence (from Redis, or --file)'),
  )
    .addHelpText('after', AUDIT_EXIT_HELP)
    .option('--file <export.jsonl>', 'verify an exported file instead of Redis')
    .option(
      '--jwks <file-or-url>',
      'public keys for the checkpoints (repeatable); default: every key in the configuration',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option('--from-seq <n>', 'first sequence number (Redis only)', seqOption)
    .option('--to-seq <n>', 'last sequence number (Redis only)', seqOption)
    .option(
      '--against <file>',
      'also compare with a copy from outside Redis (the audit.file sink, an earlier export) and name what the chain lacks',
    )
    .addOption(new Option('--output <mode>', 'what to print').choices(['text', 'json']).default('text'))
    .action(async (o: VerifyFlags) => (await import('./audit.js')).runAuditVerify(o));

  return audit;
}
