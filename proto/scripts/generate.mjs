#!/usr/bin/env node
// `npm run proto`: lint, generate the TypeScript code (ts-proto) and build the descriptor set
// that server reflection serves (src/gen/descriptors.binpb: the real FileDescriptorProtos of
// every file the broker serves, with their imports and comments). check-generated.mjs runs
// the same steps into a scratch directory and compares.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
/** Where the descriptor set lives, relative to the proto package. */
export const DESCRIPTOR_SET = 'src/gen/descriptors.binpb';
// The files the broker serves; their imports (google/protobuf/*) come along.
const SERVED = ['countersign', 'grpc'];

export const buf = (args) => execFileSync('buf', args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });

/** Generates code and the descriptor set under outDir (the package root by default). */
export function generate(outDir = root) {
  buf(['lint']);
  buf(['generate', ...(outDir === root ? [] : ['--output', outDir])]);
  buf(['build', ...SERVED.flatMap((p) => ['--path', p]), '-o', join(outDir, DESCRIPTOR_SET)]);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) generate();
