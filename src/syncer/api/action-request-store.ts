import { sql } from 'kysely'
import { type FieldError, Refusal, syncerProblems } from '../../contracts/problems.ts'
import { decide, type RequestKind, requestKinds, type Verdict } from '../delivery/four-eyes.ts'
import { applyApproved, type OperatorRequest, requireActionable } from '../delivery/operator-actions.ts'
import { transitions } from '../delivery/states.ts'
import type { ActionRequestRow, SyncerDb, SyncerTx } from '../tables.ts'
import { deliveriesMatching } from './read-model.ts'
import type { ActionRequest, BulkRedrive, RequestFilters } from './schemas.ts'

/** Skips and bulk redrives as requests one person makes and another decides (four-eyes.ts): their SQL. */

interface NewRequest {
  operator: string
  reason: string
  /** How long the request waits for an answer (SYNCER_ACTION_REQUEST_EXPIRY_MS). */
  expiresInMs: number
}

async function insertRequest(
  trx: SyncerTx,
  kind: RequestKind,
  request: NewRequest,
  deliveryIds: readonly string[],
  filter: BulkRedrive['filter'] | undefined
): Promise<string> {
  const { id } = await trx
    .insertInto('action_request')
    .values({
      kind,
      requested_by: request.operator,
      reason: request.reason,
      filter: filter ? JSON.stringify(filter) : null,
      expires_at: sql<Date>`now() + make_interval(secs => ${request.expiresInMs / 1000})`
    })
    .returning('id')
    .executeTakeFirstOrThrow()
  await trx
    .insertInto('action_request_delivery')
    .values(deliveryIds.map((deliveryId) => ({ request_id: id, delivery_id: deliveryId })))
    .execute()
  return id
}

/** A skip of one FAILED or BLOCKED delivery, to be approved by someone else; refused at once if it could not apply. */
export async function requestSkip(db: SyncerDb, request: OperatorRequest & NewRequest): Promise<ActionRequest> {
  const id = await db.transaction().execute(async (trx) => {
    // Shared: the delivery stays as checked until the request is stored, and lanes are not held up.
    const row = await trx.selectFrom('delivery').select('state').where('id', '=', request.deliveryId).forShare().executeTakeFirst()
    requireActionable('skip', request.deliveryId, row)
    return insertRequest(trx, 'SKIP', request, [request.deliveryId], undefined)
  })
  return requestById(db, id)
}

/**
 * A redrive of many FAILED deliveries at once, to be approved by someone else: those listed in `deliveryIds`
 * (each must be FAILED now) and those the filter matches, at most `limit` in all. The selection is fixed now, so
 * the approver approves what the requester saw, never deliveries that failed later.
 */
export async function requestBulkRedrive(db: SyncerDb, request: BulkRedrive & NewRequest & { limit: number }): Promise<ActionRequest> {
  const { deliveryIds = [], filter, limit } = request
  if (!filter && deliveryIds.length === 0) throw Refusal.invalid([{ pointer: '/deliveryIds', detail: 'give deliveryIds, a filter, or both' }])
  const redrivable = transitions.redrive.from
  const id = await db.transaction().execute(async (trx) => {
    const listed = deliveryIds.length
      ? await trx.selectFrom('delivery').select(['id', 'state']).where('id', 'in', deliveryIds).forShare().execute()
      : []
    const stateOf = new Map(listed.map((row) => [row.id, row.state]))
    const errors: FieldError[] = []
    deliveryIds.forEach((deliveryId, i) => {
      const state = stateOf.get(deliveryId)
      if (!state) errors.push({ pointer: `/deliveryIds/${i}`, detail: `no delivery has id ${deliveryId}` })
      else if (!(redrivable as readonly string[]).includes(state)) {
        errors.push({ pointer: `/deliveryIds/${i}`, detail: `delivery ${deliveryId} is ${state}; a redrive needs it ${redrivable.join(' or ')}` })
      }
    })
    if (errors.length) throw Refusal.invalid(errors)

    const matched = filter
      ? await trx
          .selectFrom('delivery')
          .select('id')
          .where(deliveriesMatching(filter))
          .where('state', 'in', redrivable)
          .orderBy('id')
          // One more than allowed tells that the filter selects too many.
          .limit(limit + 1)
          .forShare()
          .execute()
      : []
    const selected = [...new Set([...deliveryIds, ...matched.map((row) => row.id)])].sort((a, b) => Number(BigInt(a) - BigInt(b)))
    if (selected.length > limit) {
      throw Refusal.invalid([
        {
          pointer: filter ? '/filter' : '/deliveryIds',
          detail: `selects more than ${limit} deliveries, the most one bulk redrive may (SYNCER_BULK_REDRIVE_LIMIT): narrow it`
        }
      ])
    }
    if (selected.length === 0) throw Refusal.invalid([{ pointer: '/filter', detail: `matches no ${redrivable.join(' or ')} delivery` }])
    return insertRequest(trx, 'BULK_REDRIVE', request, selected, filter)
  })
  return requestById(db, id)
}

