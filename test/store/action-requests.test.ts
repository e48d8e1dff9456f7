import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { httpProblems, Refusal, syncerProblems } from '../../src/contracts/problems.ts'
import { decideRequest, findRequests, requestBulkRedrive, requestById, requestSkip } from '../../src/syncer/api/action-request-store.ts'
import { redrive } from '../../src/syncer/delivery/operator-actions.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { claimOne, decisions, deliveryById, deliveryOf, newCifId, newEndSystem, record, refusalOf, statusesOf, storeVersions } from './fixtures.ts'

// Skips and bulk redrives as requests: one person asks, another decides, against the real PostgreSQL.

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase(6)
})
afterAll(async () => database?.close())

const syncer = () => asSyncer(database.db)
const HOUR = 3_600_000
const MAKER = 'ops.tan'
const CHECKER = 'ops.lim'

/** `count` customers of their own whose create FAILED in one end system of its own; their delivery ids. */
async function failedDeliveries(count: number, endSystem = newEndSystem('crm')): Promise<{ endSystem: string; ids: string[]; cifIds: string[] }> {
  const cifIds = Array.from({ length: count }, () => newCifId())
  for (const cifId of cifIds) {
    await storeVersions(database.db, cifId, [1], [endSystem])
    await record(database.db, await claimOne(database.db, endSystem), decisions.fail())
  }
  const ids = await Promise.all(cifIds.map(async (cifId) => (await deliveryOf(database.db, cifId, endSystem, 1)).id))
  return { endSystem, ids, cifIds }
}

const actionsOf = (requestId: string) =>
  database.db
    .selectFrom('operator_action')
    .select(['delivery_id', 'action', 'operator', 'approved_by', 'reason', 'from_state'])
    .where('request_id', '=', requestId)
    .orderBy('delivery_id')
    .execute()

const askSkip = (deliveryId: string, expiresInMs = HOUR, operator = MAKER) =>
  requestSkip(syncer(), { deliveryId, operator, reason: 'customer closed in crm', expiresInMs })
const approve = (requestId: string, decider = CHECKER) => decideRequest(syncer(), { requestId, decider, verdict: 'approve' })

describe('a skip request', () => {
  it('is stored PENDING with who asked, why and until when, and changes nothing until approved', async () => {
    const { ids } = await failedDeliveries(1)
    const before = await deliveryById(database.db, ids[0]!)
    const asked = await askSkip(ids[0]!)
    expect(asked).toMatchObject({
      kind: 'SKIP',
      state: 'PENDING',
      requestedBy: MAKER,
      reason: 'customer closed in crm',
      filter: null,
      deliveryIds: ids,
      appliedTo: [],
      decidedBy: null,
      decidedAt: null,
      decisionReason: null
    })
    const waits = new Date(asked.expiresAt).getTime() - new Date(asked.requestedAt).getTime()
    expect(waits).toBe(HOUR)
    expect(await deliveryById(database.db, ids[0]!)).toEqual(before)
    expect(await actionsOf(asked.requestId)).toEqual([])
    expect(await requestById(syncer(), asked.requestId)).toEqual(asked)
  })

  it('is refused at once for a delivery a skip cannot apply to, or none, and nothing is stored', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [crm])
    const pending = await deliveryOf(database.db, cifId, crm, 1)
    const refused = await refusalOf(askSkip(pending.id))
    expect(refused.type).toBe(syncerProblems.deliveryStateConflict)
    expect(refused.extra).toEqual({ state: 'PENDING' })
    expect((await refusalOf(askSkip('987654321'))).type).toBe(syncerProblems.deliveryNotFound)
    const stored = await database.db.selectFrom('action_request_delivery').select('delivery_id').where('delivery_id', '=', pending.id).execute()
    expect(stored).toEqual([])
  })

  it('is applied once another person approves it: SKIPPED, both names recorded, the owner told', async () => {
    const { ids, cifIds } = await failedDeliveries(1)
    const asked = await askSkip(ids[0]!)
    const approved = await approve(asked.requestId)
    expect(approved).toMatchObject({ state: 'APPROVED', decidedBy: CHECKER, decidedAt: expect.any(String), appliedTo: ids })
    expect(await deliveryById(database.db, ids[0]!)).toMatchObject({
      state: 'SKIPPED',
      remarks: `skipped by ${MAKER}, approved by ${CHECKER}: customer closed in crm`
    })
    expect(await actionsOf(asked.requestId)).toEqual([
      { delivery_id: ids[0], action: 'SKIP', operator: MAKER, approved_by: CHECKER, reason: 'customer closed in crm', from_state: 'FAILED' }
    ])
    expect((await statusesOf(database.db, cifIds[0]!)).feed.map((s) => s.kind)).toEqual(['FAILED', 'SKIPPED'])
  })

  it('cannot be approved or rejected by the one who asked, and stays PENDING', async () => {
    const { ids } = await failedDeliveries(1)
    const asked = await askSkip(ids[0]!)
    expect((await refusalOf(approve(asked.requestId, MAKER))).type).toBe(syncerProblems.fourEyesRequired)
    const reject = decideRequest(syncer(), { requestId: asked.requestId, decider: MAKER, verdict: 'reject', reason: 'changed my mind' })
    expect((await refusalOf(reject)).type).toBe(syncerProblems.fourEyesRequired)
    expect((await requestById(syncer(), asked.requestId)).state).toBe('PENDING')
    expect((await deliveryById(database.db, ids[0]!)).state).toBe('FAILED')
    // The database holds the rule too, whatever code writes.
    await expect(
      database.db
        .updateTable('action_request')
        .set({ state: 'APPROVED', decided_by: MAKER, decided_at: new Date() })
        .where('id', '=', asked.requestId)
        .execute()
    ).rejects.toThrow(/check constraint/)
  })

  it('is rejected with a reason, does nothing, and can then no longer be approved', async () => {
    const { ids } = await failedDeliveries(1)
    const asked = await askSkip(ids[0]!)
    const rejected = await decideRequest(syncer(), { requestId: asked.requestId, decider: CHECKER, verdict: 'reject', reason: 'crm will fix it' })
    expect(rejected).toMatchObject({ state: 'REJECTED', decidedBy: CHECKER, decisionReason: 'crm will fix it', appliedTo: [] })
    expect((await deliveryById(database.db, ids[0]!)).state).toBe('FAILED')
    const late = await refusalOf(approve(asked.requestId, 'ops.ng'))
    expect(late.type).toBe(syncerProblems.actionRequestDecided)
    expect(late.extra).toEqual({ state: 'REJECTED' })
    expect(await actionsOf(asked.requestId)).toEqual([])
  })

  it('does not exist for an unknown id', async () => {
    expect((await refusalOf(approve('987654321'))).type).toBe(syncerProblems.actionRequestNotFound)
    expect((await refusalOf(requestById(syncer(), '987654321'))).type).toBe(syncerProblems.actionRequestNotFound)
  })
})

