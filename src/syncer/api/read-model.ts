import { type ExpressionBuilder, type RawBuilder, sql } from 'kysely'
import { Refusal } from '../../contracts/problems.ts'
import type { StatusData } from '../../contracts/sync-status-events.ts'
import { spanIdOf, traceIdOf } from '../../platform/tracing.ts'
import { isWaiting, overallState } from '../delivery/states.ts'
import { type DeliveryRow, deliveryMonthSql, type SyncerDatabase, type SyncerDb } from '../tables.ts'
import {
  type Attempt,
  type AttemptFilters,
  type CustomerSync,
  type Delivery,
  type DeliveryFilters,
  type DeliverySelection,
  INSTANT_PATTERN,
  type UnreadableMessage,
  type UnreadableMessageFilters
} from './schemas.ts'

/** The queries behind the callback and admin APIs: the routes call these and never touch SQL. */

const instantShape = new RegExp(INSTANT_PATTERN)

/**
 * A `from` or `to` filter as PostgreSQL reads it, to the microsecond it stores: a Date keeps milliseconds, so
 * `.000501` would become `.000` and take in rows it must not. The route's schema has refused what PostgreSQL
 * cannot read; this checks again (shape, and the day is one of its month) so that no other caller can turn a
 * bad instant into a 500.
 */
function instant(value: string, parameter: 'from' | 'to'): RawBuilder<Date> {
  const shaped = instantShape.exec(value)
  // Day 0 of the next month is the last of this one; year % 400 + 2000 has the same leap years and stays clear
  // of Date.UTC's reading of years 0-99 as 1900-1999.
  const lastDay = shaped ? new Date(Date.UTC((Number(shaped[1]) % 400) + 2000, Number(shaped[2]), 0)).getUTCDate() : 0
  if (!shaped || Number(shaped[3]) > lastDay) {
    throw Refusal.invalid([{ parameter, detail: 'must be an RFC 3339 date-time such as 2026-01-31T00:00:00Z (offset Z or ±hh:mm)' }])
  }
  return sql<Date>`${value}::timestamptz`
}

export function toDelivery(row: DeliveryRow): Delivery {
  return {
    deliveryId: row.id,
    eventId: row.event_id,
    cifId: row.cif_id,
    endSystem: row.end_system,
    operation: row.operation,
    customerVersion: row.customer_version,
    state: row.state,
    attempts: row.attempts,
    externalId: row.external_id,
    lastError: row.last_error,
    remarks: row.remarks,
    nextAttemptAt: isWaiting(row.state) ? row.next_attempt_at.toISOString() : null,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    completedAt: row.completed_at?.toISOString() ?? null
  }
}

/** Where a customer stands; undefined when the syncer knows no such customer that the caller may read (`mayRead(owner)`). */
export async function customerSync(db: SyncerDb, cifId: string, mayRead: (owner: string) => boolean): Promise<CustomerSync | undefined> {
  const known = await db
    .selectFrom('sync_event')
    .select(['owner_source_system', (eb) => eb.fn.max('customer_version').as('latest_version')])
    .where('cif_id', '=', cifId)
    .groupBy('owner_source_system')
    .executeTakeFirst()
  // Another source system's customer is as unknown as a customer that does not exist.
  if (!known || !mayRead(known.owner_source_system)) return undefined
  const latest = await db
    .selectFrom('delivery')
    .selectAll()
    .distinctOn('end_system')
    .where('cif_id', '=', cifId)
    .orderBy('end_system')
    .orderBy('customer_version', 'desc')
    // A repair (reconciliation) sends a version again: the newer delivery of it says where the system stands.
    .orderBy('id', 'desc')
    .execute()
  const latestVersion = known.latest_version
  return { cifId, latestVersion, state: overallState(latest, latestVersion), endSystems: latest.map(toDelivery) }
}

/** Status changes of `sourceSystem`'s customers after feed position `after`, in order. */
export async function statusUpdates(
  db: SyncerDb,
  sourceSystem: string,
  after: string,
  limit: number
): Promise<{ updates: StatusData[]; next: string }> {
  const rows = await db
    .selectFrom('sync_status_update')
    .select(['seq', 'status'])
    .where('owner_source_system', '=', sourceSystem)
    .where('seq', 'is not', null)
    .where('seq', '>', after)
    .orderBy('seq')
    .limit(limit)
    .execute()
  return { updates: rows.map((row) => row.status as StatusData), next: rows.at(-1)?.seq ?? after }
}

/** The deliveries a selection names: the one filter behind the list and a bulk redrive (action-request-store.ts). */
export function deliveriesMatching(q: DeliverySelection) {
  return (eb: ExpressionBuilder<SyncerDatabase, 'delivery'>) =>
    eb.and([
      ...(q.cifId ? [eb('delivery.cif_id', '=', q.cifId)] : []),
      ...(q.endSystem ? [eb('delivery.end_system', '=', q.endSystem)] : []),
      ...(q.state ? [eb('delivery.state', '=', q.state)] : []),
      ...(q.from ? [eb('delivery.created_at', '>=', instant(q.from, 'from'))] : []),
      ...(q.to ? [eb('delivery.created_at', '<', instant(q.to, 'to'))] : [])
    ])
}

export async function findDeliveries(db: SyncerDb, q: DeliveryFilters): Promise<Delivery[]> {
  return (await deliveriesQuery(db, q).execute()).map((row) => ({ ...toDelivery(row), traceId: traceIdOf(row.traceparent) }))
}

