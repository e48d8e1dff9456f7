import { type RawBuilder, sql } from 'kysely'
import { personalData } from '../../contracts/customer.ts'
import type { CustomerEvent } from '../../contracts/customer-events.ts'
import type { DeliveryStatusKind } from '../../contracts/sync-status-events.ts'
import { executePrepared } from '../../platform/database/index.ts'
import { recordStatuses, type StatusChange } from '../status/sync-status.ts'
import { type DeliveryOperation, type DeliveryRow, deliveryMonth, deliveryMonthSql, type SyncerDb, type SyncerTx } from '../tables.ts'
import {
  type AttemptStatus,
  type Decision,
  type DeliveryState,
  type RemarkTemplate,
  remarkTemplates,
  settledStates,
  transitions,
  waitingStates
} from './states.ts'

/** A list of states as SQL literals: in the query text, so a partial index on those states is seen to apply. */
export const stateList = (states: readonly DeliveryState[]): RawBuilder<unknown> => sql.join(states.map((state) => sql.lit(state)))

/** A remark template (states.ts) filled in by SQL, row by row: `{name}` becomes the value of `values[name]`. */
export function remarkSql(template: RemarkTemplate, values: Record<string, RawBuilder<unknown>>): RawBuilder<string> {
  return Object.entries(values).reduce<RawBuilder<string>>(
    (text, [name, value]) => sql<string>`replace(${text}, ${`{${name}}`}, (${value})::text)`,
    sql<string>`${remarkTemplates[template]}::text`
  )
}

/** A delivery taken for one attempt, with what the attempt needs to build its request. */
export interface ClaimedDelivery extends DeliveryRow {
  /** The customer event as stored when it was taken from Kafka (checked against its schema then). */
  event: CustomerEvent
  event_type: string
  owner_source_system: string
  /** The intake's span of the event: each attempt's span is its child. */
  event_traceparent: string | null
  xref_external_id: string | null
  /**
   * The personal data of the customer's other versions the syncer holds, each distinct set once: an end
   * system may answer with what it held before, and that must be masked too.
   */
  other_versions: Record<string, unknown>[] | null
}

/** The personal-data fields of a stored event's customer (contracts/customer.ts), as one jsonb object. */
const personalDataOf = (event: RawBuilder<unknown>): RawBuilder<unknown> =>
  sql`jsonb_build_object(${sql.join(personalData.fields.map((field) => sql`${sql.lit(field)}::text, ${event}->'data'->${sql.lit(field)}`))})`

/**
 * The due deliveries of one end system, in due order, locked. "Every earlier version settled" is a scalar
 * subquery, not NOT EXISTS, on purpose: PostgreSQL turns NOT EXISTS into an anti join whose plan follows the
 * table's statistics, and while they still describe the table before a burst (a Kafka outage's backlog,
 * the open deliveries estimated at one row) it scanned every open delivery of the system for each
 * candidate, 1-3 s a claim for a minute (docs/reliability.md). A scalar subquery stays a probe of
 * delivery_open_by_customer per candidate, whatever the statistics say. Nothing is due while an operator
 * has the system paused (end-system-store.ts).
 */
export function dueDeliveries(endSystem: string, limit: number): RawBuilder<{ id: string; round_attempts: number }> {
  return sql<{ id: string; round_attempts: number }>`
    select d.id, d.round_attempts from delivery d
    where d.end_system = ${endSystem}
      and d.state in (${stateList(waitingStates)})
      and d.next_attempt_at <= now()
      and not exists (select 1 from end_system_pause p where p.end_system = ${endSystem})
      and (select true from delivery earlier
           where earlier.cif_id = d.cif_id and earlier.end_system = d.end_system
             and earlier.customer_version < d.customer_version
             and earlier.state not in (${stateList(settledStates)})
           limit 1) is null
    order by d.next_attempt_at, d.id
    limit ${limit}
    for update skip locked`
}

/**
 * Leases by attempt of a round: `leases[n - 1]` is the lease of attempt n, and the last one serves every
 * attempt after (it must cover the longest timeout an attempt can get).
 */
