// The guard proxy's configuration and templates: what they accept, and the
// precise errors for what they do not.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseProxyConfig, type GuardedTool } from '../src/mcp/proxy-config.js';
import { compileTemplate } from '../src/mcp/template.js';
import { CountersignClientError } from '../src/sdk/errors.js';

function configError(text: string): string {
  try {
    parseProxyConfig(text, 'guard.yaml');
  } catch (e) {
    assert.ok(e instanceof CountersignClientError);
    assert.equal(e.code, 'ERR_PROXY_CONFIG');
    return e.message;
  }
  assert.fail('expected the configuration to be refused');
}

describe('mcp-proxy configuration', () => {
  it('reads tools, defaults and durations', () => {
    const config = parseProxyConfig(
      `version: 1
tools:
  - name: "db_*"
    operation: db.{arguments.action}
    resource: "db/{arguments.table}"
    credential: { meta: false, argument: token }
  - name: deploy
    operation: deploy
    resource: "k8s/{arguments.cluster}/{arguments.service}"
unmatched: refuse
max_wait: 2m
`,
      'guard.yaml',
    );
    assert.equal(config.unmatched, 'refuse');
    assert.equal(config.maxWaitMs, 120_000);
    assert.equal(config.progressIntervalMs, 10_000);
    const [db, deploy] = config.tools as [GuardedTool, GuardedTool];
    assert.ok(db.matches('db_drop') && db.matches('db_') && !db.matches('xdb_drop'));
    assert.deepEqual(db.credential, { meta: false, argument: 'token' });
    assert.ok(deploy.matches('deploy') && !deploy.matches('deploy2'));
    assert.deepEqual(deploy.credential, { meta: 'io.countersign/credential', argument: undefined });
    assert.equal(deploy.reason.render({ tool: 'deploy', arguments: {} }), 'AI agent calls MCP tool deploy');
    assert.equal(
      deploy.resource.render({ tool: 'deploy', arguments: { cluster: 'eu-1', service: 'web' } }),
      'k8s/eu-1/web',
    );
  });

  it('names the file, line, column and key of each mistake', () => {
    assert.equal(
      configError('version: 1\ntools:\n  - name: drop\n    operation: db.drop\n    resorce: "db/{arguments.table}"\n'),
      'guard.yaml:3:5: tools[0].resource: is required\nguard.yaml:5:5: tools[0].resorce: unknown key "resorce"',
    );
    assert.match(
      configError('version: 2\ntools: []\n'),
      /^guard\.yaml:1:10: version: version: expected 1\nguard\.yaml:2:8: tools: tools: name at least one tool to guard$/,
    );
    assert.match(
      configError('version: 1\ntools:\n  - { name: a, operation: x, resource: "db/{args.table}" }\n'),
      /guard\.yaml:3:40: tools\[0\]\.resource: \{args\.table\} is not a placeholder: use \{tool\} or \{arguments\.NAME\}/,
    );
    assert.match(
      configError('version: 1\ntools:\n  - { name: a, operation: "drop table", resource: db }\n'),
      /tools\[0\]\.operation: "drop table" is not an operation/,
    );
    assert.match(
      configError('version: 1\ntools:\n  - { name: a, operation: x, resource: db }\nmax_wait: soon\n'),
      /guard\.yaml:4:11: max_wait: max_wait: expected a duration like 30s, 10m, 1h/,
    );
    assert.match(
      configError('version: 1\ntools:\n  - { name: a, operation: x, resource: db }\n  - { name: a, name: b }\n'),
      /guard\.yaml:4:16: Map keys must be unique/,
    );
  });
});

describe('templates', () => {
  const render = (source: string, args: Record<string, unknown>) =>
    compileTemplate(source).render({ tool: 'drop_table', arguments: args });

  it('fills placeholders from the call, nested ones too', () => {
    assert.equal(render('db/{arguments.table}', { table: 'orders' }), 'db/orders');
    assert.equal(
      render('{tool}:{arguments.target.env}/{arguments.n}', { target: { env: 'prod' }, n: 3 }),
      'drop_table:prod/3',
    );
  });

  it('refuses values that would move the resource or are not scalars', () => {
    assert.throws(
      () => render('db/{arguments.table}', { table: '../prod' }),
      /arguments\.table = "\.\.\/prod" cannot go into "db\/\{arguments\.table\}"/,
    );
    assert.throws(() => render('db/{arguments.table}', { table: '..' }), /must not be empty, "\." or "\.\."/);
    assert.throws(() => render('db/{arguments.table}', { table: 'a b' }), /whitespace/);
    assert.throws(() => render('db/{arguments.table}', { table: '' }), /must not be empty/);
    assert.throws(() => render('db/{arguments.table}', { table: ['a'] }), /arguments\.table is an array/);
    assert.throws(() => render('db/{arguments.table}', {}), /the call has no arguments\.table/);
    assert.throws(() => render('db/{arguments.toString}', {}), /the call has no arguments\.toString/);
  });

  it('refuses malformed templates', () => {
    assert.throws(() => compileTemplate('db/{arguments.table'), /unbalanced/);
    assert.throws(() => compileTemplate('db/{}'), /\{\} is not a placeholder/);
  });
});
