// Outside tools the tests run as a user would (grpcurl, promtool): built with `go install`
// by .ci/run into $(go env GOPATH)/bin, like helm.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

export function tool(name: string): string {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
  if (!found)
    assert.fail(
      `${name} is not on PATH: run .ci/run, or see docs/development.md ("Outside tools") to install it with go install`,
    );
  return found;
}
