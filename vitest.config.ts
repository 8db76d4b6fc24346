import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Separate processes: every test file gets its own tfjs engine and wasm heap.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
