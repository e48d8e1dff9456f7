import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    projects: [
      {
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'] }
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // One real PostgreSQL and one real Kafka for the whole run (see global-setup.ts).
          globalSetup: ['test/integration/global-setup.ts'],
          // Files share the stack and count rows and events: one at a time.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 180_000
        }
      }
    ]
  }
})
