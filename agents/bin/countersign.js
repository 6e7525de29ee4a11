#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm run build`; `npm install` builds).
// Inside the repository, .npmrc sets the "countersign-source" condition for npm
// and npx, so `#cli` resolves to ./from-source.js: the TypeScript sources run
// through tsx and tests never see a stale build.
await import('#cli');
