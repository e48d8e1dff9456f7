import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { syncerProblems } from '../../src/contracts/problems.ts'
import { statusKinds } from '../../src/contracts/sync-status-events.ts'
import { topics } from '../../src/contracts/topics.ts'
import { blockBehindFailures } from '../../src/syncer/delivery/delivery-store.ts'
import { type OperatorRequest, redrive } from '../../src/syncer/delivery/operator-actions.ts'
import { remark, remarkTemplates } from '../../src/syncer/delivery/states.ts'
import type { DeliveryRow } from '../../src/syncer/tables.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import {
  claim,
  claimOne,
  decisions,
  deliveryById,
  deliveryOf,
  newCifId,
  newEndSystem,
  OWNER,
  record,
  refusalOf,
  skipApproved,
  statusesOf,
  storeVersions
} from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

const waitsBehind = (failed: DeliveryRow) => remark('waitsBehind', { delivery: failed.id, version: failed.customer_version })
const operator = (deliveryId: string, reason = 'fixed the branch code in crm'): OperatorRequest => ({ deliveryId, operator: 'ops.tan', reason })
const actionsOn = (deliveryId: string) =>
  database.db
    .selectFrom('operator_action')
    .select(['action', 'operator', 'reason', 'from_state', 'approved_by'])
    .where('delivery_id', '=', deliveryId)
    .orderBy('id')
    .execute()

/** A customer with versions 1 to `versions` for crm and cards, whose create FAILED in crm. */
async function failedCreate(versions = 3): Promise<{ cifId: string; crm: string; cards: string; failed: DeliveryRow }> {
  const crm = newEndSystem('crm')
  const cards = newEndSystem('cards')
  const cifId = newCifId()
  await storeVersions(
    database.db,
    cifId,
    Array.from({ length: versions }, (_, i) => i + 1),
    [crm, cards]
  )
  await record(database.db, await claimOne(database.db, crm), decisions.fail())
  return { cifId, crm, cards, failed: await deliveryOf(database.db, cifId, crm, 1) }
}

describe('blocking behind a FAILED version', () => {
  it('blocks the later versions waiting for that end system, saying behind which delivery, and leaves other systems alone', async () => {
    const { cifId, crm, cards, failed } = await failedCreate()
    expect(failed.state).toBe('FAILED')
    for (const version of [2, 3]) {
      expect(await deliveryOf(database.db, cifId, crm, version)).toMatchObject({ state: 'BLOCKED', remarks: waitsBehind(failed) })
    }
    expect(waitsBehind(failed)).toBe(`waits behind delivery ${failed.id} (version 1), which FAILED; redrive or skip it`)
    for (const version of [1, 2, 3]) {
      expect(await deliveryOf(database.db, cifId, cards, version)).toMatchObject({ state: 'PENDING', remarks: null })
    }
    expect(await claim(database.db, crm)).toEqual([])
  })

  it('blocks a retry scheduled for a later version that was taken before the earlier one arrived', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    // Version 2 arrives first, is tried, and waits for a retry; then version 1 arrives and fails.
    await storeVersions(database.db, cifId, [2], [crm])
    await record(database.db, await claimOne(database.db, crm), decisions.retry(0))
    await storeVersions(database.db, cifId, [1], [crm])
    await record(database.db, await claimOne(database.db, crm), decisions.fail())
    const failed = await deliveryOf(database.db, cifId, crm, 1)
    expect(await deliveryOf(database.db, cifId, crm, 2)).toMatchObject({ state: 'BLOCKED', remarks: waitsBehind(failed) })
  })

  it('stores later versions that arrive after the failure already BLOCKED, with the same remark', async () => {
    const { cifId, crm, cards, failed } = await failedCreate(1)
    await storeVersions(database.db, cifId, [2], [crm, cards])
    expect(await deliveryOf(database.db, cifId, crm, 2)).toMatchObject({ state: 'BLOCKED', remarks: waitsBehind(failed) })
    expect((await deliveryOf(database.db, cifId, cards, 2)).state).toBe('PENDING')
  })

  it('does not block later versions of other customers', async () => {
    const { crm } = await failedCreate(1)
    const other = newCifId()
    await storeVersions(database.db, other, [1, 2], [crm])
    await record(database.db, await claimOne(database.db, crm), decisions.success())
    expect((await deliveryOf(database.db, other, crm, 2)).state).toBe('PENDING')
  })
})