export type LeaseTable = readonly number[]

/**
 * Takes up to `limit` due deliveries of one end system for an attempt each. A delivery is due only when
 * every earlier version for the same customer and system has succeeded or was skipped, so updates never
 * overtake their create. Row locks with SKIP LOCKED let several syncers share the work.
 *
 * One statement, in no transaction of its own: the due selection, the lease and what the attempt needs,
 * one round trip instead of four (begin, select, update, commit). Its row locks last as long as the
 * statement, which is all the lease needs: once it commits, IN_FLIGHT keeps other claims away.
 */
export async function claimDue(db: SyncerDb, endSystem: string, limit: number, leases: LeaseTable): Promise<ClaimedDelivery[]> {
  if (limit <= 0) return []
  // Prepared: the same text for every claim of the system (the limit and the leases are parameters).
  const { rows } = await executePrepared(db, claimStatement(endSystem, limit, leases).compile(db))
  return rows
}

/** The claim's one statement (see claimDue). */
export function claimStatement(endSystem: string, limit: number, leases: LeaseTable): RawBuilder<ClaimedDelivery> {
  return sql<ClaimedDelivery>`
    with due as materialized (${dueDeliveries(endSystem, limit)}),
    claimed as (
      update delivery d
      set state = ${transitions.claim.to}, attempts = d.attempts + 1, round_attempts = d.round_attempts + 1,
          lease_until = now() + make_interval(secs => (${leases}::int[])[least(due.round_attempts + 1, ${leases.length})] / 1000.0),
          updated_at = now()
      from due where d.id = due.id
      returning d.*)
    select claimed.*, e.event, e.event_type, e.owner_source_system, e.traceparent as event_traceparent, x.external_id as xref_external_id,
      (select jsonb_agg(distinct ${personalDataOf(sql.ref('other.event'))}) from sync_event other
        where other.cif_id = claimed.cif_id and other.event_id <> claimed.event_id) as other_versions
    from claimed
    join sync_event e on e.event_id = claimed.event_id
    left join customer_xref x on x.cif_id = claimed.cif_id and x.end_system = claimed.end_system
    order by claimed.next_attempt_at, claimed.id`
}

export interface AttemptRecord {
  status: AttemptStatus
  httpStatus: number | null
  message: string
  remarks: string
  timeoutMs: number
  startedAt: Date
  finishedAt: Date
  /** The attempt's span, as the end system received it. */
  traceparent?: string | undefined
}

/** The status message of a delivery that moved to the state of `kind`. */
export function deliveryStatus<K extends DeliveryStatusKind>(kind: K, owner: string, d: DeliveryRow): StatusChange {
  const status = {
    cifId: d.cif_id,
    customerVersion: d.customer_version,
    eventId: d.event_id,
    endSystem: d.end_system,
    deliveryId: d.id,
    state: d.state,
    attempts: d.attempts,
    externalId: d.external_id,
    lastError: d.last_error,
    remarks: d.remarks,
    ...(kind === 'RETRYING' ? { nextAttemptAt: d.next_attempt_at.toISOString() } : {})
  }
  return { owner, kind, status } as StatusChange
}

/** Which status message each decision's state is told with. */
const statusKindOf = { SUCCESS: 'DELIVERED', RETRY_SCHEDULED: 'RETRYING', FAILED: 'FAILED' } as const satisfies Record<
  Decision['state'],
  DeliveryStatusKind
>

export interface FinishedAttempt {
  delivery: ClaimedDelivery
  attempt: AttemptRecord
  decision: Decision
}

/**
 * Stores finished attempts in the transaction table and moves their deliveries on, with their status
 * messages, in one transaction for the whole batch (a few statements, whatever its size). Returns, per
 * attempt, false when the delivery was no longer that attempt's (its lease ran out and a newer attempt
 * took it): the attempt is still recorded, the delivery is left to the newer one.
 */
