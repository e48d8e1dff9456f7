import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    projects: [
      {
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], sequence: { groupOrder: 0 } }
      },
      {
        test: {
          // Stores and API routes against PostgreSQL alone (no Kafka): each file copies a migrated template
          // into a database of its own (test/support/own-database.ts), so files run in parallel.
          name: 'database',
          include: ['test/store/**/*.test.ts', 'test/api/**/*.test.ts'],
          globalSetup: ['test/support/postgres-setup.ts'],
          testTimeout: 30_000,
          hookTimeout: 120_000,
          sequence: { groupOrder: 0 }
        }
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // One real PostgreSQL and one real Kafka for the whole run (see global-setup.ts).
          globalSetup: ['test/integration/global-setup.ts'],
          // The whole stack: files share Kafka's topics (every syncer reads every customer's events), so
          // they run one at a time, after the fast groups.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 180_000,
          sequence: { groupOrder: 1 }
        }
      }
    ]
  }
})
