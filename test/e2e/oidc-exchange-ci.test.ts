// Issue 18, "done when": the GitHub workflow printed in docs/agents.md, with no
// secret at all, gates a prod deploy on a hosted runner. The runner is played as
// in agents-ci.test.ts (the composite action's scripts with their env), GitHub's
// token endpoint by a local stand-in that signs with a real local OIDC issuer;
// the GitLab template runs the same way with the job's id_tokens: variable.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import type { JSONWebKeySet } from 'jose';
import { ApprovalsClient, verifyCredential } from '@countersign/agent';
import { CertificateAuthority, eventually, startTestBroker, type TestBroker } from '@countersign/broker/testing';
import { ACTION_DIR, bash, includeGitlabTemplate, ROOT, runAction, type Action, type Ran } from './support/ci.js';
import { githubClaims, gitlabClaims, LocalIssuer } from './support/oidc-issuer.js';

const TD = 'example.org';
const POLICY = `version: 1
rules:
  - name: github-prod
    match: { workload: "spiffe://${TD}/github/**", operation: deploy, resource: "prod/*" }
    when: workload.claims.ref == "refs/heads/main"
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
  - name: gitlab-prod
    match: { workload: "spiffe://${TD}/gitlab/**", operation: deploy, resource: "prod/*" }
    when: workload.claims.ref_protected == "true"
    decision: approve
    approval: { approvers: [alice, bob], required: 1, timeout: 15m }
`;
const PRINCIPALS = `version: 1
principals:
  - { name: alice, email: alice@${TD}, github_login: alice, spiffe_ids: [spiffe://${TD}/human/alice] }
  - { name: bob, email: bob@${TD}, gitlab_login: bob, spiffe_ids: [spiffe://${TD}/human/bob] }
`;
const JWT = /ey[\w-]+\.[\w-]+\.[\w-]+/;

