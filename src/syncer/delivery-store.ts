import { sql, type Transaction } from 'kysely'
import type { Database, Db } from '../platform/database/index.ts'
import type { DeliveryRow, DeliveryState } from '../platform/database/tables.ts'
import { ProblemError } from '../platform/http/problem.ts'
import { recordStatus, type DeliveryStatus } from './sync-status.ts'

type Tx = Transaction<Database>

/** A delivery taken for one attempt, with what the attempt needs to build its request. */
export interface ClaimedDelivery extends DeliveryRow {
  event: Record<string, any>
  event_type: string
  owner_source_system: string
  xref_external_id: string | null
}

/**
 * Takes up to `limit` due deliveries of one end system for an attempt each. A delivery is due only when
 * every earlier version for the same customer and system has succeeded or was skipped, so updates never
 * overtake their create. Row locks with SKIP LOCKED let several syncers share the work.
 */
export async function claimDue(db: Db, endSystem: string, limit: number, leaseMs: (roundAttempts: number) => number): Promise<ClaimedDelivery[]> {
  if (limit <= 0) return []
  return db.transaction().execute(async (trx) => {
    const { rows: due } = await sql<{ id: string; round_attempts: number }>`
      select d.id, d.round_attempts from delivery d
      where d.end_system = ${endSystem}
        and d.state in ('PENDING', 'RETRY_SCHEDULED')
        and d.next_attempt_at <= now()
        and not exists (
          select 1 from delivery earlier
          where earlier.cif_id = d.cif_id and earlier.end_system = d.end_system
            and earlier.customer_version < d.customer_version
            and earlier.state not in ('SUCCESS', 'SKIPPED'))
      order by d.next_attempt_at, d.id
      limit ${limit}
      for update skip locked`.execute(trx)
    if (due.length === 0) return []
    const leases = due.map((row) => leaseMs(row.round_attempts + 1))
    const { rows } = await sql<ClaimedDelivery>`
      with lease as (select unnest(${due.map((r) => r.id)}::bigint[]) as id, unnest(${leases}::int[]) as ms),
      claimed as (
        update delivery d
        set state = 'IN_FLIGHT', attempts = d.attempts + 1, round_attempts = d.round_attempts + 1,
            lease_until = now() + make_interval(secs => lease.ms / 1000.0), updated_at = now()
        from lease where d.id = lease.id
        returning d.*)
      select claimed.*, e.event, e.event_type, e.owner_source_system, x.external_id as xref_external_id
      from claimed
      join sync_event e on e.event_id = claimed.event_id
      left join customer_xref x on x.cif_id = claimed.cif_id and x.end_system = claimed.end_system`.execute(trx)
    return rows
  })
}

export interface AttemptRecord {
  status: 'SUCCESS' | 'ERROR'
  httpStatus: number | null
  message: string
  remarks: string
  timeoutMs: number
  startedAt: Date
  finishedAt: Date
}

export type Decision =
  | { state: 'SUCCESS'; externalId: string | null }
  | { state: 'RETRY_SCHEDULED'; delayMs: number }
  | { state: 'FAILED' }

function statusOf(d: DeliveryRow, state: DeliveryState, extra: Partial<DeliveryStatus> = {}): DeliveryStatus {
  return {
    cifId: d.cif_id,
    customerVersion: d.customer_version,
    eventId: d.event_id,
    endSystem: d.end_system,
    deliveryId: d.id,
    state,
    attempts: d.attempts,
    externalId: d.external_id,
    lastError: d.last_error,
    remarks: d.remarks,
    ...extra
  }
}

/**
 * Stores one attempt in the transaction table and moves the delivery on, with its status message, in one
 * transaction. Returns false when the delivery was no longer this attempt's (its lease ran out and
 * another attempt took it): the attempt is still recorded, the delivery is left to the newer attempt.
 */
