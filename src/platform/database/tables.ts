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
  owner_token: string | null
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
  sync_event: SyncEventTable
  unreadable_message: UnreadableMessageTable
  delivery: DeliveryTable
  delivery_attempt: DeliveryAttemptTable
  customer_xref: CustomerXrefTable
  sync_status_update: SyncStatusUpdateTable
  operator_action: OperatorActionTable
}

export type CustomerRow = Selectable<CustomerTable>
export type NewOutboxMessage = Insertable<OutboxMessageTable>

export type DeliveryState = 'PENDING' | 'IN_FLIGHT' | 'RETRY_SCHEDULED' | 'SUCCESS' | 'FAILED' | 'BLOCKED' | 'SKIPPED'
export type DeliveryOperation = 'create' | 'update'

export interface SyncEventTable {
  event_id: string
  cif_id: string
  event_type: string
  customer_version: number
  owner_source_system: string
  acting_source_system: string
  event: ColumnType<Record<string, unknown>, string, never>
  event_time: ColumnType<Date, Date | string, never>
  received_at: DefaultedTimestamp
  kafka_partition: number
  kafka_offset: ColumnType<string, string | bigint, never>
}

export interface UnreadableMessageTable {
  id: Generated<string>
  topic: string
  kafka_partition: number
  kafka_offset: ColumnType<string, string | bigint, never>
  message_key: string | null
  message_value: string
  reason: string
  received_at: DefaultedTimestamp
}

export interface DeliveryTable {
  id: Generated<string>
  event_id: string
  cif_id: string
  end_system: string
  operation: DeliveryOperation
  customer_version: number
  state: DeliveryState
  attempts: ColumnType<number, number | undefined, number>
  round_attempts: ColumnType<number, number | undefined, number>
  next_attempt_at: DefaultedTimestamp
  lease_until: Date | null
  external_id: string | null
  last_error: string | null
  remarks: string | null
  created_at: DefaultedTimestamp
  updated_at: DefaultedTimestamp
  completed_at: Date | null
}

export interface DeliveryAttemptTable {
  id: Generated<string>
  delivery_id: string
  event_id: string
  cif_id: string
  event_type: string
  customer_version: number
  end_system: string
  attempt_number: number
  status: 'SUCCESS' | 'ERROR'
  http_status: number | null
  response_message: string | null
  remarks: string | null
  timeout_ms: number
  duration_ms: number
  started_at: Date
  finished_at: Date
}

export interface CustomerXrefTable {
  cif_id: string
  end_system: string
  external_id: string
  created_at: DefaultedTimestamp
}

export interface SyncStatusUpdateTable {
  id: Generated<string>
  seq: ColumnType<string | null, never, string | null>
  owner_source_system: string
  cif_id: string
  kind: string
  status: ColumnType<Record<string, unknown>, string, never>
  created_at: DefaultedTimestamp
}

export interface OperatorActionTable {
  id: Generated<string>
  delivery_id: string
  action: 'REDRIVE' | 'SKIP'
  operator: string
  reason: string
  from_state: DeliveryState
  created_at: DefaultedTimestamp
}

export type DeliveryRow = Selectable<DeliveryTable>
