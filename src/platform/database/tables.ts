import type { ColumnType, Generated, Insertable, Selectable } from 'kysely'

/** Columns the database fills in: optional on insert, present when read. */
type DefaultedTimestamp = ColumnType<Date, Date | string | undefined, Date | string>

export interface CustomerTable {
  cif_id: string
  version: number
  legal_form: 'PERSON' | 'ENTITY'
  /** The source system that created the customer. */
  source_system: string
  external_id: string | null
  /** The customer's fields as the API shows them, without cifId, version and metadata. */
  record: ColumnType<Record<string, unknown>, string, string>
  created_at: DefaultedTimestamp
  updated_at: DefaultedTimestamp
}

export interface CustomerIdentifierTable {
  type: string
  issuing_country: string
  /** Upper-cased, without spaces, dots, hyphens or slashes, so "ab-12 3" and "AB123" are one document. */
  normalized_value: string
  cif_id: string
}

export interface IdempotencyKeyTable {
  source_system: string
  key: string
  request_hash: string
  state: 'IN_FLIGHT' | 'COMPLETED'
  response_status: number | null
  response_body: ColumnType<unknown, string | null, string | null>
  response_headers: ColumnType<Record<string, string> | null, string | null, string | null>
  /** An IN_FLIGHT key whose owner crashed is taken over after this time. */
  locked_until: Date | null
  created_at: DefaultedTimestamp
}

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

export interface Database {
  customer: CustomerTable
  customer_identifier: CustomerIdentifierTable
  idempotency_key: IdempotencyKeyTable
  outbox_message: OutboxMessageTable
}

export type CustomerRow = Selectable<CustomerTable>
export type NewOutboxMessage = Insertable<OutboxMessageTable>