export async function recordAttempt(db: Db, delivery: ClaimedDelivery, attempt: AttemptRecord, decision: Decision): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    await trx
      .insertInto('delivery_attempt')
      .values({
        delivery_id: delivery.id,
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
        finished_at: attempt.finishedAt
      })
      .execute()
    const error = attempt.status === 'ERROR' ? attempt.message : null
    const base = trx
      .updateTable('delivery')
      .where('id', '=', delivery.id)
      .where('state', '=', 'IN_FLIGHT')
      .where('attempts', '=', delivery.attempts)
    let updated: DeliveryRow | undefined
    if (decision.state === 'SUCCESS') {
      updated = await base
        .set({ state: 'SUCCESS', lease_until: null, external_id: decision.externalId, remarks: attempt.remarks, updated_at: sql`now()`, completed_at: sql`now()` })
        .returningAll()
        .executeTakeFirst()
    } else if (decision.state === 'RETRY_SCHEDULED') {
      updated = await base
        .set({
          state: 'RETRY_SCHEDULED',
          lease_until: null,
          next_attempt_at: sql`now() + make_interval(secs => ${decision.delayMs / 1000})`,
          last_error: error,
          remarks: attempt.remarks,
          updated_at: sql`now()`
        })
        .returningAll()
        .executeTakeFirst()
    } else {
      updated = await base
        .set({ state: 'FAILED', lease_until: null, last_error: error, remarks: attempt.remarks, updated_at: sql`now()`, completed_at: sql`now()` })
        .returningAll()
        .executeTakeFirst()
    }
    if (!updated) return false

    const owner = delivery.owner_source_system
    if (decision.state === 'SUCCESS') {
      if (delivery.operation === 'create' && decision.externalId) {
        await trx
          .insertInto('customer_xref')
          .values({ cif_id: delivery.cif_id, end_system: delivery.end_system, external_id: decision.externalId })
          .onConflict((oc) => oc.columns(['cif_id', 'end_system']).doUpdateSet({ external_id: decision.externalId! }))
          .execute()
      }
      await recordStatus(trx, owner, 'DELIVERED', statusOf(updated, 'SUCCESS'))
      await reportInSyncIfComplete(trx, delivery.event_id, owner)
    } else if (decision.state === 'RETRY_SCHEDULED') {
      await recordStatus(trx, owner, 'RETRYING', statusOf(updated, 'RETRY_SCHEDULED', { nextAttemptAt: updated.next_attempt_at.toISOString() }))
    } else {
      await recordStatus(trx, owner, 'FAILED', statusOf(updated, 'FAILED'))
      await blockLaterVersions(trx, updated)
    }
    return true
  })
}

/** Once every end system holds this event's version, say so, once. The event row lock orders the checks. */
async function reportInSyncIfComplete(trx: Tx, eventId: string, owner: string): Promise<void> {
  const event = await trx.selectFrom('sync_event').select(['cif_id', 'customer_version']).where('event_id', '=', eventId).forUpdate().executeTakeFirstOrThrow()
  const deliveries = await trx.selectFrom('delivery').select(['end_system', 'state']).where('event_id', '=', eventId).execute()
  if (deliveries.every((d) => d.state === 'SUCCESS')) {
    await recordStatus(trx, owner, 'IN_SYNC', {
      cifId: event.cif_id,
      customerVersion: event.customer_version,
      eventId,
      endSystems: deliveries.map((d) => d.end_system).sort()
    })
  }
}

/** Later versions for the same customer and system wait, visibly, behind a failed delivery. */
async function blockLaterVersions(trx: Tx, failed: DeliveryRow): Promise<void> {
  await trx
    .updateTable('delivery')
    .set({
      state: 'BLOCKED',
      remarks: `waits behind delivery ${failed.id} (version ${failed.customer_version}), which FAILED; redrive or skip it`,
      updated_at: sql`now()`
    })
    .where('cif_id', '=', failed.cif_id)
    .where('end_system', '=', failed.end_system)
    .where('customer_version', '>', failed.customer_version)
    .where('state', 'in', ['PENDING', 'RETRY_SCHEDULED'])
    .execute()
}

/** Deliveries stored while an earlier one for the same customer and system is FAILED start BLOCKED. */
export async function blockBehindFailures(trx: Tx, deliveryIds: string[]): Promise<void> {
  if (deliveryIds.length === 0) return
  await sql`
    update delivery d
    set state = 'BLOCKED',
        remarks = 'waits behind delivery ' || f.id || ' (version ' || f.customer_version || '), which FAILED; redrive or skip it'
    from delivery f
    where d.id = any(${deliveryIds}::bigint[])
      and f.cif_id = d.cif_id and f.end_system = d.end_system and f.customer_version < d.customer_version and f.state = 'FAILED'`.execute(trx)
}

/** BLOCKED deliveries with no FAILED one before them any more may go. */
async function unblock(trx: Tx, cifId: string, endSystem: string): Promise<void> {
  await sql`
    update delivery d set state = 'PENDING', next_attempt_at = now(), updated_at = now(),
      remarks = 'no longer blocked: the delivery it waited behind was redriven or skipped'
    where d.cif_id = ${cifId} and d.end_system = ${endSystem} and d.state = 'BLOCKED'
      and not exists (
        select 1 from delivery f
        where f.cif_id = d.cif_id and f.end_system = d.end_system and f.customer_version < d.customer_version and f.state = 'FAILED')`.execute(trx)
}

