// Running the CI integrations as a runner would: the GitHub composite action's
// steps (each script with its env, inputs filled in like GitHub does) and the
// GitLab template as `include: inputs:` reads it. Shared by agents-ci.test.ts and
// oidc-exchange-ci.test.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const ACTION_DIR = join(ROOT, 'agents/github-action');
export const GITLAB_EXAMPLE = join(ROOT, 'agents/gitlab-ci/countersign.gitlab-ci.yml');

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function bash(scriptFile: string, env: NodeJS.ProcessEnv, cwd: string): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['--noprofile', '--norc', '-eo', 'pipefail', scriptFile], {
      env,
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export interface ActionStep {
  id?: string;
  shell: string;
  env?: Record<string, string>;
  run: string;
}
export interface Action {
  inputs: Record<string, { default?: string; required?: boolean }>;
  outputs: Record<string, { value: string }>;
  runs: { using: string; steps: ActionStep[] };
}

/** Runs the composite action's steps like the runner: expressions in env filled in, CI=true, GITHUB_OUTPUT; returns its outputs. */
export async function runAction(
  action: Action,
  inputs: Record<string, string>,
  workDir: string,
  env: NodeJS.ProcessEnv,
) {
  for (const name of Object.keys(inputs)) assert.ok(name in action.inputs, `the action has no input ${name}`);
  const expression = (text: string) =>
    text.replace(/\$\{\{\s*([^}]+?)\s*\}\}/g, (_all, expr: string) => {
      if (expr === 'github.action_path') return ACTION_DIR;
      const input = /^inputs\.([\w-]+)$/.exec(expr)?.[1];
      if (input === undefined) throw new Error(`the test runner does not know the expression ${expr}`);
      const spec = action.inputs[input];
      assert.ok(spec, `unknown input ${input}`);
      return inputs[input] ?? spec.default ?? '';
    });
  const outputsFile = join(workDir, 'github-output');
  await writeFile(outputsFile, '');
  const stepOutputs: Record<string, Record<string, string>> = {};
  let last: Ran = { code: 0, stdout: '', stderr: '' };
  for (const [i, step] of action.runs.steps.entries()) {
    await writeFile(outputsFile, '');
    const script = join(workDir, `step-${i}.sh`);
    await writeFile(script, step.run);
    const stepEnv = Object.fromEntries(Object.entries(step.env ?? {}).map(([k, v]) => [k, expression(v)]));
    last = await bash(
      script,
      {
        ...process.env,
        ...env,
        CI: 'true',
        GITHUB_ACTIONS: 'true',
        GITHUB_OUTPUT: outputsFile,
        RUNNER_TEMP: workDir,
        ...stepEnv,
      },
      workDir,
    );
    if (step.id) {
      stepOutputs[step.id] = Object.fromEntries(
        (await readFile(outputsFile, 'utf8'))
          .split('\n')
          .filter((l) => l.includes('='))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
    }
    if (last.code !== 0) break;
  }
  const outputs = Object.fromEntries(
    Object.entries(action.outputs).map(([name, { value }]) => {
      const m = /^\$\{\{\s*steps\.([\w-]+)\.outputs\.([\w-]+)\s*\}\}$/.exec(value);
      assert.ok(m, `output ${name}: unexpected value ${value}`);
      return [name, stepOutputs[m[1] as string]?.[m[2] as string] ?? ''];
    }),
  );
  return { ...last, outputs };
}

export interface GitlabJob {
  extends?: string;
  image?: string;
  variables?: Record<string, string>;
  before_script?: string[];
  script: string[];
}

/**
 * What GitLab does with `include: ... inputs:`: the header's spec.inputs checked
 * (regex) and their values (or defaults) put into the text as it is read; pipeline
 * variables come later, as the job's environment.
 */
export async function includeGitlabTemplate(inputs: Record<string, string>): Promise<Record<string, GitlabJob>> {
  const docs = parseAllDocuments(await readFile(GITLAB_EXAMPLE, 'utf8'));
  assert.equal(docs.length, 2, 'a spec header, then the jobs');
  const spec = (docs[0]?.toJS() as { spec: { inputs: Record<string, { default?: string; regex?: string }> } }).spec
    .inputs;
  for (const name of Object.keys(inputs)) assert.ok(name in spec, `the template has no input ${name}`);
  const values = Object.fromEntries(
    Object.entries(spec).map(([name, input]) => {
      const value = inputs[name] ?? input.default;
      assert.ok(value !== undefined, `input ${name} is required`);
      if (input.regex !== undefined) assert.match(value, new RegExp(input.regex), `input ${name}`);
      return [name, value];
    }),
  );
  const text = String(docs[1]).replace(/\$\[\[\s*inputs\.([\w-]+)\s*\]\]/g, (_all, name: string) => {
    assert.ok(name in values, `unknown input ${name}`);
    return values[name] as string;
  });
  return parse(text) as Record<string, GitlabJob>;
}
