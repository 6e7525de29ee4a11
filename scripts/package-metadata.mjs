#!/usr/bin/env node
// The packages' shared metadata has ONE place: the root package.json's `license`,
// `repository` and `engines`. This script checks (default; part of `npm test`) or writes
// (`--write`) the copies that must agree with it:
//   - `license`, `repository` and `engines` of the four published package.json files;
//   - each package's LICENSE file (the root LICENSE, byte for byte), and that the root
//     LICENSE really is the license `license` names (Apache-2.0: the Apache 2.0 text);
//   - the Helm chart's `home` and `sources` (the repository's web address).
// `--root DIR` runs it on another checkout (its test does, on a copy).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGES = ['proto', 'approvers', 'broker', 'agents'];
const FIELDS = ['license', 'repository', 'engines'];
const CHART = 'deploy/helm/countersign/Chart.yaml';
/** A line of each license's text that no other common license has. */
const LICENSE_TEXT = { 'Apache-2.0': /^Apache License\s+Version 2\.0, January 2004/ };

const args = process.argv.slice(2);
const write = args.includes('--write');
const rootArg = args.indexOf('--root');
const root = rootArg === -1 ? fileURLToPath(new URL('..', import.meta.url)) : args[rootArg + 1];

const read = (path) => readFileSync(join(root, path), 'utf8');
const rootManifest = JSON.parse(read('package.json'));
const problems = [];

for (const field of FIELDS) if (rootManifest[field] === undefined) problems.push(`package.json: no ${field}`);
const licenseText = read('LICENSE');
const expected = LICENSE_TEXT[rootManifest.license];
if (expected === undefined) problems.push(`package.json: license ${rootManifest.license} is not one this script knows`);
else if (!expected.test(licenseText))
  problems.push(`LICENSE is not the ${rootManifest.license} text package.json names`);

// git+https://github.com/o/r.git -> https://github.com/o/r
const webUrl = String(rootManifest.repository?.url ?? '')
  .replace(/^git\+/, '')
  .replace(/\.git$/, '');

for (const pkg of PACKAGES) {
  const path = `${pkg}/package.json`;
  const text = read(path);
  const manifest = JSON.parse(text);
  let changed = false;
  for (const field of FIELDS) {
    if (JSON.stringify(manifest[field]) === JSON.stringify(rootManifest[field])) continue;
    problems.push(
      `${path}: ${field} is ${JSON.stringify(manifest[field])}, package.json says ${JSON.stringify(rootManifest[field])}`,
    );
    manifest[field] = rootManifest[field];
    changed = true;
  }
  if (write && changed) writeFileSync(join(root, path), `${JSON.stringify(manifest, null, 2)}\n`);
  const license = `${pkg}/LICENSE`;
  let copy;
  try {
    copy = read(license);
  } catch {
    copy = undefined;
  }
  if (copy !== licenseText) {
    problems.push(`${license} is not the root LICENSE`);
    if (write) writeFileSync(join(root, license), licenseText);
  }
}

const chart = read(CHART);
let newChart = chart;
for (const [key, value] of [
  ['home', webUrl],
  ['sources', `[${webUrl}]`],
]) {
  const line = new RegExp(`^${key}: .*$`, 'm');
  const found = line.exec(newChart)?.[0];
  if (found !== `${key}: ${value}`) {
    problems.push(`${CHART}: ${found ?? `no ${key}`}, package.json's repository says ${key}: ${value}`);
    newChart = found === undefined ? `${newChart}${key}: ${value}\n` : newChart.replace(line, `${key}: ${value}`);
  }
}
if (write && newChart !== chart) writeFileSync(join(root, CHART), newChart);

if (problems.length > 0) {
  const verb = write ? 'fixed' : 'out of step with the root package.json (run `npm run metadata -- --write`)';
  console.error(`package metadata ${verb}:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  if (!write) process.exit(1);
}
