// README.md "A two-minute tour", typed as a newcomer types it: every command of every `sh`
// block, as printed, into bash terminals in a copy of the repository with `npm start` (dev
// mode) running. What the README says about a command is checked too: `# exit N` at the end
// of a line is its exit code (0 otherwise), and a comment line right below a command is its
// output (`req_...` and `...` stand for what varies). `req_...` in a command is the request
// the tour just made. A command that waits for an approval holds its terminal while the
// next block, in another terminal, approves it, as the README's "third terminal" does. A
// request the CLI cannot approve (a passkey rule: ERR_STEP_UP_REQUIRED and the console's page)
// is approved in a browser, following the README's numbered steps with alice's banner link.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually } from '@countersign/broker/testing';
import { launchBrowser, PersonBrowser, type Browser } from './support/browser.js';
import { DocsWorkspace, shellBlocks } from './support/docs.js';

interface Command {
  text: string;
  exit: number;
  /** Output lines the README shows below the command. */
  shows: string[];
}

/** The commands of one block: continuation lines joined, prose comments dropped. */
export function commandsOf(block: string): Command[] {
  const commands: Command[] = [];
  let previousWasCommand = false;
  let pending = '';
  for (const line of block.split('\n')) {
    if (pending !== '' || (line.trim() !== '' && !line.trimStart().startsWith('#'))) {
      pending += pending === '' ? line : ` ${line.trim()}`;
      if (pending.endsWith('\\')) {
        pending = pending.slice(0, -1).trimEnd();
        continue;
      }
      const exit = /\s#\s*exit (\d+)/.exec(pending);
      commands.push({ text: pending, exit: exit ? Number(exit[1]) : 0, shows: [] });
      pending = '';
      previousWasCommand = true;
    } else if (line.trimStart().startsWith('# ') && previousWasCommand) {
      (commands[commands.length - 1] as Command).shows.push(line.trimStart().slice(2));
    } else {
      previousWasCommand = false;
    }
  }
  return commands;
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** A line the README shows, as a pattern: req_... is a request id, ... anything. */
const shownAs = (line: string) =>
  new RegExp(
    escape(line)
      .replace(/req_\\\.\\\.\\\./g, 'req_[A-Za-z0-9_-]+')
      .replace(/\\\.\\\.\\\./g, '.*'),
  );

/** A bash that stays open, as a terminal does: `source` and variables carry over between commands. */
class Terminal {
  private readonly child: ChildProcessWithoutNullStreams;
  private out = '';
  private err = '';
  /** The command running now, if any. */
  busy: Promise<{ code: number; output: string }> | undefined;

  constructor(
    readonly name: string,
    cwd: string,
    env: NodeJS.ProcessEnv,
  ) {
    this.child = spawn('bash', ['--noprofile', '--norc'], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (d: Buffer) => (this.out += d.toString()));
    this.child.stderr.on('data', (d: Buffer) => (this.err += d.toString()));
  }

  /** Types a command; the promise ends with its exit code and everything it printed. */
  type(command: string): Promise<{ code: number; output: string }> {
    const marker = `__tour_done_${Math.random().toString(36).slice(2)}__`;
    const outStart = this.out.length;
    const errStart = this.err.length;
    this.child.stdin.write(`{ ${command}\n} </dev/null; printf '\\n${marker}%d\\n' $?; printf '\\n${marker}\\n' >&2\n`);
    this.busy = eventually(
      `${this.name}: ${command}`,
      () => {
        const done = new RegExp(`\\n${marker}(\\d+)\\n`).exec(this.out.slice(outStart));
        if (done === null || !this.err.slice(errStart).includes(`\n${marker}\n`)) return undefined;
        const output =
          this.out.slice(outStart, outStart + done.index) + this.err.slice(errStart).split(`\n${marker}\n`)[0];
        return { code: Number(done[1]), output };
      },
      240_000,
      50,
    ).finally(() => (this.busy = undefined));
    return this.busy;
  }

  /** Where the output is now, for `since`. */
  mark(): { out: number; err: number } {
    return { out: this.out.length, err: this.err.length };
  }

  /** What was printed (stdout, then stderr) after a mark. */
  since(mark: { out: number; err: number }): string {
    return this.out.slice(mark.out) + this.err.slice(mark.err);
  }

  close(): void {
    this.child.kill('SIGKILL');
  }
}

// Read when the file loads: each block is a test of its own (each well within the 60 s per test).
const blocks = await shellBlocks('README.md', '## A two-minute tour');

describe('README.md: the two-minute tour, typed as printed', () => {
  let ws: DocsWorkspace;
  const terminals: Terminal[] = [];
  let browser: Browser | undefined;

  before(async () => {
    ws = await DocsWorkspace.create();
    await ws.startDev();
    // redis-cli reaches dev mode's Redis, as the README says: "needs -p PORT when dev mode started its own".
    const redisCli = spawnSync('sh', ['-c', 'command -v redis-cli'], { encoding: 'utf8' }).stdout.trim();
    assert.ok(redisCli, 'redis-cli is on PATH (it comes with redis-server)');
    const shims = join(ws.dir, '.countersign', 'bin');
    await mkdir(shims, { recursive: true });
    await writeFile(join(shims, 'redis-cli'), `#!/bin/sh\nexec ${redisCli} -p ${ws.redis.port} "$@"\n`);
    await chmod(join(shims, 'redis-cli'), 0o755);
    const env = ws.env({ PATH: `${shims}:${process.env.PATH ?? ''}` });
    terminals.push(new Terminal('second terminal', ws.dir, env), new Terminal('third terminal', ws.dir, env));
  });
  after(async () => {
    for (const t of terminals) t.close();
    await browser?.close();
    await ws?.close();
  });

  it('has the blocks this test knows how to run', () => {
    assert.ok(blocks.length >= 7, `${blocks.length} blocks`);
    assert.ok(
      blocks.some((b) => b.includes('SLACK_BOT_TOKEN')),
      'the Slack block is there (run only with a Slack workspace)',
    );
  });

  let lastRequestId: string | undefined;
  /** A command that waits for approval, with the terminal it holds. */
  let waiting: { terminal: Terminal; command: Command; done: Promise<{ code: number; output: string }> } | undefined;
  const requestIdIn = (text: string) =>
    [...text.matchAll(/\b(req_[A-Za-z0-9_-]{8,})/g)].map((m) => m[1] as string).pop();

  const check = (command: Command, result: { code: number; output: string }) => {
    assert.equal(
      result.code,
      command.exit,
      `"${command.text}" exited ${result.code}, the README says ${command.exit}:\n${result.output}`,
    );
    for (const line of command.shows)
      assert.match(result.output, shownAs(line), `"${command.text}" prints what the README shows`);
  };

  const finishWaiting = async () => {
    if (waiting === undefined) return;
    const { command, done } = waiting;
    waiting = undefined;
    check(command, await done);
  };

  /** "With a passkey, in the browser": the numbered steps, with alice's sign-in link from the npm start banner. */
  const approveInBrowser = async (requestUrl: string) => {
    const link = /sign in as alice\s+(\S+)/.exec(ws.devLog)?.[1];
    assert.ok(link, `the banner prints alice's sign-in link:\n${ws.devLog}`);
    browser ??= await launchBrowser();
    const person = await PersonBrowser.open(browser);
    try {
      const { page } = person;
      // 1. open alice's sign-in link and press Sign in
      await page.goto(link);
      await page.getByRole('button', { name: 'Sign in' }).click();
      // 2. under My passkeys, press Register a passkey
      await page.getByRole('link', { name: 'My passkeys' }).click();
      await page.getByRole('button', { name: 'Register a passkey' }).click();
      await page.getByText('Passkey registered.').waitFor();
      // 3. open the request from Pending requests, give a reason and press Approve
      await page.getByRole('link', { name: 'Pending requests' }).click();
      await page.locator(`a[href="${new URL(requestUrl).pathname}"]`).click();
      await page.getByLabel('Reason').fill('migration reviewed');
      await page.getByRole('button', { name: 'Approve' }).click();
      await page.getByText('Your vote is recorded.').waitFor();
    } finally {
      await person.close();
    }
  };

  /** The README says "approve it as alice, as above" for a wait that no block of its own approves. */
  const approveAsAlice = async () => {
    const approve = await ws.bash(
      `source .countersign/dev/env/alice.env && npx countersign approvals approve ${lastRequestId} --reason "as above"`,
    );
    const console = /\[ERR_STEP_UP_REQUIRED\]/.test(approve.stderr)
      ? /(http:\/\/localhost:\d+\/requests\/\S+)/.exec(approve.stderr)?.[1]
      : undefined;
    if (console !== undefined) await approveInBrowser(console);
    else assert.equal(approve.code, 0, approve.stdout + approve.stderr);
    await finishWaiting();
  };

  // Slack needs a real workspace and its tokens; every other block runs, in order, each a test
  // that goes on from where the one before left the terminals.
  for (const [index, block] of blocks.entries()) {
    if (block.includes('SLACK_BOT_TOKEN')) continue;
    it(`block ${index + 1}: ${(commandsOf(block)[0]?.text ?? '').slice(0, 60)}`, async () => {
      if (waiting !== undefined && !/approvals approve/.test(block)) await approveAsAlice();
      const resetting = block.includes('xargs -r redis-cli DEL');
      if (resetting) {
        // "stop dev mode (Ctrl-C in its terminal) ... and run npm start again"
        await finishWaiting();
        await ws.stopDev();
      }
      const terminal = terminals.find((t) => t !== waiting?.terminal) as Terminal;
      for (const command of commandsOf(block)) {
        const text = lastRequestId === undefined ? command.text : command.text.replace(/req_\.\.\./g, lastRequestId);
        const seenBefore = terminal.mark();
        const done = terminal.type(text);
        let settled = false;
        void done.then(
          () => (settled = true),
          () => (settled = true),
        );
        // Finished, or waiting for an approval: it printed a pending request and the line a
        // waiting CLI prints under it ("waiting for approval (Ctrl-C stops waiting; ...)", or
        // countersign run's "... runs once approved (Ctrl-C cancels the request)").
        const outcome = await Promise.race([
          done.then((r) => ({ finished: r })),
          eventually(
            `"${text}" to finish or wait for approval`,
            () => {
              if (settled) return { waits: '' }; // the race is decided; stop polling
              const printed = terminal.since(seenBefore);
              if (!/pending approval: request req_/.test(printed)) return undefined;
              if (!/\(Ctrl-C (stops waiting|cancels the request)/.test(printed)) return undefined;
              return { waits: requestIdIn(printed) as string };
            },
            240_000,
          ).then((w) => ({ waits: w.waits })),
        ]);
        if ('finished' in outcome) {
          check(command, outcome.finished);
          lastRequestId = requestIdIn(outcome.finished.output) ?? lastRequestId;
          // An approval from this terminal lets the waiting command go on.
          if (waiting !== undefined && /approvals (approve|deny)/.test(text)) await finishWaiting();
        } else {
          assert.equal(waiting, undefined, `block ${index}: two commands wait for approval at once`);
          lastRequestId = outcome.waits;
          waiting = { terminal, command, done };
          break;
        }
      }
      if (resetting) {
        const banner = await ws.startDev();
        assert.doesNotMatch(banner, /WARNING/, 'a fresh trail: no warning');
        const verify = await ws.bash('npx countersign-broker audit verify');
        assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      }
    });
  }

  it('ends with no command left waiting for an approval', async () => {
    if (waiting !== undefined) await approveAsAlice();
    assert.equal(waiting, undefined);
  });
});
