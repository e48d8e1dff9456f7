import { type Kysely, sql } from 'kysely'
import { createProbe, kafkaAnswers } from './kafka.ts'

/** What `/health/ready` asks of a service that stands on PostgreSQL and Kafka. */
export function dependencyChecks<DB>(db: Kysely<DB>, brokers: string[]): { checks: Record<string, () => Promise<boolean>>; close(): Promise<void> } {
  const probe = createProbe(brokers, 2000)
  return {
    checks: {
      database: async () => {
        await sql`select 1`.execute(db)
        return true
      },
      kafka: () => kafkaAnswers(probe)
    },
    close: () => probe.close()
  }
}