export async function recordAttempts(db: SyncerDb, finished: FinishedAttempt[]): Promise<boolean[]> {
  if (finished.length === 0) return []
  return db.transaction().execute(async (trx) => {
    const attempts = finished.map(({ delivery, attempt }) => ({
      delivery_id: delivery.id,
      delivery_month: deliveryMonth(delivery.created_at),
      event_id: delivery.event_id,
      cif_id: delivery.cif_id,
      event_type: delivery.event_type,
      customer_version: delivery.customer_version,
      end_system: delivery.end_system,
      attempt_number: delivery.attempts,
      status: attempt.status,
      http_status: attempt.httpStatus,
      response_message: attempt.message,
      remarks: attempt.remarks,
      timeout_ms: attempt.timeoutMs,
      duration_ms: attempt.finishedAt.getTime() - attempt.startedAt.getTime(),
      started_at: attempt.startedAt,
      finished_at: attempt.finishedAt,
      traceparent: attempt.traceparent ?? null
    }))
    // The batch as one JSON parameter, so that the statement's text is the same whatever its size and is
    // prepared once per connection (a multi-row VALUES list was parsed and planned for every batch).
    await executePrepared(
      trx,
      sql`
        insert into delivery_attempt (delivery_id, delivery_month, event_id, cif_id, event_type, customer_version, end_system,
          attempt_number, status, http_status, response_message, remarks, timeout_ms, duration_ms, started_at, finished_at, traceparent)
        select * from jsonb_to_recordset(${JSON.stringify(attempts)}::jsonb) as a(delivery_id bigint, delivery_month date, event_id uuid,
          cif_id text, event_type text, customer_version integer, end_system text, attempt_number integer, status text,
          http_status integer, response_message text, remarks text, timeout_ms integer, duration_ms integer,
          started_at timestamptz, finished_at timestamptz, traceparent text)
        -- Lease recovery may have written a placeholder for this attempt while it was still being recorded:
        -- the real answer replaces it. Its delivery's month is the partition key (migration 0006).
        on conflict (delivery_id, attempt_number, delivery_month) do update set
          status = excluded.status, http_status = excluded.http_status, response_message = excluded.response_message,
          remarks = excluded.remarks, timeout_ms = excluded.timeout_ms, duration_ms = excluded.duration_ms,
          started_at = excluded.started_at, finished_at = excluded.finished_at, traceparent = excluded.traceparent`.compile(trx)
    )

    const values = finished.map(({ delivery, attempt, decision }) => ({
      id: delivery.id,
      attempts: delivery.attempts,
      state: decision.state,
      delay_ms: decision.state === 'RETRY_SCHEDULED' ? decision.delayMs : 0,
      external_id: decision.state === 'SUCCESS' ? decision.externalId : null,
      last_error: attempt.status === 'ERROR' ? attempt.message : null,
      remarks: attempt.remarks
    }))
    const { succeed, retry } = transitions
    const { rows: updated } = await executePrepared(
      trx,
      sql<DeliveryRow>`
      with moved as (
        update delivery d set
          state = v.state,
          lease_until = null,
          remarks = v.remarks,
          external_id = case when v.state = ${succeed.to} then v.external_id else d.external_id end,
          -- A success clears it: an error the end system no longer has would send a reader looking for a fault.
          last_error = v.last_error,
          next_attempt_at = case when v.state = ${retry.to} then now() + make_interval(secs => v.delay_ms / 1000.0) else d.next_attempt_at end,
          completed_at = case when v.state = ${retry.to} then null else now() end,
          updated_at = now()
        from jsonb_to_recordset(${JSON.stringify(values)}::jsonb)
          as v(id bigint, attempts int, state text, delay_ms int, external_id text, last_error text, remarks text)
        -- Still this attempt's: in flight (the state every outcome leaves), and not claimed again since.
        where d.id = v.id and d.state in (${stateList(succeed.from)}) and d.attempts = v.attempts
          -- Names the rows for the planner: without it, it joins against a scan of the whole table.
          and d.id = any(${values.map((v) => v.id)}::bigint[])
        returning d.*),
      -- The record id a create got is what the customer's updates to that system are sent to.
      xref as (
        insert into customer_xref (cif_id, end_system, external_id)
        select cif_id, end_system, external_id from moved
        where state = ${succeed.to} and operation = ${'create' satisfies DeliveryRow['operation']} and external_id is not null
        on conflict (cif_id, end_system) do update set external_id = excluded.external_id)
      select * from moved`.compile(trx)
    )
    // By delivery and attempt: a batch may hold a stale attempt and the current one of the same delivery.
    const moved = new Set(updated.map((row) => `${row.id}:${row.attempts}`))
    const owners = new Map(finished.map(({ delivery }) => [delivery.id, delivery.owner_source_system]))

    const failed = updated.filter((row) => row.state === transitions.fail.to)
    if (failed.length) await blockBehindFailures(trx, { cifIds: [...new Set(failed.map((row) => row.cif_id))] })
    // Told in one go, each delivery's status before the "in sync" it completes.
    // The transaction's last statement: the statuses take their feed positions as they are written.
    await recordStatuses(
      trx,
      [
        ...updated.map((row) => deliveryStatus(statusKindOf[row.state as Decision['state']], owners.get(row.id)!, row)),
        ...(await nowInSync(
          trx,
          updated.filter((row) => row.state === succeed.to).map((row) => row.event_id)
        ))
      ],
      'positioned now, committed next'
    )
    return finished.map(({ delivery }) => moved.has(`${delivery.id}:${delivery.attempts}`))
  })
}