/**
 * Attempts whose syncer died mid-call (the lease ran out with no answer recorded) are written to the
 * transaction table as ERROR, saying so, and scheduled again without using the end system's retry budget.
 */
export async function recoverExpiredLeases(db: Db): Promise<number> {
  const { rows } = await sql<{ id: string }>`
    with expired as (
      select d.id from delivery d where d.state = 'IN_FLIGHT' and d.lease_until < now()
      for update skip locked),
    attempts as (
      insert into delivery_attempt (delivery_id, event_id, cif_id, event_type, customer_version, end_system,
        attempt_number, status, http_status, response_message, remarks, timeout_ms, duration_ms, started_at, finished_at)
      select d.id, d.event_id, d.cif_id, e.event_type, d.customer_version, d.end_system, d.attempts, 'ERROR', null,
        'no answer recorded',
        'the syncer stopped or stalled during this attempt (syncer down); the delivery is tried again',
        0, 0, d.updated_at, now()
      from delivery d join expired on expired.id = d.id join sync_event e on e.event_id = d.event_id
      on conflict (delivery_id, attempt_number) do nothing)
    update delivery d
    set state = 'RETRY_SCHEDULED', lease_until = null, next_attempt_at = now(), round_attempts = greatest(0, d.round_attempts - 1),
        remarks = 'the syncer stopped during attempt ' || d.attempts || ' (syncer down); retrying', updated_at = now()
    from expired where d.id = expired.id
    returning d.id`.execute(db)
  return rows.length
}

export interface OperatorRequest {
  deliveryId: string
  operator: string
  reason: string
}

async function lockForAction(trx: Tx, deliveryId: string, allowed: DeliveryState[]): Promise<DeliveryRow & { owner: string }> {
  const row = await trx
    .selectFrom('delivery')
    .innerJoin('sync_event', 'sync_event.event_id', 'delivery.event_id')
    .selectAll('delivery')
    .select('sync_event.owner_source_system as owner')
    .where('delivery.id', '=', deliveryId)
    .forUpdate('delivery')
    .executeTakeFirst()
  if (!row) throw new ProblemError(404, `No delivery has id ${deliveryId}.`)
  if (!allowed.includes(row.state)) {
    throw new ProblemError(409, `Delivery ${deliveryId} is ${row.state}; this action needs it ${allowed.join(' or ')}.`, { state: row.state })
  }
  return row
}

/** A FAILED delivery gets a fresh retry budget and goes again; who, when and why is recorded. */
export async function redrive(db: Db, request: OperatorRequest): Promise<DeliveryRow> {
  return db.transaction().execute(async (trx) => {
    const row = await lockForAction(trx, request.deliveryId, ['FAILED'])
    await trx.insertInto('operator_action').values({ delivery_id: row.id, action: 'REDRIVE', operator: request.operator, reason: request.reason, from_state: row.state }).execute()
    const updated = await trx
      .updateTable('delivery')
      .set({
        state: 'PENDING',
        round_attempts: 0,
        next_attempt_at: sql`now()`,
        completed_at: null,
        remarks: `redriven by ${request.operator}: ${request.reason}`,
        updated_at: sql`now()`
      })
      .where('id', '=', row.id)
      .returningAll()
      .executeTakeFirstOrThrow()
    await unblock(trx, row.cif_id, row.end_system)
    return updated
  })
}

/** A FAILED or BLOCKED delivery is given up on purpose; later versions may then go. */
export async function skip(db: Db, request: OperatorRequest): Promise<DeliveryRow> {
  return db.transaction().execute(async (trx) => {
    const row = await lockForAction(trx, request.deliveryId, ['FAILED', 'BLOCKED'])
    await trx.insertInto('operator_action').values({ delivery_id: row.id, action: 'SKIP', operator: request.operator, reason: request.reason, from_state: row.state }).execute()
    const updated = await trx
      .updateTable('delivery')
      .set({ state: 'SKIPPED', completed_at: sql`now()`, remarks: `skipped by ${request.operator}: ${request.reason}`, updated_at: sql`now()` })
      .where('id', '=', row.id)
      .returningAll()
      .executeTakeFirstOrThrow()
    await recordStatus(trx, row.owner, 'SKIPPED', statusOf(updated, 'SKIPPED'))
    await unblock(trx, row.cif_id, row.end_system)
    return updated
  })
}