describe('redriving a FAILED delivery', () => {
  it('sends it again with a fresh retry budget, unblocks the later versions, and records who did it and why', async () => {
    const { cifId, crm, failed } = await failedCreate()
    const statusesBefore = (await statusesOf(database.db, cifId)).feed.length

    const redriven = await redrive(asSyncer(database.db), operator(failed.id))
    expect(redriven).toMatchObject({
      id: failed.id,
      state: 'PENDING',
      attempts: 1,
      round_attempts: 0,
      completed_at: null,
      remarks: 'redriven by ops.tan: fixed the branch code in crm'
    })
    expect(await deliveryById(database.db, failed.id)).toEqual(redriven)
    for (const version of [2, 3]) {
      expect(await deliveryOf(database.db, cifId, crm, version)).toMatchObject({ state: 'PENDING', remarks: remarkTemplates.unblocked })
    }
    expect(await actionsOn(failed.id)).toEqual([
      { action: 'REDRIVE', operator: 'ops.tan', reason: 'fixed the branch code in crm', from_state: 'FAILED', approved_by: null }
    ])
    // A redrive is not itself a status: the owner hears of it when the next attempt is recorded.
    expect((await statusesOf(database.db, cifId)).feed).toHaveLength(statusesBefore)

    // It is due at once, as the first attempt of a new round; the later versions still wait for it.
    const again = await claim(database.db, crm)
    expect(again.map((d) => [d.id, d.attempts, d.round_attempts])).toEqual([[failed.id, 2, 1]])
  })

  it('blocks the later versions again when the redriven one fails again', async () => {
    const { cifId, crm, failed } = await failedCreate(2)
    await redrive(asSyncer(database.db), operator(failed.id))
    await record(database.db, await claimOne(database.db, crm), decisions.fail())
    expect(await deliveryOf(database.db, cifId, crm, 2)).toMatchObject({ state: 'BLOCKED', remarks: waitsBehind(failed) })
  })

  it('refuses a delivery that is not FAILED, saying which state it is in, and records nothing', async () => {
    const { cifId, cards } = await failedCreate(1)
    const pending = await deliveryOf(database.db, cifId, cards, 1)
    const refusal = await refusalOf(redrive(asSyncer(database.db), operator(pending.id)))
    expect(refusal.type).toBe(syncerProblems.deliveryStateConflict)
    expect(refusal.extra).toEqual({ state: 'PENDING' })
    expect(await deliveryById(database.db, pending.id)).toEqual(pending)
    expect(await actionsOn(pending.id)).toEqual([])
  })

  it('refuses a delivery that does not exist', async () => {
    const refusal = await refusalOf(redrive(asSyncer(database.db), operator('987654321')))
    expect(refusal.type).toBe(syncerProblems.deliveryNotFound)
    expect((await refusalOf(skipApproved(database.db, operator('987654321')))).type).toBe(syncerProblems.deliveryNotFound)
  })
})

