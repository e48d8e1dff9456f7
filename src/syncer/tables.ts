import { type ColumnType, type Generated, type Kysely, type RawBuilder, type Selectable, sql, type Transaction } from 'kysely'
import type { Situation } from '../contracts/sync-status-events.ts'
import type { OutboxTables } from '../outbox/tables.ts'
import type { DefaultedTimestamp } from '../platform/database/index.ts'
import type { RequestKind, RequestState } from './delivery/four-eyes.ts'
import type { AttemptStatus, DeliveryState, OperatorAction } from './delivery/states.ts'
import type { RunKind, RunState } from './reconciliation/runs.ts'

export type DeliveryOperation = 'create' | 'update'

export interface SyncEventTable {
  event_id: string
  cif_id: string
  event_type: string
  customer_version: number
  owner_source_system: string
  acting_source_system: string
  /**
   * The event as taken from Kafka; null once no delivery needs it any more (retention) or the customer was
   * erased. A waiting or FAILED delivery's event always has it (see settledStates in delivery/states.ts).
   */
  event: ColumnType<Record<string, unknown> | null, string | null, null>
  event_time: ColumnType<Date, Date | string, never>
  received_at: DefaultedTimestamp
  kafka_partition: number
  kafka_offset: ColumnType<string, string | bigint, never>
  /** The intake's span for the event (migration 0012): each attempt's span is its child. */
  traceparent: ColumnType<string | null, string | null | undefined, never>
  /** When its owner was told this version missed the in-sync deadline (status/overdue.ts); null until then. */
  overdue_at: ColumnType<Date | null, never, Date>
}

export interface UnreadableMessageTable {
  id: Generated<string>
  topic: string
  kafka_partition: number
  kafka_offset: ColumnType<string, string | bigint, never>
  message_key: string | null
  /** Null past the retention (intake/retention.ts). */
  message_value: ColumnType<string | null, string, null>
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
  /**
   * When the customer version was made (its event's time), for the overdue count (migration 0019): set when
   * the delivery is made; null on deliveries that had settled before that migration.
   */
  event_time: ColumnType<Date | null, Date | string | null | undefined, never>
  /** Set on a delivery a reconciliation run (a repair) or a backfill asked for; the intake's have none. */
  reconciliation_run_id: ColumnType<string | null, string | null | undefined, never>
}

export interface DeliveryAttemptTable {
  id: Generated<string>
  delivery_id: string
  /** The partition key (migration 0006): the first day of the month (UTC) the delivery was created in. */
  delivery_month: ColumnType<Date, string, never>
  event_id: string
  cif_id: string
  event_type: string
  customer_version: number
  end_system: string
  attempt_number: number
  status: AttemptStatus
  http_status: number | null
  response_message: string | null
  remarks: string | null
  timeout_ms: number
  duration_ms: number
  started_at: Date
  finished_at: Date
  /** The attempt's span, as the end system received it (migration 0012). */
  traceparent: ColumnType<string | null, string | null | undefined, string | null>
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
  /** The CloudEvent id on `cif.sync.status`; null only on rows published from the outbox before 0007. */
  event_id: ColumnType<string | null, never, never>
  /** When the status relay published the row; null while it waits. */
  published_at: ColumnType<Date | null, never, Date>
  publish_attempts: ColumnType<number, never, number>
  last_error: ColumnType<string | null, never, string | null>
}

/** One action of an operator, on a delivery (redrive, skip) or on an end system (pause, resume), never both. */
export interface OperatorActionTable {
  id: Generated<string>
  delivery_id: string | null
  end_system: string | null
  action: OperatorAction
  operator: string
  reason: string
  from_state: DeliveryState | null
  created_at: DefaultedTimestamp
  /** Set when the action was requested by `operator` and approved by another person. */
  request_id: string | null
  approved_by: string | null
}

export interface ActionRequestTable {
  id: Generated<string>
  kind: RequestKind
  state: ColumnType<RequestState, RequestState | undefined, RequestState>
  requested_by: string
  reason: string
  filter: ColumnType<Record<string, unknown> | null, string | null, never>
  requested_at: DefaultedTimestamp
  expires_at: ColumnType<Date, Date | string, never>
  decided_by: string | null
  decided_at: Date | null
  decision_reason: string | null
}

