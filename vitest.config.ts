import { defineConfig } from 'vitest/config';

// Tests run the packages from src/, never from a build: imports of
// @memballoon/* take the custom export condition that maps them to src/, and
// every process a test starts inherits it through NODE_OPTIONS (the bins then
// load src/ through tsx). The install test is the one place that runs dist/.
const SOURCE_CONDITION = '@memballoon/source';
const nodeOptions = [process.env.NODE_OPTIONS, `--conditions=${SOURCE_CONDITION}`].filter(Boolean).join(' ');

export default defineConfig({
  resolve: { conditions: [SOURCE_CONDITION, 'module', 'node', 'development|production'] },
  ssr: { resolve: { conditions: [SOURCE_CONDITION, 'module', 'node', 'development|production'] } },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    // Balloon tests inflate tens of MiB each and end-to-end tests start real
    // processes: two cores, so keep parallelism modest and deadlines generous.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    env: { NODE_OPTIONS: nodeOptions },
  },
});
