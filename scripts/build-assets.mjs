#!/usr/bin/env node
// The part of `npm run build` that tsc does not do: copies the files that modules load
// at run time next to themselves (Lua scripts, the console's static files, the descriptor
// set) from each package's src/ to the same place under dist/, so one
// `new URL('./lua/', import.meta.url)` works from both. `--clean` removes them again; package
// folder names narrow it (`node scripts/build-assets.mjs proto agents`, as build:cli does).
import { cpSync, readdirSync, rmSync, statSync } from 'node:fs';
import { extname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const named = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const packages = named.length > 0 ? named : ['proto', 'approvers', 'broker', 'agents'];
const assets = new Set(['.lua', '.js', '.css', '.html', '.binpb', '.json', '.svg']);

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...walk(path));
    else if (assets.has(extname(name))) out.push(path);
  }
  return out;
}

for (const pkg of packages) {
  const src = join(root, pkg, 'src');
  const dist = join(root, pkg, 'dist');
  for (const file of walk(src)) {
    const target = join(dist, relative(src, file));
    if (process.argv.includes('--clean')) rmSync(target, { force: true });
    else cpSync(file, target);
  }
}
