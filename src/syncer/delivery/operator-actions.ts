import { sql } from 'kysely'
import { Refusal, syncerProblems } from '../../contracts/problems.ts'
import { recordStatuses } from '../status/sync-status.ts'
import type { DeliveryRow, SyncerDb, SyncerTx } from '../tables.ts'
import { deliveryStatus, unblock } from './delivery-store.ts'
import { type DeliveryState, deliveryActions, remark, transitions } from './states.ts'

export type ManualAction = keyof typeof deliveryActions

export interface OperatorRequest {
  deliveryId: string
  operator: string
  reason: string
}

/** Who asked for an action and why; for an approved request, also which request and who approved it. */
export interface Actor {
  operator: string
  reason: string
  approval?: { requestId: string; approvedBy: string }
}

type LockedDelivery = DeliveryRow & { owner: string }

/** The deliveries with these ids, locked, in id order (so that two transactions locking several never deadlock). */
function lockDeliveries(trx: SyncerTx, ids: readonly string[]): Promise<LockedDelivery[]> {
  return trx
    .selectFrom('delivery')
    .innerJoin('sync_event', 'sync_event.event_id', 'delivery.event_id')
    .selectAll('delivery')
    .select('sync_event.owner_source_system as owner')
    .where('delivery.id', 'in', ids)
    .orderBy('delivery.id')
    .forUpdate('delivery')
    .execute()
}

const appliesTo = (action: ManualAction, state: DeliveryState): boolean => (transitions[action].from as readonly DeliveryState[]).includes(state)

/** Refuses a delivery that does not exist or is not in a state `action` applies to, saying which state it is in. */
export function requireActionable<T extends { state: DeliveryState }>(action: ManualAction, deliveryId: string, row: T | undefined): T {
  if (!row) throw new Refusal(syncerProblems.deliveryNotFound, `No delivery has id ${deliveryId}.`)
  if (!appliesTo(action, row.state)) {
    throw new Refusal(
      syncerProblems.deliveryStateConflict,
      `Delivery ${deliveryId} is ${row.state}; this action needs it ${transitions[action].from.join(' or ')}.`,
      { state: row.state }
    )
  }
  return row
}

/** The remark a manual move writes: who, who approved (a skip is always approved), why. */
function actionRemark(action: ManualAction, { operator, reason, approval }: Actor): string {
  if (!approval) return remark('redriven', { operator, reason })
  return remark(action === 'skip' ? 'skipped' : 'redrivenOnApproval', { operator, reason, approver: approval.approvedBy })
}

/** Moves one locked delivery, already checked, and records who did it, when and why. */
async function move(trx: SyncerTx, action: ManualAction, row: LockedDelivery, actor: Actor): Promise<DeliveryRow> {
  await trx
    .insertInto('operator_action')
    .values({
      delivery_id: row.id,
      action: deliveryActions[action],
      operator: actor.operator,
      reason: actor.reason,
      from_state: row.state,
      request_id: actor.approval?.requestId ?? null,
      approved_by: actor.approval?.approvedBy ?? null
    })
    .execute()
  const changes =
    action === 'redrive'
      ? { state: transitions.redrive.to, round_attempts: 0, next_attempt_at: sql<Date>`now()`, completed_at: null }
      : { state: transitions.skip.to, completed_at: sql<Date>`now()` }
  const updated = await trx
    .updateTable('delivery')
    .set({ ...changes, remarks: actionRemark(action, actor), updated_at: sql`now()` })
    .where('id', '=', row.id)
    .returningAll()
    .executeTakeFirstOrThrow()
  // A redrive is not itself a status: the owner hears of it when the next attempt is recorded.
  if (action === 'skip') await recordStatuses(trx, [deliveryStatus('SKIPPED', row.owner, updated)])
  await unblock(trx, row.cif_id, row.end_system)
  return updated
}

/**
 * A FAILED delivery gets a fresh retry budget and goes again; who, when and why is recorded. One person may do
 * this alone (delivery/four-eyes.ts says why).
 */
export async function redrive(db: SyncerDb, request: OperatorRequest): Promise<DeliveryRow> {
  return db.transaction().execute(async (trx) => {
    const [row] = await lockDeliveries(trx, [request.deliveryId])
    return move(trx, 'redrive', requireActionable('redrive', request.deliveryId, row), request)
  })
}

/**
 * An approved request's action, on those of `deliveryIds` that still qualify (a redrive needs FAILED, a skip
 * FAILED or BLOCKED); the others are left as they are. One operator action per delivery moved, naming the
 * requester and the approver. Returns the ids of the deliveries moved.
 */
export async function applyApproved(
  trx: SyncerTx,
  action: ManualAction,
  deliveryIds: readonly string[],
  actor: Actor & Required<Pick<Actor, 'approval'>>
): Promise<string[]> {
  const moved: string[] = []
  if (deliveryIds.length === 0) return moved
  for (const row of await lockDeliveries(trx, deliveryIds)) {
    if (!appliesTo(action, row.state)) continue
    await move(trx, action, row, actor)
    moved.push(row.id)
  }
  return moved
}
