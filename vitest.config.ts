import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Suites spawn servers and child processes; two workers match the 2-core machines we run on.
    // Node 20.10 (laf's runtime) cannot require() ES modules; newer Node 20 can unless told not to.
    poolOptions: { forks: { maxForks: 2, minForks: 1, execArgv: ['--no-experimental-require-module'] } },
    pool: 'forks',
  },
});
