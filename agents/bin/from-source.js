// The "countersign-source" entry of `#cli` (see package.json "imports"): the
// TypeScript sources through tsx, for the repository's tests. Not published.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