describe('approvals given at once', () => {
  it('take exactly one: the others find the request APPROVED, and the action is applied once', async () => {
    // Several requests, each approved by three people at the same moment.
    const { ids } = await failedDeliveries(4)
    const requests = await Promise.all(ids.map((id) => askSkip(id)))
    for (const asked of requests) {
      const answers = await Promise.allSettled(['ops.lim', 'ops.ng', 'ops.kaur'].map((checker) => approve(asked.requestId, checker)))
      const won = answers.filter((a) => a.status === 'fulfilled')
      const lost = answers.filter((a): a is PromiseRejectedResult => a.status === 'rejected')
      expect(won).toHaveLength(1)
      for (const { reason } of lost) {
        expect(reason).toBeInstanceOf(Refusal)
        expect((reason as Refusal).type).toBe(syncerProblems.actionRequestDecided)
        expect((reason as Refusal).extra).toEqual({ state: 'APPROVED' })
      }
      const actions = await actionsOf(asked.requestId)
      expect(actions).toHaveLength(1)
      expect(actions[0]!.approved_by).toBe((won[0] as PromiseFulfilledResult<{ decidedBy: string }>).value.decidedBy)
    }
    const skipped = await database.db.selectFrom('delivery').select('state').where('id', 'in', ids).execute()
    expect(skipped.map((d) => d.state)).toEqual(ids.map(() => 'SKIPPED'))
  })

  it('of an approval and a rejection, also take exactly one', async () => {
    const { ids } = await failedDeliveries(1)
    const asked = await askSkip(ids[0]!)
    const answers = await Promise.allSettled([
      approve(asked.requestId),
      decideRequest(syncer(), { requestId: asked.requestId, decider: 'ops.ng', verdict: 'reject', reason: 'not this one' })
    ])
    expect(answers.filter((a) => a.status === 'fulfilled')).toHaveLength(1)
    const { state } = await requestById(syncer(), asked.requestId)
    expect((await deliveryById(database.db, ids[0]!)).state).toBe(state === 'APPROVED' ? 'SKIPPED' : 'FAILED')
  })
})

