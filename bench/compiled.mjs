// Preloaded by `npm run bench` after tsx: the benchmarks measure the compiled JavaScript the
// image and the published packages run (dist/), not the TypeScript sources through tsx. tsx
// compiles with esbuild's keepNames, which wraps every function made per call in __name(...):
// a measurable cost on a hot path that users never pay. The benchmark files and the test
// support they borrow (startTestBroker, the dev CA) still load through tsx; every module of
// a workspace package's src/ they reach, directly or through a package name, is swapped for
// its dist/ twin. BENCH_SOURCE=1 measures the sources instead. `npm run bench` builds first.
import { register } from 'node:module';

if (process.env.BENCH_SOURCE !== '1') register(new URL('./compiled-hooks.mjs', import.meta.url));
