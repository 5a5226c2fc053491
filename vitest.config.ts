import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Tests that load the BPF program sample the whole machine; running them
    // in parallel would let one test's workload pollute another's shares.
    fileParallelism: false,
    testTimeout: 120_000,
    // The JSON report lets .ci/run print a plain "N passed, N failed" line.
    reporters: ['default', ['json', { outputFile: 'test-artifacts/vitest-report.json' }]],
    hookTimeout: 180_000,
  },
});