describe('expiry', () => {
  it('refuses to approve a request whose time ran out, and shows it EXPIRED, nothing done', async () => {
    const { ids } = await failedDeliveries(2)
    const soon = await askSkip(ids[0]!, 1)
    const later = await askSkip(ids[1]!)
    await sql`select pg_sleep(0.05)`.execute(database.db)
    const refused = await refusalOf(approve(soon.requestId))
    expect(refused.type).toBe(syncerProblems.actionRequestDecided)
    expect(refused.extra).toEqual({ state: 'EXPIRED' })
    const expired = await requestById(syncer(), soon.requestId)
    expect(expired).toMatchObject({ state: 'EXPIRED', decidedBy: null, decidedAt: soon.expiresAt, appliedTo: [] })
    expect((await deliveryById(database.db, ids[0]!)).state).toBe('FAILED')
    expect((await requestById(syncer(), later.requestId)).state).toBe('PENDING')
  })

  it('marks requests EXPIRED before they are listed, so that PENDING lists only what can still be approved', async () => {
    const { ids } = await failedDeliveries(1)
    const soon = await askSkip(ids[0]!, 1)
    await sql`select pg_sleep(0.05)`.execute(database.db)
    const pending = await findRequests(syncer(), { state: 'PENDING', limit: '500' })
    expect(pending.map((r) => r.requestId)).not.toContain(soon.requestId)
    expect(pending.every((r) => r.state === 'PENDING')).toBe(true)
    const expired = await findRequests(syncer(), { state: 'EXPIRED', limit: '500' })
    expect(expired.map((r) => r.requestId)).toContain(soon.requestId)
  })
})

describe('a bulk redrive request', () => {
  const reason = 'crm is back after the outage'
  const askBulk = (selection: { deliveryIds?: string[]; filter?: { endSystem?: string; cifId?: string } }, limit = 10) =>
    requestBulkRedrive(syncer(), { ...selection, reason, operator: MAKER, expiresInMs: HOUR, limit })

  it('selects the FAILED deliveries its filter matches, at request time, and the ones it lists', async () => {
    const { endSystem, ids } = await failedDeliveries(3)
    const other = await failedDeliveries(1)
    const asked = await askBulk({ filter: { endSystem }, deliveryIds: other.ids })
    expect(asked).toMatchObject({ kind: 'BULK_REDRIVE', state: 'PENDING', filter: { endSystem }, deliveryIds: [...ids, ...other.ids] })
    // A delivery that fails after the request is not in it.
    const late = await failedDeliveries(1, endSystem)
    expect((await requestById(syncer(), asked.requestId)).deliveryIds).not.toContain(late.ids[0])
  })

  it('applies, once approved, to those that are still FAILED, one operator action each with both names', async () => {
    const { endSystem, ids } = await failedDeliveries(3)
    const asked = await askBulk({ filter: { endSystem } })
    // One is redriven by hand meanwhile: the approval leaves it alone.
    await redrive(syncer(), { deliveryId: ids[1]!, operator: 'ops.ng', reason: 'that one could not wait' })
    const approved = await approve(asked.requestId)
    expect(approved).toMatchObject({ state: 'APPROVED', deliveryIds: ids, appliedTo: [ids[0], ids[2]] })
    expect(await actionsOf(asked.requestId)).toEqual(
      [ids[0], ids[2]].map((id) => ({ delivery_id: id, action: 'REDRIVE', operator: MAKER, approved_by: CHECKER, reason, from_state: 'FAILED' }))
    )
    for (const id of [ids[0]!, ids[2]!]) {
      expect(await deliveryById(database.db, id)).toMatchObject({
        state: 'PENDING',
        round_attempts: 0,
        remarks: `redriven by ${MAKER}, approved by ${CHECKER}: ${reason}`
      })
    }
    expect((await deliveryById(database.db, ids[1]!)).remarks).toBe('redriven by ops.ng: that one could not wait')
  })

  it('is refused with a 400 naming the field: too many, a listed delivery that is not FAILED or not there, nothing selected', async () => {
    const { endSystem, ids } = await failedDeliveries(3)
    const tooMany = await refusalOf(askBulk({ filter: { endSystem } }, 2))
    expect(tooMany.type).toBe(httpProblems.validationFailed)
    expect(tooMany.extra.errors).toEqual([{ pointer: '/filter', detail: expect.stringContaining('more than 2 deliveries') }])
    expect((await refusalOf(askBulk({ deliveryIds: ids }, 2))).extra.errors).toEqual([{ pointer: '/deliveryIds', detail: expect.any(String) }])
    // Exactly the limit is allowed.
    expect((await askBulk({ filter: { endSystem } }, 3)).deliveryIds).toEqual(ids)

    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [crm])
    const pending = await deliveryOf(database.db, cifId, crm, 1)
    const wrong = await refusalOf(askBulk({ deliveryIds: [ids[0]!, pending.id, '987654321'] }))
    expect(wrong.extra.errors).toEqual([
      { pointer: '/deliveryIds/1', detail: `delivery ${pending.id} is PENDING; a redrive needs it FAILED` },
      { pointer: '/deliveryIds/2', detail: 'no delivery has id 987654321' }
    ])
    expect((await refusalOf(askBulk({ filter: { endSystem: crm } }))).extra.errors).toEqual([
      { pointer: '/filter', detail: 'matches no FAILED delivery' }
    ])
    expect((await refusalOf(askBulk({}))).extra.errors).toEqual([{ pointer: '/deliveryIds', detail: 'give deliveryIds, a filter, or both' }])
  })
})
