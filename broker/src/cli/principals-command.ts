// `countersign-broker principals link|passkeys`: the command definitions; principals.ts runs
// them, imported when one runs.
import { Command, InvalidArgumentError } from 'commander';
import { parseDuration } from '../config/duration.js';
import { withConfigOptions, type ConfigFlags } from './config-source.js';

function ttlOption(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms < 60_000 || ms > 24 * 3600_000)
    throw new InvalidArgumentError(`expected a duration between 1m and 24h, got ${JSON.stringify(value)}`);
  return ms;
}

export function principalsCommand(): Command {
  const principals = new Command('principals').description(
    'sign-in links and passkeys of approvers (the approver console)',
  );

  withConfigOptions(
    principals.command('link').description('print a one-time sign-in link to the approver console for one principal'),
  )
    .argument('<name>', 'the principal (principals file)')
    .option('--request <id>', 'open this request after signing in')
    .option('--ttl <duration>', 'how long the link works (default console.sign_in_link_ttl)', ttlOption)
    .action(async (name: string, o: ConfigFlags & { request?: string; ttl?: number }) =>
      (await import('./principals.js')).runPrincipalsLink(name, o),
    );

  withConfigOptions(
    principals
      .command('passkeys')
      .description("list a principal's passkeys, or remove one (--remove ID) when it is lost"),
  )
    .argument('<name>', 'the principal (principals file)')
    .option('--remove <credential-id>', 'remove this passkey (audited)')
    .action(async (name: string, o: ConfigFlags & { remove?: string }) =>
      (await import('./principals.js')).runPrincipalsPasskeys(name, o),
    );

  return principals;
}