/**
 * The events that every end system now holds, to be told once as IN_SYNC: the transaction that records
 * the last success (or retires the last system missing) sees all the others committed. Event row locks (taken
 * in one order, in a statement of their own so that the check after them sees what committed while they were
 * awaited) serialize those checks. A system removed from the configuration (RETIRED) no longer counts.
 */
export async function nowInSync(trx: SyncerTx, eventIds: string[]): Promise<StatusChange[]> {
  const ids = [...new Set(eventIds)].sort()
  if (ids.length === 0) return []
  // The ids as one array (not an IN list), so that each statement is prepared once per connection.
  const { rows: events } = await executePrepared(
    trx,
    trx
      .selectFrom('sync_event')
      .select(['event_id', 'cif_id', 'customer_version', 'owner_source_system'])
      .where('event_id', '=', sql<string>`any(${ids}::uuid[])`)
      .orderBy('event_id')
      .forUpdate()
      .compile()
  )
  const { rows: deliveries } = await executePrepared(
    trx,
    trx.selectFrom('delivery').select(['event_id', 'end_system', 'state']).where('event_id', '=', sql<string>`any(${ids}::uuid[])`).compile()
  )
  // Grouped once: filtering all of a batch's deliveries for each of its events grew with the batch squared.
  const byEvent = Map.groupBy(deliveries, (d) => d.event_id)
  return events
    .map((event) => ({ event, mine: (byEvent.get(event.event_id) ?? []).filter((d) => d.state !== transitions.retire.to) }))
    .filter(({ mine }) => mine.length > 0 && mine.every((d) => d.state === transitions.succeed.to))
    .map(({ event, mine }) => ({
      owner: event.owner_source_system,
      kind: 'IN_SYNC' as const,
      status: {
        cifId: event.cif_id,
        customerVersion: event.customer_version,
        eventId: event.event_id,
        endSystems: mine.map((d) => d.end_system).sort()
      }
    }))
}

/**
 * Deliveries waiting while an earlier version for the same customer and system is FAILED are BLOCKED,
 * visibly, until it is redriven or skipped: for the customers of deliveries that just failed, or for
 * deliveries just stored.
 */