describe('skipping a delivery', () => {
  it('gives up on a FAILED one, tells the owner SKIPPED, lets the later versions go, and records who did it and why', async () => {
    const { cifId, crm, failed } = await failedCreate(2)
    await skipApproved(database.db, operator(failed.id, 'customer closed in crm'))
    const skipped = await deliveryById(database.db, failed.id)
    expect(skipped).toMatchObject({
      id: failed.id,
      state: 'SKIPPED',
      completed_at: expect.any(Date),
      remarks: 'skipped by ops.tan, approved by ops.lim: customer closed in crm'
    })
    expect(await deliveryOf(database.db, cifId, crm, 2)).toMatchObject({ state: 'PENDING', remarks: remarkTemplates.unblocked })
    expect(await actionsOn(failed.id)).toEqual([
      { action: 'SKIP', operator: 'ops.tan', reason: 'customer closed in crm', from_state: 'FAILED', approved_by: 'ops.lim' }
    ])

    const { feed, outbox } = await statusesOf(database.db, cifId)
    expect(feed.map((s) => s.kind)).toEqual(['FAILED', 'SKIPPED'])
    expect(feed[1]!.data).toMatchObject({
      deliveryId: failed.id,
      endSystem: crm,
      state: 'SKIPPED',
      remarks: 'skipped by ops.tan, approved by ops.lim: customer closed in crm'
    })
    expect(outbox.map((m) => [m.topic, m.type, m.sourcesystem])).toEqual([
      [topics.syncStatus, statusKinds.FAILED.type, OWNER],
      [topics.syncStatus, statusKinds.SKIPPED.type, OWNER]
    ])
    expect(outbox[1]!.data).toEqual(feed[1]!.data)

    // A skipped version lets the next one go.
    expect((await claimOne(database.db, crm)).customer_version).toBe(2)
  })

  it('gives up on a BLOCKED one; versions after it stay BLOCKED while the FAILED one is still there', async () => {
    const { cifId, crm, failed } = await failedCreate(3)
    const blocked = await deliveryOf(database.db, cifId, crm, 2)
    await skipApproved(database.db, operator(blocked.id, 'superseded by version 3'))
    expect((await deliveryById(database.db, blocked.id)).state).toBe('SKIPPED')
    expect(await actionsOn(blocked.id)).toEqual([
      { action: 'SKIP', operator: 'ops.tan', reason: 'superseded by version 3', from_state: 'BLOCKED', approved_by: 'ops.lim' }
    ])
    expect((await statusesOf(database.db, cifId)).feed.map((s) => s.kind)).toEqual(['FAILED', 'SKIPPED'])
    expect(await deliveryOf(database.db, cifId, crm, 3)).toMatchObject({ state: 'BLOCKED', remarks: waitsBehind(failed) })
    expect((await deliveryById(database.db, failed.id)).state).toBe('FAILED')
  })

  it('refuses a delivery that is neither FAILED nor BLOCKED, and records nothing', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [crm])
    const delivery = await claimOne(database.db, crm)
    await record(database.db, delivery, decisions.success())
    const refusal = await refusalOf(skipApproved(database.db, operator(delivery.id)))
    expect(refusal.type).toBe(syncerProblems.deliveryStateConflict)
    expect(refusal.extra).toEqual({ state: 'SUCCESS' })
    expect((await deliveryById(database.db, delivery.id)).state).toBe('SUCCESS')
    expect(await actionsOn(delivery.id)).toEqual([])
    expect((await statusesOf(database.db, cifId)).feed.map((s) => s.kind)).toEqual(['DELIVERED', 'IN_SYNC'])
  })
})

describe('a redrive at the moment a later version is stored', () => {
  it('leaves nothing BLOCKED behind a delivery no longer FAILED, whichever transaction commits first', async () => {
    const [cifId, system] = [newCifId(), newEndSystem()]
    await storeVersions(database.db, cifId, [1], [system])
    await record(database.db, await claimOne(database.db, system), decisions.fail())
    const failed = await deliveryOf(database.db, cifId, system, 1)
    // Version 2's delivery as the intake has just inserted it: still PENDING, its transaction still open,
    // about to block it behind the FAILED version 1.
    await storeVersions(database.db, cifId, [2], [])
    const { rows } = await sql<{ id: string }>`
      insert into delivery (event_id, cif_id, end_system, operation, customer_version, state, event_time)
      select event_id, cif_id, ${system}, 'update', 2, 'PENDING', event_time from sync_event where cif_id = ${cifId} and customer_version = 2
      returning id`.execute(database.db)
    const later = rows[0]!.id
    let redriving: Promise<DeliveryRow> | undefined
    await asSyncer(database.db)
      .transaction()
      .execute(async (intake) => {
        await blockBehindFailures(intake, { deliveryIds: [later] })
        // The operator redrives version 1 before the intake commits.
        redriving = redrive(asSyncer(database.db), operator(failed.id))
        await new Promise((resolve) => setTimeout(resolve, 300))
      })
    expect((await redriving!).state).toBe('PENDING')
    expect(await deliveryById(database.db, later)).toMatchObject({ state: 'PENDING' })
  })
})
