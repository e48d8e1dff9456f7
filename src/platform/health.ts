import { type Kysely, sql } from 'kysely'
import { createProbe, type KafkaCluster, kafkaAnswers } from './kafka.ts'

/** What `/health/ready` asks of a service that stands on PostgreSQL and Kafka. */
export function dependencyChecks<DB>(
  db: Kysely<DB>,
  kafka: KafkaCluster
): { checks: Record<string, () => Promise<boolean>>; close(): Promise<void> } {
  const probe = createProbe(kafka, 2000)
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