export async function blockBehindFailures(trx: SyncerTx, which: { cifIds: string[] } | { deliveryIds: string[] }): Promise<void> {
  if (('cifIds' in which ? which.cifIds : which.deliveryIds).length === 0) return
  const chosen = 'cifIds' in which ? sql`d.cif_id = any(${which.cifIds}::text[])` : sql`d.id = any(${which.deliveryIds}::bigint[])`
  const { block, fail } = transitions
  await executePrepared(
    trx,
    // The FAILED delivery is read under a share lock: a redrive or skip of it, at the same moment, either
    // commits first (then it is not FAILED here) or waits for this transaction, and its unblock then sees
    // what this one blocked. Unlocked, a delivery stored while its earlier version was being redriven stayed
    // BLOCKED behind a delivery no longer FAILED (found by the fault suite's misbehaving end systems).
    sql`
    with failed as (
      select d.id as blocked_id, f.id, f.customer_version from delivery d
      join delivery f on f.cif_id = d.cif_id and f.end_system = d.end_system and f.customer_version < d.customer_version
      where ${chosen} and d.state in (${stateList(block.from)}) and f.state = ${fail.to}
      for share of f)
    update delivery d
    set state = ${block.to}, updated_at = now(),
        remarks = ${remarkSql('waitsBehind', { delivery: sql`f.id`, version: sql`f.customer_version` })}
    from failed f
    where d.id = f.blocked_id and d.state in (${stateList(block.from)})`.compile(trx)
  )
}

/**
 * Whether the version just before delivery `d`'s has not reached the syncer while an earlier one has: a gap in
 * the CIF service's versions, which it publishes one after another on one partition, so a message out of its
 * place. A customer first seen at a later version has no gap: the syncer may have started after its first events.
 */
export function versionMissingBefore(d: string): RawBuilder<boolean> {
  const [cifId, version] = [sql.ref(`${d}.cif_id`), sql.ref(`${d}.customer_version`)]
  return sql<boolean>`(exists (select 1 from sync_event o where o.cif_id = ${cifId} and o.customer_version < ${version} - 1)
    and not exists (select 1 from sync_event p where p.cif_id = ${cifId} and p.customer_version = ${version} - 1))`
}

/**
 * New deliveries whose version comes after a gap are held (BLOCKED, saying which version they wait for) until
 * that version arrives (`reconsiderBlocked`), so that it is never sent over them.
 */
export async function holdBehindMissingVersions(trx: SyncerTx, deliveryIds: string[]): Promise<void> {
  if (deliveryIds.length === 0) return
  const { block } = transitions
  // Prepared, as the intake's other statements of every batch: the same text whatever the batch.
  await executePrepared(
    trx,
    sql`
    update delivery d
    set state = ${block.to}, updated_at = now(), remarks = ${remarkSql('waitsForVersion', { version: sql`d.customer_version - 1` })}
    where d.id = any(${deliveryIds}::bigint[]) and d.state in (${stateList(block.from)}) and ${versionMissingBefore('d')}`.compile(trx)
  )
}

/**
 * New deliveries of an update older than a version its end system was already sent (tried at least once, or
 * held by it) are SUPERSEDED at once, and their owners told: sending one would put older data over newer.
 * A create always goes (an update cannot make the record), as in coalescing.
 */
export async function supersedeArrivedLate(trx: SyncerTx, deliveryIds: string[]): Promise<void> {
  if (deliveryIds.length === 0) return
  const { supersede } = transitions
  const { rows } = await executePrepared(
    trx,
    sql<DeliveryRow & { owner: string }>`
    with late as (
      select d.id, newer.id as by_id, newer.customer_version as by_version from delivery d
      cross join lateral (
        select n.id, n.customer_version from delivery n
        where n.cif_id = d.cif_id and n.end_system = d.end_system and n.customer_version > d.customer_version
          and (n.attempts > 0 or n.state = ${transitions.succeed.to})
        order by n.customer_version desc limit 1) newer
      where d.id = any(${deliveryIds}::bigint[]) and d.operation = ${'update' satisfies DeliveryOperation}
        and d.state in (${stateList(supersede.from)}))
    update delivery d
    set state = ${supersede.to}, completed_at = now(), updated_at = now(),
        remarks = ${remarkSql('arrivedLate', { system: sql`d.end_system`, version: sql`late.by_version`, delivery: sql`late.by_id` })}
    from late where d.id = late.id
    returning d.*, (select e.owner_source_system from sync_event e where e.event_id = d.event_id) as owner`.compile(trx)
  )
  await recordStatuses(
    trx,
    rows.map(({ owner, ...row }) => deliveryStatus('SUPERSEDED', owner, row))
  )
}