/** The query behind findDeliveries (the history benchmark records its plans). */
export function deliveriesQuery(db: SyncerDb, q: DeliveryFilters) {
  let query = db
    .selectFrom('delivery')
    .selectAll()
    // The event's trace, one probe of its primary key per delivery on the page.
    .select((eb) => eb.selectFrom('sync_event').select('traceparent').whereRef('sync_event.event_id', '=', 'delivery.event_id').as('traceparent'))
    .where(deliveriesMatching(q))
    .orderBy('id')
    .limit(Number(q.limit ?? 100))
  if (q.after) query = query.where('id', '>', q.after)
  return query
}

export async function findAttempts(db: SyncerDb, q: AttemptFilters): Promise<Attempt[]> {
  const query = await attemptsQuery(db, q)
  const rows = query ? await query.execute() : []
  return rows.map((a) => ({
    attemptId: a.id,
    deliveryId: a.delivery_id,
    eventId: a.event_id,
    cifId: a.cif_id,
    eventType: a.event_type,
    customerVersion: a.customer_version,
    endSystem: a.end_system,
    attemptNumber: a.attempt_number,
    status: a.status,
    httpStatus: a.http_status,
    message: a.response_message,
    remarks: a.remarks,
    timeoutMs: a.timeout_ms,
    durationMs: a.duration_ms,
    startedAt: a.started_at.toISOString(),
    finishedAt: a.finished_at.toISOString(),
    traceId: traceIdOf(a.traceparent),
    spanId: spanIdOf(a.traceparent)
  }))
}

/**
 * The day after `to` (UTC), bounding the delivery months whose attempts can have started before `to`;
 * undefined for an instant JavaScript does not read, or a day outside years 1-9999, which a date parameter
 * could not name (the filter then reads every month, as before).
 */
function dayAfter(to: string): string | undefined {
  const day = new Date(new Date(to).getTime() + 24 * 3600 * 1000)
  return Number.isNaN(day.getTime()) || day.getUTCFullYear() < 1 || day.getUTCFullYear() > 9999 ? undefined : day.toISOString().slice(0, 10)
}

/** The query behind findAttempts; undefined when the customer or delivery named has no deliveries. */
export async function attemptsQuery(db: SyncerDb, q: AttemptFilters) {
  let query = db
    .selectFrom('delivery_attempt')
    .selectAll()
    .orderBy('id')
    .limit(Number(q.limit ?? 100))
  if (q.cifId) query = query.where('cif_id', '=', q.cifId)
  if (q.endSystem) query = query.where('end_system', '=', q.endSystem)
  if (q.status) query = query.where('status', '=', q.status)
  if (q.deliveryId) query = query.where('delivery_id', '=', q.deliveryId)
  if (q.from) query = query.where('started_at', '>=', instant(q.from, 'from'))
  if (q.to) {
    // An attempt starts after its delivery was made, so its delivery month (the partition, migration 0006)
    // is at most the month `to` falls in: named, the later months are not planned or read. A day's margin
    // for the syncer's clock (started_at) against PostgreSQL's (created_at). There is no such bound below
    // `from`: a delivery made years ago may be redriven today.
    query = query.where('started_at', '<', instant(q.to, 'to'))
    const bound = dayAfter(q.to)
    if (bound) query = query.where('delivery_month', '<=', sql<Date>`${bound}::date`)
  }
  if (q.after) query = query.where('id', '>', q.after)
  if (q.cifId || q.deliveryId) {
    // Named in the query, the months (partitions, migration 0006) of the customer's or the delivery's attempts
    // are all the planner plans and reads; otherwise it probes every month kept.
    let deliveries = db
      .selectFrom('delivery')
      .select(sql<string>`${deliveryMonthSql(sql.ref('created_at'))}::text`.as('month'))
      .distinct()
    if (q.cifId) deliveries = deliveries.where('cif_id', '=', q.cifId)
    if (q.deliveryId) deliveries = deliveries.where('id', '=', q.deliveryId)
    const months = (await deliveries.execute()).map((row) => row.month)
    if (months.length === 0) return undefined
    query = query.where(sql<boolean>`delivery_month = any(${months}::date[])`)
  }
  return query
}

/** The messages the intake kept as unreadable, oldest first, without their content. */
export async function findUnreadableMessages(db: SyncerDb, q: UnreadableMessageFilters): Promise<UnreadableMessage[]> {
  let query = db
    .selectFrom('unreadable_message')
    .select(['id', 'topic', 'kafka_partition', 'kafka_offset', 'message_key', 'reason', 'received_at'])
    .select(sql<number | null>`length(message_value)`.as('characters'))
    .orderBy('id')
    .limit(Number(q.limit ?? 100))
  if (q.key) query = query.where('message_key', '=', q.key)
  if (q.from) query = query.where('received_at', '>=', instant(q.from, 'from'))
  if (q.to) query = query.where('received_at', '<', instant(q.to, 'to'))
  if (q.after) query = query.where('id', '>', q.after)
  return (await query.execute()).map((row) => ({
    id: row.id,
    topic: row.topic,
    partition: row.kafka_partition,
    offset: String(row.kafka_offset),
    key: row.message_key,
    reason: row.reason,
    receivedAt: row.received_at.toISOString(),
    characters: row.characters
  }))
}
