// The CI integrations run as a runner would run them, against a real broker:
// the GitHub composite action (each step's script with its env, inputs filled
// in like GitHub does) and the GitLab CI example job (before_script + script).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import type { JSONWebKeySet } from 'jose';
import { ApprovalsClient, verifyCredential } from '@countersign/agent';
import { eventually, startTestBroker, type IssuedSvid, type TestBroker } from '@countersign/broker/testing';
import { cliIdentities, type CliIdentities } from './support/cli.js';
import { ACTION_DIR, bash, includeGitlabTemplate, ROOT, runAction, type Action, type Ran } from './support/ci.js';

const AGENTS_DOC = join(ROOT, 'docs/agents.md');
const JWT = /ey[\w-]+\.[\w-]+\.[\w-]+/;

const POLICY = `version: 1
rules:
  - name: ci-staging
    match: { workload: "spiffe://example.org/ci/*", operation: deploy, resource: "staging/*" }
    decision: allow
  - name: ci-prod
    match: { workload: "spiffe://example.org/ci/*", operation: deploy, resource: "prod/*" }
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
`;

describe('CI integrations', () => {
  let t: TestBroker;
  let ids: CliIdentities;
  let ciSvid: IssuedSvid;
  let alice: ApprovalsClient;
  let bob: ApprovalsClient;
  let jwks: JSONWebKeySet;
  let work: string;

  /** The pending request on this resource, or the job's output if it ended first. */
  const pendingOn = (resource: string, job: Promise<Ran>, approver = alice) =>
    Promise.race([
      eventually(`a pending request on ${resource}`, async () =>
        (await approver.listPending()).find((r) => r.resource === resource),
      ),
      job.then((r) => {
        throw new Error(`the job ended (exit ${r.code}) before its request was pending:\n${r.stdout}\n${r.stderr}`);
      }),
    ]);

  before(async () => {
    t = await startTestBroker({ policy: POLICY });
    ids = await cliIdentities(t, { runner: 'ci/gitlab-runner', alice: 'human/alice', bob: 'human/bob' });
    ciSvid = t.svid('ci/github-actions');
    alice = ApprovalsClient.fromEnv({}, ids.env.alice);
    bob = ApprovalsClient.fromEnv({}, ids.env.bob);
    jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
    work = await mkdtemp(join(tmpdir(), 'countersign-ci-'));
  });
  after(async () => {
    alice?.close();
    bob?.close();
    await t?.close();
    await ids?.cleanup();
    if (work) await rm(work, { recursive: true, force: true });
  });

  describe('GitHub composite action', () => {
    let action: Action;
    const identityInputs = () => ({
      'broker-address': t.address,
      'cert-pem': ciSvid.chainPem,
      'key-pem': ciSvid.keyPem,
      'ca-pem': t.ca.pem,
      install: 'false',
    });

    before(async () => {
      action = parse(await readFile(join(ACTION_DIR, 'action.yml'), 'utf8')) as Action;
    });

    it('is a composite action whose scripts take inputs only through env (no ${{ }} inside a script)', () => {
      assert.equal(action.runs.using, 'composite');
      for (const step of action.runs.steps) {
        assert.equal(step.shell, 'bash');
        assert.doesNotMatch(step.run, /\$\{\{/);
      }
      assert.deepEqual(
        Object.entries(action.inputs)
          .filter(([, spec]) => spec.required)
          .map(([name]) => name),
        ['operation', 'resource'],
      );
    });

    it('runs the script with the credential once approved (run mode)', async () => {
      const seen = join(work, 'gh-token');
      const run = `printf '%s' "$COUNTERSIGN_TOKEN" > ${JSON.stringify(seen)}\necho "deployed $COUNTERSIGN_REQUEST_ID"`;
      const running = runAction(
        action,
        {
          ...identityInputs(),
          operation: 'deploy',
          resource: 'prod/payments',
          params: 'version=1.4.2\nreplicas:=3\n',
          reason: 'release 1.4.2',
          run,
        },
        work,
        {},
      );
      const pending = await pendingOn('prod/payments', running);
      const { command, ...given } = JSON.parse(pending.parametersJson) as { command: { path: string; args: string[] } };
      assert.deepEqual(given, { replicas: 3, version: '1.4.2' });
      // The script that will run is part of what alice approves.
      assert.ok(command.args.includes(run), JSON.stringify(command));
      assert.equal(pending.requester, 'spiffe://example.org/ci/github-actions');
      await alice.decide({ requestId: pending.id, decision: 'approve' });
      const ran = await running;
      assert.equal(ran.code, 0, ran.stderr);
      assert.match(ran.stdout, new RegExp(`deployed ${pending.id}`));
      assert.match(ran.stderr, /^pending approval: request req_\S+ \(rule ci-prod\)/m);
      await verifyCredential(await readFile(seen, 'utf8'), {
        jwks,
        audience: 'https://deploy.example.org',
        parameters: JSON.parse(pending.parametersJson),
        clientCertificate: ciSvid.chainPem,
      });
      // The SVID files it wrote from the inputs are gone.
      assert.ok(!(await import('node:fs')).readdirSync(work).some((f) => f.startsWith('countersign-svid.')));
    });

    it('hands a masked credential to later steps as outputs (request mode), and fails with exit 3 when denied', async () => {
      const allowed = await runAction(
        action,
        { ...identityInputs(), operation: 'deploy', resource: 'staging/payments', params: 'version=2' },
        work,
        {},
      );
      assert.equal(allowed.code, 0, allowed.stderr);
      assert.equal(allowed.outputs.state, 'APPROVED');
      assert.match(allowed.outputs['request-id'] as string, /^req_/);
      assert.ok(allowed.stdout.includes(`::add-mask::${allowed.outputs.token}`));
      await verifyCredential(allowed.outputs.token as string, {
        jwks,
        audience: 'https://deploy.example.org',
        parameters: { version: '2' },
      });

      const running = runAction(
        action,
        { ...identityInputs(), operation: 'deploy', resource: 'prod/ledger' },
        work,
        {},
      );
      const pending = await pendingOn('prod/ledger', running);
      await bob.decide({ requestId: pending.id, decision: 'deny', reason: 'ledger freeze' });
      const denied = await running;
      assert.equal(denied.code, 3);
      assert.deepEqual([denied.outputs.state, denied.outputs.token], ['DENIED', '']);
      assert.match(denied.stderr, /denied: denied by bob \(grpc\): ledger freeze/);
    });

    it('refuses half an identity with a clear error', async () => {
      const ran = await runAction(
        action,
        { ...identityInputs(), 'key-pem': '', operation: 'deploy', resource: 'staging/x' },
        work,
        {},
      );
      assert.equal(ran.code, 2);
      assert.match(ran.stdout, /::error::give all of cert-pem, key-pem and ca-pem, or none/);
    });

    // Issue 14.14: what the action leaks, and what it hands on.
    it('masks the credential in run mode before the script runs, so set -x cannot print it', async () => {
      const ran = await runAction(
        action,
        {
          ...identityInputs(),
          operation: 'deploy',
          resource: 'staging/masked',
          run: 'set -x\ntest -n "$COUNTERSIGN_TOKEN"',
        },
        work,
        {},
      );
      assert.equal(ran.code, 0, ran.stderr);
      const token = JWT.exec(ran.stderr)?.[0];
      assert.ok(token, `set -x printed the credential:\n${ran.stderr}`);
      assert.equal(ran.stdout.split('\n')[0], `::add-mask::${token}`);
    });

    it('never hands on a stale COUNTERSIGN_TOKEN from the job as outputs.token after a denial', async () => {
      const stale = {
        COUNTERSIGN_TOKEN: 'stale-token-from-the-job',
        COUNTERSIGN_REQUEST_ID: 'req_stale',
        COUNTERSIGN_STATE: 'APPROVED',
      };
      const denied = await runAction(
        action,
        { ...identityInputs(), operation: 'deploy', resource: 'nowhere/x' },
        work,
        stale,
      );
      assert.equal(denied.code, 3, denied.stderr);
      assert.equal(denied.outputs.state, 'DENIED');
      assert.equal(denied.outputs.token, '');
      assert.match(denied.outputs['request-id'] as string, /^req_(?!stale)/);
    });

    it("the docs' workflow example gives the script the credential in its environment, not in argv (/proc/PID/cmdline)", async () => {
      const doc = await readFile(AGENTS_DOC, 'utf8');
      const yaml = /### GitHub workflow[\s\S]*?```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
      assert.ok(yaml, 'docs/agents.md has a GitHub workflow example');
      const workflow = parse(yaml) as {
        jobs: Record<string, { steps: { uses?: string; with?: Record<string, string> }[] }>;
      };
      const step = Object.values(workflow.jobs)
        .flatMap((job) => job.steps)
        .find((st) => st.uses?.includes('agents/github-action') && st.with?.run !== undefined);
      assert.ok(step?.with, 'the example has a step with run');
      const jobDir = await mkdtemp(join(work, 'docs-example-'));
      const seen = join(jobDir, 'deploy-saw.json');
      await mkdir(join(jobDir, 'scripts'));
      await writeFile(
        join(jobDir, 'scripts/deploy.sh'),
        `#!/bin/sh\nnode -e 'require("fs").writeFileSync(process.argv[1], JSON.stringify({ args: process.argv.slice(2), token: process.env.COUNTERSIGN_TOKEN }))' ${JSON.stringify(seen)} "$@"\n`,
        { mode: 0o755 },
      );
      // As printed, but with this test's identity instead of a SPIRE agent, and github.* filled in.
      const inputs = Object.fromEntries(
        Object.entries(step.with)
          .filter(([name]) => name !== 'workload-api')
          .map(([name, value]) => [name, String(value).replace(/\$\{\{[^}]*\}\}/g, 'c0ffee')]),
      );
      const running = runAction(action, { ...inputs, ...identityInputs() }, jobDir, {});
      const pending = await pendingOn(inputs.resource as string, running);
      await alice.decide({ requestId: pending.id, decision: 'approve' });
      const ran = await running;
      assert.equal(ran.code, 0, ran.stderr);
      const saw = JSON.parse(await readFile(seen, 'utf8')) as { args: string[]; token?: string };
      assert.match(saw.token ?? '', JWT);
      assert.ok(!saw.args.some((a) => JWT.test(a)), `the credential is in the script's argv: ${saw.args.join(' ')}`);
    });
  });

  /** A countersign CLI an attacker would rather run with the job's SVID: it records the key it was given. */
  const evilCli = async (dir: string, stolen: string) => {
    await mkdir(join(dir, 'agents/bin'), { recursive: true });
    await writeFile(
      join(dir, 'agents/bin/countersign.js'),
      `require('node:fs').writeFileSync(${JSON.stringify(stolen)}, process.env.COUNTERSIGN_KEY ?? 'ran'); process.exit(0);\n`,
    );
  };

  it('GitLab CI example: deploy-prod runs deploy.sh once someone other than the pipeline user approves', async () => {
    // The CLI is already in the image at cli_dir (the template installs it there when it is missing).
    const config = await includeGitlabTemplate({ cli_dir: ROOT });
    const job = config['deploy-prod'];
    assert.ok(job);
    assert.equal(job.extends, '.countersign');
    const template = config['.countersign'];
    assert.ok(template);
    const jobDir = await mkdtemp(join(work, 'gitlab-'));
    const seen = join(jobDir, 'deployed');
    await writeFile(
      join(jobDir, 'deploy.sh'),
      `#!/bin/sh\nprintf '%s %s' "$1" "$COUNTERSIGN_TOKEN" > ${JSON.stringify(seen)}\n`,
    );
    await chmod(join(jobDir, 'deploy.sh'), 0o755);
    const script = join(jobDir, 'job.sh');
    await writeFile(
      script,
      [...(template.before_script ?? []), ...(job.before_script ?? []), ...job.script].join('\n'),
    );
    // Issue 14.14: pipeline variables (a manual run, a trigger) try to swap the CLI for one of theirs.
    const evilDir = join(jobDir, 'evil-cli');
    const stolen = join(jobDir, 'stolen-key');
    await evilCli(evilDir, stolen);
    const pipelineVariables = {
      COUNTERSIGN_CLI_DIR: evilDir,
      COUNTERSIGN_REPO: `file://${evilDir}`,
      COUNTERSIGN_REF: 'evil',
    };
    const sha = 'c0ffee1234567890c0ffee1234567890c0ffee12';
    const running = bash(
      script,
      {
        ...process.env,
        ...template.variables,
        ...job.variables,
        ...pipelineVariables,
        ...ids.env.runner,
        CI: 'true',
        GITLAB_CI: 'true',
        CI_PROJECT_NAME: 'payments',
        CI_COMMIT_SHA: sha,
        CI_COMMIT_TITLE: 'Fix rounding',
        CI_PIPELINE_URL: 'https://gitlab.example.com/p/-/pipelines/7',
        GITLAB_USER_EMAIL: 'alice@example.org',
      },
      jobDir,
    );
    // alice started the pipeline: the request is not even in her list.
    const pending = await pendingOn('prod/payments', running, bob);
    assert.equal(pending.onBehalfOf, 'alice@example.org');
    assert.equal(pending.reason, 'Fix rounding (https://gitlab.example.com/p/-/pipelines/7)');
    // alice started the pipeline, so she cannot approve it; bob can.
    await assert.rejects(
      alice.decide({ requestId: pending.id, decision: 'approve' }),
      /ERR_SELF_APPROVAL|separation of duties/,
    );
    assert.ok(!existsSync(seen));
    await bob.decide({ requestId: pending.id, decision: 'approve' });
    const ran = await running;
    assert.equal(ran.code, 0, ran.stderr);
    const [arg, token] = (await readFile(seen, 'utf8')).split(' ');
    assert.equal(arg, sha);
    const { claims } = await verifyCredential(token as string, {
      jwks,
      audience: 'https://deploy.example.org',
      clientCertificate: ids.certs.runner,
    });
    assert.equal(claims.act?.sub, 'alice@example.org');
    assert.equal(JSON.parse(pending.parametersJson).version, sha);
    assert.equal(existsSync(stolen), false, 'a pipeline variable chose the CLI that ran with the SVID');
  });

  it('GitLab CI template: without git in the image and no CLI there, it says what to do instead of "git: command not found"', async () => {
    const config = await includeGitlabTemplate({ cli_dir: join(work, 'no-cli-here') });
    const template = config['.countersign'];
    assert.ok(template);
    assert.doesNotMatch(template.image ?? '', /-slim$/, 'slim node images have no git');
    const noGit = await mkdtemp(join(work, 'path-without-git-'));
    // An image with node and bash, and no git.
    await symlink(process.execPath, join(noGit, 'node'));
    await symlink(execFileSync('sh', ['-c', 'command -v bash'], { encoding: 'utf8' }).trim(), join(noGit, 'bash'));
    const script = join(noGit, 'job.sh');
    await writeFile(script, [...(template.before_script ?? []), 'countersign --help'].join('\n'));
    const ran = await bash(script, { PATH: noGit, HOME: noGit }, noGit);
    assert.notEqual(ran.code, 0);
    assert.match(
      ran.stderr,
      /countersign: the CLI is not in .*no-cli-here and this image has no git to fetch it; use an image with git \(the default, node:\S+\) or one with the CLI in it/,
    );
  });
});