/**
 * The BLOCKED deliveries of these customers (of one end system, when given), looked at again: one with a
 * FAILED version before it waits behind that; else one with a version missing before it waits for that; else
 * it may go, saying `released` (why it no longer waits). Only the rows whose state or remarks change are written.
 */
export async function reconsiderBlocked(
  trx: SyncerTx,
  which: { cifIds: string[]; endSystem?: string },
  released: 'unblocked' | 'versionArrived'
): Promise<void> {
  if (which.cifIds.length === 0) return
  const { unblock, fail } = transitions
  await executePrepared(
    trx,
    sql`
    with looked as (
      select d.id, failed.id as failed_id, failed.customer_version as failed_version, ${versionMissingBefore('d')} as gap
      from delivery d
      left join lateral (
        select f.id, f.customer_version from delivery f
        where f.cif_id = d.cif_id and f.end_system = d.end_system and f.customer_version < d.customer_version and f.state = ${fail.to}
        order by f.customer_version, f.id limit 1) failed on true
      where d.cif_id = any(${which.cifIds}::text[]) and d.state in (${stateList(unblock.from)})
        ${which.endSystem === undefined ? sql`` : sql`and d.end_system = ${which.endSystem}`}),
    decided as (
      select id, case when failed_id is null and not gap then ${unblock.to} else d.state end as state,
        case when failed_id is not null then ${remarkSql('waitsBehind', { delivery: sql`failed_id`, version: sql`failed_version` })}
             when gap then ${remarkSql('waitsForVersion', { version: sql`d.customer_version - 1` })}
             else ${remarkTemplates[released]}::text end as remarks
      from looked join delivery d using (id))
    update delivery d
    set state = decided.state, remarks = decided.remarks, updated_at = now(),
        next_attempt_at = case when decided.state = ${unblock.to} then now() else d.next_attempt_at end
    from decided
    where d.id = decided.id and (d.state is distinct from decided.state or d.remarks is distinct from decided.remarks)`.compile(trx)
  )
}

/** BLOCKED deliveries of one customer and system with no FAILED one before them any more, and no version missing, may go. */
export async function unblock(trx: SyncerTx, cifId: string, endSystem: string): Promise<void> {
  await reconsiderBlocked(trx, { cifIds: [cifId], endSystem }, 'unblocked')
}

/**
 * Attempts whose syncer died mid-call (the lease ran out with no answer recorded) are written to the
 * transaction table as ERROR, saying so, and scheduled again without using the end system's retry budget.
 */
export async function recoverExpiredLeases(db: SyncerDb): Promise<number> {
  const { recoverLease } = transitions
  const { rows } = await sql<{ id: string }>`
    with expired as (
      select d.id from delivery d where d.state in (${stateList(recoverLease.from)}) and d.lease_until < now()
      for update skip locked),
    attempts as (
      insert into delivery_attempt (delivery_id, delivery_month, event_id, cif_id, event_type, customer_version, end_system,
        attempt_number, status, http_status, response_message, remarks, timeout_ms, duration_ms, started_at, finished_at)
      select d.id, ${deliveryMonthSql(sql.ref('d.created_at'))}, d.event_id, d.cif_id, e.event_type, d.customer_version, d.end_system, d.attempts, ${'ERROR' satisfies AttemptStatus}, null,
        'no answer recorded', ${remarkTemplates.leaseLostAttempt}, 0, 0, d.updated_at, now()
      from delivery d join expired on expired.id = d.id join sync_event e on e.event_id = d.event_id
      on conflict (delivery_id, attempt_number, delivery_month) do nothing)
    update delivery d
    set state = ${recoverLease.to}, lease_until = null, next_attempt_at = now(), round_attempts = greatest(0, d.round_attempts - 1),
        remarks = ${remarkSql('leaseLost', { attempt: sql`d.attempts` })}, updated_at = now()
    from expired where d.id = expired.id
    returning d.id`.execute(db)
  return rows.length
}