export interface ActionRequestDeliveryTable {
  request_id: string
  delivery_id: string
}

/** A customer whose personal data the syncer erased: who, when and why. */
export interface CustomerErasureTable {
  cif_id: string
  erased_by: string
  reason: string
  erased_at: DefaultedTimestamp
}

/** A paused end system: who paused it, when and why (delivery/end-system-store.ts). */
export interface EndSystemPauseTable {
  end_system: string
  paused_by: string
  reason: string
  paused_at: DefaultedTimestamp
}

/** A reconciliation or backfill run (migration 0011): what it covers, where it stands, what it found. */
export interface ReconciliationRunTable {
  id: Generated<string>
  kind: RunKind
  state: ColumnType<RunState, RunState | undefined, RunState>
  end_systems: string[]
  cif_ids: string[] | null
  since: Date | null
  repair: ColumnType<string[], string[] | undefined, never>
  requested_by: string
  after_cif_id: string | null
  /** Per system: the list cursor reached, or true once its list was read to the end. */
  listing: ColumnType<Record<string, string | true>, string | undefined, string>
  total: number | null
  done: ColumnType<number, never, number>
  errors: ColumnType<number, never, number>
  counts: ColumnType<Record<string, number>, never, string>
  lease_until: Date | null
  started_at: DefaultedTimestamp
  updated_at: DefaultedTimestamp
  finished_at: Date | null
}

export interface ReconciliationFindingTable {
  id: Generated<string>
  run_id: string
  cif_id: string
  end_system: string
  situation: Situation
  customer_version: number | null
  held_version: number | null
  external_id: string | null
  differences: ColumnType<{ field: string; expected: string; held: string }[] | null, string | null, never>
  repair_delivery_id: string | null
  found_at: DefaultedTimestamp
}

/** Deliveries that settled before the mark, counted by end system and state (delivery/delivery-counts.ts). */
export interface DeliverySettledCountTable {
  end_system: string
  state: DeliveryState
  deliveries: ColumnType<string, number, never>
}

/** One row: the instant before which settled deliveries are in delivery_settled_count. */
export interface DeliverySettledCountMarkTable {
  only_row: ColumnType<boolean, never, never>
  counted_before: Date
}

/** The syncer's tables; migrations in ./migrations. */
export interface SyncerTables {
  sync_event: SyncEventTable
  unreadable_message: UnreadableMessageTable
  delivery: DeliveryTable
  delivery_attempt: DeliveryAttemptTable
  customer_xref: CustomerXrefTable
  sync_status_update: SyncStatusUpdateTable
  operator_action: OperatorActionTable
  action_request: ActionRequestTable
  action_request_delivery: ActionRequestDeliveryTable
  customer_erasure: CustomerErasureTable
  end_system_pause: EndSystemPauseTable
  reconciliation_run: ReconciliationRunTable
  reconciliation_finding: ReconciliationFindingTable
  delivery_settled_count: DeliverySettledCountTable
  delivery_settled_count_mark: DeliverySettledCountMarkTable
}

/** What the syncer's code may touch: its tables and the outbox that publishes its status messages. */
export type SyncerDatabase = SyncerTables & OutboxTables

export type SyncerDb = Kysely<SyncerDatabase>
export type SyncerTx = Transaction<SyncerDatabase>

export type DeliveryRow = Selectable<DeliveryTable>
export type ActionRequestRow = Selectable<ActionRequestTable>
export type ReconciliationRunRow = Selectable<ReconciliationRunTable>
export type FindingRow = Selectable<ReconciliationFindingTable>

/** A delivery's month (`delivery_attempt.delivery_month`) from its creation time: `2026-11-01`. */
export const deliveryMonth = (createdAt: Date): string => `${createdAt.toISOString().slice(0, 8)}01`
/** The same in SQL, from a delivery's `created_at`. */
export const deliveryMonthSql = (createdAt: RawBuilder<unknown>): RawBuilder<string> =>
  sql<string>`date_trunc('month', ${createdAt} at time zone 'UTC')::date`