/**
 * Approves or rejects a request as `decider`. The request row is locked first, so of two answers given at
 * once exactly one is taken: the other finds it decided. An approval applies the request's action, in the
 * same transaction, to those of its deliveries that still qualify.
 */
export async function decideRequest(
  db: SyncerDb,
  answer: { requestId: string; decider: string } & (
    | { verdict: Extract<Verdict, 'approve'> }
    | { verdict: Extract<Verdict, 'reject'>; reason: string }
  )
): Promise<ActionRequest> {
  const refusal = await db.transaction().execute(async (trx): Promise<Refusal | undefined> => {
    const row = await trx
      .selectFrom('action_request')
      .selectAll()
      .select(sql<Date>`now()`.as('now'))
      .where('id', '=', answer.requestId)
      .forUpdate()
      .executeTakeFirst()
    if (!row) return notFound(answer.requestId)
    const decision = decide({ state: row.state, requestedBy: row.requested_by, expiresAt: row.expires_at }, answer.decider, answer.verdict, row.now)
    if ('refused' in decision) {
      if (decision.refused === 'own-request') {
        return new Refusal(
          syncerProblems.fourEyesRequired,
          `Request ${row.id} is ${answer.decider}'s own: another operator with the role approver must ${answer.verdict} it.`
        )
      }
      const state = decision.refused === 'expired' ? await expire(trx, row.id) : decision.state
      return new Refusal(syncerProblems.actionRequestDecided, `Request ${row.id} is ${state}: it can no longer be answered.`, { state })
    }
    await trx
      .updateTable('action_request')
      .set({
        state: decision.state,
        decided_by: answer.decider,
        decided_at: sql<Date>`now()`,
        decision_reason: answer.verdict === 'reject' ? answer.reason : null
      })
      .where('id', '=', row.id)
      .execute()
    if (decision.state === 'APPROVED') await apply(trx, row, answer.decider)
    return undefined
  })
  if (refusal) throw refusal
  return requestById(db, answer.requestId)
}

async function apply(trx: SyncerTx, request: ActionRequestRow, approvedBy: string): Promise<void> {
  const deliveries = await trx.selectFrom('action_request_delivery').select('delivery_id').where('request_id', '=', request.id).execute()
  await applyApproved(
    trx,
    requestKinds[request.kind],
    deliveries.map((d) => d.delivery_id),
    { operator: request.requested_by, reason: request.reason, approval: { requestId: request.id, approvedBy } }
  )
}

async function expire(trx: SyncerTx, id: string): Promise<'EXPIRED'> {
  await trx.updateTable('action_request').set({ state: 'EXPIRED', decided_at: sql<Date>`expires_at` }).where('id', '=', id).execute()
  return 'EXPIRED'
}

/**
 * Marks every PENDING request whose time ran out EXPIRED, before requests are shown, so that a list by state
 * never shows one as PENDING that can no longer be approved.
 */
async function expireOverdue(db: SyncerDb): Promise<void> {
  await db
    .updateTable('action_request')
    .set({ state: 'EXPIRED', decided_at: sql<Date>`expires_at` })
    .where('state', '=', 'PENDING')
    .where('expires_at', '<=', sql<Date>`now()`)
    .execute()
}

const notFound = (id: string) => new Refusal(syncerProblems.actionRequestNotFound, `No action request has id ${id}.`)

function requestsWithDeliveries(db: SyncerDb) {
  return db
    .selectFrom('action_request')
    .selectAll()
    .select([
      sql<string[]>`array(select delivery_id::text from action_request_delivery d where d.request_id = action_request.id order by d.delivery_id)`.as(
        'delivery_ids'
      ),
      sql<string[]>`array(select delivery_id::text from operator_action o where o.request_id = action_request.id order by o.delivery_id)`.as(
        'applied_to'
      )
    ])
}

function toActionRequest(row: ActionRequestRow & { delivery_ids: string[]; applied_to: string[] }): ActionRequest {
  return {
    requestId: row.id,
    kind: row.kind,
    state: row.state,
    requestedBy: row.requested_by,
    reason: row.reason,
    filter: row.filter as ActionRequest['filter'],
    deliveryIds: row.delivery_ids,
    appliedTo: row.applied_to,
    requestedAt: row.requested_at.toISOString(),
    expiresAt: row.expires_at.toISOString(),
    decidedBy: row.decided_by,
    decidedAt: row.decided_at?.toISOString() ?? null,
    decisionReason: row.decision_reason
  }
}

export async function requestById(db: SyncerDb, id: string): Promise<ActionRequest> {
  await expireOverdue(db)
  const row = await requestsWithDeliveries(db).where('id', '=', id).executeTakeFirst()
  if (!row) throw notFound(id)
  return toActionRequest(row)
}

/** Requests by state, oldest first, paged by id. */
export async function findRequests(db: SyncerDb, q: RequestFilters): Promise<ActionRequest[]> {
  await expireOverdue(db)
  let query = requestsWithDeliveries(db)
    .orderBy('id')
    .limit(Number(q.limit ?? 100))
  if (q.state) query = query.where('state', '=', q.state)
  if (q.after) query = query.where('id', '>', q.after)
  return (await query.execute()).map(toActionRequest)
}
