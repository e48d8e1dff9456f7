import { sql } from 'kysely'
import { Refusal, syncerProblems } from '../../contracts/problems.ts'
import { recordStatuses } from '../status/sync-status.ts'
import type { DeliveryRow, SyncerDb, SyncerTx } from '../tables.ts'
import { deliveryStatus, unblock } from './delivery-store.ts'
import { type DeliveryState, operatorActions, remark, transitions } from './states.ts'

export interface OperatorRequest {
  deliveryId: string
  operator: string
  reason: string
}

/** Locks the delivery and checks that the action applies to its state; records who did it, when and why. */
async function startAction(trx: SyncerTx, action: keyof typeof operatorActions, request: OperatorRequest): Promise<DeliveryRow & { owner: string }> {
  const allowed: readonly DeliveryState[] = transitions[action].from
  const row = await trx
    .selectFrom('delivery')
    .innerJoin('sync_event', 'sync_event.event_id', 'delivery.event_id')
    .selectAll('delivery')
    .select('sync_event.owner_source_system as owner')
    .where('delivery.id', '=', request.deliveryId)
    .forUpdate('delivery')
    .executeTakeFirst()
  if (!row) throw new Refusal(syncerProblems.deliveryNotFound, `No delivery has id ${request.deliveryId}.`)
  if (!allowed.includes(row.state)) {
    throw new Refusal(
      syncerProblems.deliveryStateConflict,
      `Delivery ${request.deliveryId} is ${row.state}; this action needs it ${allowed.join(' or ')}.`,
      {
        state: row.state
      }
    )
  }
  await trx
    .insertInto('operator_action')
    .values({ delivery_id: row.id, action: operatorActions[action], operator: request.operator, reason: request.reason, from_state: row.state })
    .execute()
  return row
}

/** A FAILED delivery gets a fresh retry budget and goes again; who, when and why is recorded. */
export async function redrive(db: SyncerDb, request: OperatorRequest): Promise<DeliveryRow> {
  return db.transaction().execute(async (trx) => {
    const row = await startAction(trx, 'redrive', request)
    const updated = await trx
      .updateTable('delivery')
      .set({
        state: transitions.redrive.to,
        round_attempts: 0,
        next_attempt_at: sql`now()`,
        completed_at: null,
        remarks: remark('redriven', { operator: request.operator, reason: request.reason }),
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
export async function skip(db: SyncerDb, request: OperatorRequest): Promise<DeliveryRow> {
  return db.transaction().execute(async (trx) => {
    const row = await startAction(trx, 'skip', request)
    const updated = await trx
      .updateTable('delivery')
      .set({
        state: transitions.skip.to,
        completed_at: sql`now()`,
        remarks: remark('skipped', { operator: request.operator, reason: request.reason }),
        updated_at: sql`now()`
      })
      .where('id', '=', row.id)
      .returningAll()
      .executeTakeFirstOrThrow()
    await recordStatuses(trx, [deliveryStatus('SKIPPED', row.owner, updated)])
    await unblock(trx, row.cif_id, row.end_system)
    return updated
  })
}
