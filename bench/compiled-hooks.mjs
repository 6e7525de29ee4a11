// Module hooks for bench/compiled.mjs: <package>/src/<path>.ts -> <package>/dist/<path>.js,
// loaded as plain ES modules (tsx, the next loader in the chain, never sees them).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const root = new URL('../', import.meta.url).href;
const SOURCE = new RegExp(
  `^${root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(proto|broker|approvers|agents)/src/(.+)\\.(?:ts|js)$`,
);

export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  const m = SOURCE.exec(resolved.url);
  if (m === null) return resolved;
  const url = `${root}${m[1]}/dist/${m[2]}.js`;
  if (!existsSync(fileURLToPath(url))) throw new Error(`${url} is missing: run npm run build (bench/compiled.mjs)`);
  return { url, format: 'module', shortCircuit: true };
}

export async function load(url, context, next) {
  if (url.startsWith(root) && /^(proto|broker|approvers|agents)\/dist\//.test(url.slice(root.length))) {
    return { format: 'module', source: await readFile(fileURLToPath(url), 'utf8'), shortCircuit: true };
  }
  return next(url, context);
}