/** The job's environment: the test process's, minus any identity a developer may have set. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !k.startsWith('COUNTERSIGN_') && !k.startsWith('SPIFFE_') && !k.startsWith('ACTIONS_'),
    ),
  );
}

describe('CI jobs without SPIRE or secrets', () => {
  let github: LocalIssuer;
  let gitlab: LocalIssuer;
  let t: TestBroker;
  let alice: ApprovalsClient;
  let bob: ApprovalsClient;
  let jwks: JSONWebKeySet;
  let work: string;

  before(async () => {
    [github, gitlab] = await Promise.all([LocalIssuer.start(), LocalIssuer.start()]);
    const ca = CertificateAuthority.createRoot(TD);
    const oidcCa = ca.createIntermediate({ commonName: 'Countersign OIDC CA' });
    t = await startTestBroker({
      ca,
      policy: POLICY,
      principals: PRINCIPALS,
      files: { 'oidc-ca.pem': oidcCa.pem, 'oidc-ca-key.pem': oidcCa.certificate.keyPem },
      identity: `identity:
  svid: { cert_file: broker.pem, key_file: broker-key.pem }
  bundles: [{ trust_domain: ${TD}, file: ca.pem }]
  oidc_ca: { cert_file: oidc-ca.pem, key_file: oidc-ca-key.pem }
  oidc:
    - name: github
      issuer: ${github.url}
      audience: countersign
      spiffe_id: "spiffe://{trust_domain}/github/{repository}/{environment}"
      require: { repository_owner: my-org }
      actor: { claim: actor, principal_field: github_login }
    - name: gitlab
      issuer: ${gitlab.url}
      audience: countersign
      spiffe_id: "spiffe://{trust_domain}/gitlab/{project_path}"
      require: { namespace_path: my-group }
      actor: { claim: user_login, principal_field: gitlab_login }
`,
    });
    const approver = (name: string) => {
      const svid = t.svid(`human/${name}`);
      return new ApprovalsClient({
        address: t.address,
        certChainPem: svid.chainPem,
        keyPem: svid.keyPem,
        caPem: t.ca.pem,
      });
    };
    alice = approver('alice');
    bob = approver('bob');
    jwks = (await (await fetch(t.jwksUrl)).json()) as JSONWebKeySet;
    work = await mkdtemp(join(tmpdir(), 'countersign-oidc-ci-'));
  });
  after(async () => {
    alice?.close();
    bob?.close();
    await t?.close();
    await Promise.all([github?.close(), gitlab?.close()]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  const pendingOn = (resource: string, job: Promise<Ran>, approver: ApprovalsClient) =>
    Promise.race([
      eventually(`a pending request on ${resource}`, async () =>
        (await approver.listPending()).find((r) => r.resource === resource),
      ),
      job.then((r) => {
        throw new Error(`the job ended (exit ${r.code}) before its request was pending:\n${r.stdout}\n${r.stderr}`);
      }),
    ]);

  it("runs the docs' GitHub workflow on a hosted runner: the job's OIDC token is its identity, its actor cannot approve", async () => {
    const doc = await readFile(join(ROOT, 'docs/agents.md'), 'utf8');
    const yaml = /### GitHub workflow[\s\S]*?```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
    assert.ok(yaml, 'docs/agents.md has a GitHub workflow example');
    const workflow = parse(yaml) as {
      permissions?: Record<string, string>;
      jobs: Record<string, { steps: { uses?: string; with?: Record<string, string> }[] }>;
    };
    assert.equal(workflow.permissions?.['id-token'], 'write', 'the workflow asks for its OIDC token');
    const step = Object.values(workflow.jobs)
      .flatMap((job) => job.steps)
      .find((st) => st.uses?.includes('agents/github-action') && st.with?.run !== undefined);
    assert.ok(step?.with, 'the example has a step with run');
    for (const secret of ['cert-pem', 'key-pem', 'workload-api'])
      assert.equal(step.with[secret], undefined, `the example needs no ${secret}`);
    const sha = 'c0ffee1234567890c0ffee1234567890c0ffee12';
    const expressions: Record<string, string> = {
      'vars.COUNTERSIGN_ADDR': t.address,
      'vars.COUNTERSIGN_CA': t.ca.pem,
      'github.sha': sha,
      'github.event.head_commit.message': 'Fix rounding',
    };
    const inputs = Object.fromEntries(
      Object.entries(step.with).map(([name, value]) => [
        name,
        String(value).replace(/\$\{\{\s*([^}]*?)\s*\}\}/g, (_all, expr: string) => {
          assert.ok(expr in expressions, `the test does not know ${expr}`);
          return expressions[expr] as string;
        }),
      ]),
    );
    const jobDir = await mkdtemp(join(work, 'github-'));
    const seen = join(jobDir, 'deployed');
    await mkdir(join(jobDir, 'scripts'));
    await writeFile(
      join(jobDir, 'scripts/deploy.sh'),
      `#!/bin/sh\nprintf '%s' "$COUNTERSIGN_TOKEN" > ${JSON.stringify(seen)}\n`,
      { mode: 0o755 },
    );

    // What GitHub gives a job with id-token: write: the token endpoint and its bearer.
    github.githubClaims = githubClaims({ environment: 'production', actor: 'alice', sha });
    const action = parse(await readFile(join(ACTION_DIR, 'action.yml'), 'utf8')) as Action;
    const running = runAction(action, { ...inputs, install: 'false' }, jobDir, {
      ...cleanEnv(),
      ACTIONS_ID_TOKEN_REQUEST_URL: `${github.url}/github-token?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: github.githubRequestToken,
    });
    const pending = await pendingOn('prod/payments', running, bob);
    assert.equal(pending.requester, `spiffe://${TD}/github/my-org_2Fapp/production`);
    assert.equal(pending.onBehalfOf, 'alice');
    assert.equal(github.githubRequests.at(-1)?.searchParams.get('audience'), 'countersign');
    await assert.rejects(
      alice.decide({ requestId: pending.id, decision: 'approve' }),
      /ERR_SELF_APPROVAL|separation of duties/,
    );
    await bob.decide({ requestId: pending.id, decision: 'approve' });
    const ran = await running;
    assert.equal(ran.code, 0, ran.stderr);
    const token = await readFile(seen, 'utf8');
    assert.match(token, JWT);
    const { claims } = await verifyCredential(token, { jwks, audience: 'https://deploy.example.org' });
    assert.equal(claims.sub, pending.requester);
  });

  it('tells a job without id-token: write (or a fork pull request) what to do', async () => {
    const action = parse(await readFile(join(ACTION_DIR, 'action.yml'), 'utf8')) as Action;
    const ran = await runAction(
      action,
      { 'broker-address': t.address, 'ca-pem': t.ca.pem, operation: 'deploy', resource: 'prod/x', install: 'false' },
      work,
      cleanEnv(),
    );
    assert.equal(ran.code, 2);
    assert.match(
      ran.stdout,
      /::error::no SVID configured and no OIDC token for this job: add 'permissions: id-token: write'/,
    );
  });

  it('runs the GitLab template on a shared runner: the id_tokens: token is the identity, the pipeline user cannot approve', async () => {
    const config = await includeGitlabTemplate({ cli_dir: ROOT });
    const job = config['deploy-prod'] as (typeof config)[string] & { id_tokens?: Record<string, { aud: string }> };
    const template = config['.countersign'];
    assert.ok(job && template);
    const aud = job.id_tokens?.COUNTERSIGN_ID_TOKEN?.aud;
    assert.equal(aud, 'countersign', 'the example job asks GitLab for an ID token for Countersign');
    const jobDir = await mkdtemp(join(work, 'gitlab-'));
    const seen = join(jobDir, 'deployed');
    await writeFile(
      join(jobDir, 'deploy.sh'),
      `#!/bin/sh\nprintf '%s %s' "$1" "$COUNTERSIGN_TOKEN" > ${JSON.stringify(seen)}\n`,
    );
    await chmod(join(jobDir, 'deploy.sh'), 0o755);
    const caFile = join(jobDir, 'countersign-ca.pem'); // a File-type variable: GitLab writes it and passes the path
    await writeFile(caFile, t.ca.pem);
    const script = join(jobDir, 'job.sh');
    await writeFile(
      script,
      [...(template.before_script ?? []), ...(job.before_script ?? []), ...job.script].join('\n'),
    );
    const sha = 'feedface1234567890feedface1234567890feed';
    const running = bash(
      script,
      {
        ...cleanEnv(),
        ...template.variables,
        ...job.variables,
        CI: 'true',
        GITLAB_CI: 'true',
        COUNTERSIGN_ADDR: t.address,
        COUNTERSIGN_CA: caFile,
        COUNTERSIGN_ID_TOKEN: await gitlab.sign(gitlabClaims({ aud, user_login: 'bob' })),
        CI_PROJECT_NAME: 'app',
        CI_COMMIT_SHA: sha,
        CI_COMMIT_TITLE: 'Fix rounding',
        CI_PIPELINE_URL: 'https://gitlab.example.com/p/-/pipelines/7',
        GITLAB_USER_EMAIL: 'bob@example.org',
      },
      jobDir,
    );
    const pending = await pendingOn('prod/app', running, alice);
    assert.equal(pending.requester, `spiffe://${TD}/gitlab/my-group_2Fapp`);
    assert.equal(pending.onBehalfOf, 'bob');
    await assert.rejects(
      bob.decide({ requestId: pending.id, decision: 'approve' }),
      /ERR_SELF_APPROVAL|separation of duties/,
    );
    await alice.decide({ requestId: pending.id, decision: 'approve' });
    const ran = await running;
    assert.equal(ran.code, 0, ran.stderr);
    const [arg, token] = (await readFile(seen, 'utf8')).split(' ');
    assert.equal(arg, sha);
    assert.match(token ?? '', JWT);
  });
});
