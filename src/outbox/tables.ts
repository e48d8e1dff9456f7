import type { ColumnType, Generated, Insertable } from 'kysely'
import type { DefaultedTimestamp } from '../platform/database/index.ts'

/** Messages waiting to be published to Kafka, written in the same transaction as the change they tell of. */
export interface OutboxMessageTable {
  id: Generated<string>
  event_id: string
  topic: string
  message_key: string
  /** The exact bytes to publish (text, not jsonb, so nothing is re-serialised on the hot path). */
  payload: string
  headers: ColumnType<Record<string, string>, string | undefined, string>
  status: ColumnType<'PENDING' | 'SENT', 'PENDING' | undefined, 'PENDING' | 'SENT'>
  publish_attempts: ColumnType<number, never, number>
  last_error: string | null
  created_at: DefaultedTimestamp
  sent_at: Date | null
}

/** The outbox's table (created by the CIF service's first migration, released before each part had its own). */
export interface OutboxTables {
  outbox_message: OutboxMessageTable
}

export type NewOutboxMessage = Insertable<OutboxMessageTable>
