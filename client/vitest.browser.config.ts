import { defineConfig } from "vitest/config";

// Browser tests: Node drives Debian's Chromium (playwright-core) against a real realtimed.
export default defineConfig({
  test: {
    include: ["test-browser/**/*.test.ts"],
    globalSetup: ["test-browser/global-setup.ts"],
    environment: "node",
    testTimeout: 300_000, // a guard against a hung test: each wait has its own bound (PATIENCE_MS)
    hookTimeout: 300_000,
    fileParallelism: false,
    pool: "forks",
  },
});
