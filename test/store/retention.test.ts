import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { purgeIdempotencyKeys } from '../../src/cif/idempotency.ts'
import { topics } from '../../src/contracts/topics.ts'
import { purgeSentMessages } from '../../src/outbox/relay.ts'
import { inBatches } from '../../src/platform/periodic.ts'
import type { DeliveryState } from '../../src/syncer/delivery/states.ts'
import { keepUnreadable } from '../../src/syncer/intake/event-store.ts'
import { applyRetention, purgeEventPayloads, purgeUnreadableMessages } from '../../src/syncer/retention.ts'
import { asCif, asOutbox, asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { claimOne, decisions, deliveryOf, kafkaMessage, newCifId, newEndSystem, record, skipApproved, storeVersions } from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

const db = () => database.db

/** A customer of its own whose latest delivery, to an end system of its own, is in `state`; its CIF ID. */
async function eventWithDeliveryIn(state: DeliveryState): Promise<string> {
  const cifId = newCifId()
  const system = newEndSystem()
  await storeVersions(db(), cifId, state === 'BLOCKED' ? [1, 2] : [1], [system])
  if (state === 'IN_FLIGHT') await claimOne(db(), system)
  if (state === 'RETRY_SCHEDULED') await record(db(), await claimOne(db(), system), decisions.retry(60_000))
  if (state === 'SUCCESS') await record(db(), await claimOne(db(), system), decisions.success('X-1'))
  if (state === 'FAILED' || state === 'BLOCKED' || state === 'SKIPPED') await record(db(), await claimOne(db(), system), decisions.fail())
  if (state === 'SKIPPED') {
    const failed = await deliveryOf(db(), cifId, system, 1)
    await skipApproved(db(), { deliveryId: failed.id, operator: 'ops.tan', reason: 'not wanted' })
  }
  const delivery = await deliveryOf(db(), cifId, system, state === 'BLOCKED' ? 2 : 1)
  expect(delivery.state).toBe(state)
  await supersede(cifId, state === 'BLOCKED' ? 3 : 2)
  return cifId
}

/**
 * A later version of the customer, delivered nowhere: the customer's latest, whose payload retention keeps
 * (reconciliation and backfill need it), so the versions before it are the ones these tests watch.
 */
async function supersede(cifId: string, version: number): Promise<void> {
  await storeVersions(db(), cifId, [version], [])
}

/** Makes a customer's events, and its deliveries' completions, `hours` old. */
async function age(cifId: string, hours: number): Promise<void> {
  await sql`update sync_event set received_at = now() - make_interval(hours => ${hours}) where cif_id = ${cifId}`.execute(db())
  await sql`update delivery set completed_at = now() - make_interval(hours => ${hours}) where cif_id = ${cifId} and completed_at is not null`.execute(
    db()
  )
}

async function payloadKept(cifId: string): Promise<boolean[]> {
  const rows = await db().selectFrom('sync_event').select('event').where('cif_id', '=', cifId).orderBy('customer_version').execute()
  return rows.map((row) => row.event !== null)
}

/** Empties what every earlier test left purgeable, so that a test counts only its own rows. */
async function drain(): Promise<void> {
  await applyRetention(asSyncer(db()), 0, 10_000)
}

describe("the syncer's retention", () => {
  it("clears an event's payload once every delivery of it is settled and the retention has passed, never before", async () => {
    const byState = Object.fromEntries(
      await Promise.all(
        (['PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'SUCCESS', 'FAILED', 'BLOCKED', 'SKIPPED'] as const).map(
          async (state) => [state, await eventWithDeliveryIn(state)] as const
        )
      )
    ) as Record<DeliveryState, string>
    // One event, two end systems: one holds it, the other FAILED and may be redriven.
    const mixed = newCifId()
    const [done, failing] = [newEndSystem('core'), newEndSystem('cards')]
    await storeVersions(db(), mixed, [1], [done, failing])
    await record(db(), await claimOne(db(), done), decisions.success('C-1'))
    await record(db(), await claimOne(db(), failing), decisions.fail())
    await supersede(mixed, 2)
    const recent = await eventWithDeliveryIn('SUCCESS')
    for (const cifId of [...Object.values(byState), mixed]) await age(cifId, 3)
    await age(recent, 1)

    expect(await applyRetention(asSyncer(db()), 2, 1000)).toEqual({ eventPayloads: 2, unreadableMessages: 0 })

    expect(await payloadKept(byState.SUCCESS)).toEqual([false, true])
    expect(await payloadKept(byState.SKIPPED)).toEqual([false, true])
    for (const state of ['PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'FAILED'] as const)
      expect(await payloadKept(byState[state]), state).toEqual([true, true])
    expect(await payloadKept(byState.BLOCKED), 'the FAILED version 1 and the BLOCKED version 2').toEqual([true, true, true])
    expect(await payloadKept(mixed)).toEqual([true, true])
    expect(await payloadKept(recent), 'settled within the retention').toEqual([true, true])
    // The facts stay: the event rows, their deliveries.
    expect(await db().selectFrom('delivery').select('id').where('cif_id', '=', byState.SUCCESS).execute()).toHaveLength(1)
  })

  it('clears payloads in batches of at most the batch size', async () => {
    await drain()
    const cifIds: string[] = []
    for (let i = 0; i < 5; i++) cifIds.push(await eventWithDeliveryIn('SUCCESS'))
    for (const cifId of cifIds) await age(cifId, 1)
    const syncer = asSyncer(db())
    expect([
      await purgeEventPayloads(syncer, 0, 2),
      await purgeEventPayloads(syncer, 0, 2),
      await purgeEventPayloads(syncer, 0, 2),
      await purgeEventPayloads(syncer, 0, 2)
    ]).toEqual([2, 2, 1, 0])
    for (const cifId of cifIds) expect(await payloadKept(cifId)).toEqual([false, true])
  })

  it("keeps each customer's latest payload, however long settled: what the CIF published last", async () => {
    await drain()
    const cifId = newCifId()
    const system = newEndSystem()
    await storeVersions(db(), cifId, [1], [system])
    await record(db(), await claimOne(db(), system), decisions.success('X-1'))
    await age(cifId, 5)
    expect(await applyRetention(asSyncer(db()), 0, 1000)).toEqual({ eventPayloads: 0, unreadableMessages: 0 })
    expect(await payloadKept(cifId)).toEqual([true])
  })

  it("clears an unreadable message's content past the retention, and keeps why it was unreadable", async () => {
    await drain()
    const [old, fresh] = [newCifId(), newCifId()]
    await keepUnreadable(asSyncer(db()), [
      { message: kafkaMessage(old, '{"data":{"firstName":"Ada"}}'), reason: 'not signed by the CIF service' },
      { message: kafkaMessage(fresh, '{"data":{"firstName":"Grace"}}'), reason: 'not signed by the CIF service' }
    ])
    await sql`update unreadable_message set received_at = now() - interval '3 hours' where message_key = ${old}`.execute(db())
    expect(await purgeUnreadableMessages(asSyncer(db()), 2, 10)).toBe(1)
    const rows = await db().selectFrom('unreadable_message').select(['message_key', 'message_value', 'reason']).orderBy('id').execute()
    expect(rows.filter((row) => row.message_key === old || row.message_key === fresh)).toEqual([
      { message_key: old, message_value: null, reason: 'not signed by the CIF service' },
      { message_key: fresh, message_value: '{"data":{"firstName":"Grace"}}', reason: 'not signed by the CIF service' }
    ])
  })
})

describe("the outbox's and the idempotency cache's retention", () => {
  it('deletes sent outbox messages past the retention in batches, never a pending one', async () => {
    const outbox = asOutbox(db())
    const row = (status: 'PENDING' | 'SENT', hoursAgo: number) => ({
      event_id: randomUUID(),
      topic: topics.syncStatus,
      message_key: 'retention-test',
      payload: '{}',
      status,
      created_at: sql<Date>`now() - make_interval(hours => ${hoursAgo})`
    })
    await outbox
      .insertInto('outbox_message')
      .values([row('SENT', 3), row('SENT', 3), row('SENT', 3), row('SENT', 0), row('PENDING', 3)].map(({ status: _, ...values }) => values))
      .execute()
    // Marked sent as the relay marks them, then dated.
    await sql`
      update outbox_message set status = 'SENT', sent_at = created_at
      where message_key = 'retention-test' and id not in (select max(id) from outbox_message where message_key = 'retention-test')`.execute(db())
    expect([await purgeSentMessages(outbox, 2, 2), await purgeSentMessages(outbox, 2, 2), await purgeSentMessages(outbox, 2, 2)]).toEqual([2, 1, 0])
    const left = await db().selectFrom('outbox_message').select(['status']).where('message_key', '=', 'retention-test').orderBy('id').execute()
    expect(left.map((r) => r.status)).toEqual(['SENT', 'PENDING'])
  })

  it('deletes idempotency keys past their window in batches, and keeps the others', async () => {
    const cif = asCif(db())
    const key = (name: string, hoursAgo: number) => ({
      source_system: 'branch-portal',
      key: name,
      request_hash: 'h',
      response_status: 201,
      response_body: JSON.stringify({ firstName: 'Ada' }),
      response_headers: '{}',
      created_at: sql<Date>`now() - make_interval(hours => ${hoursAgo})`
    })
    await cif
      .insertInto('idempotency_key')
      .values([key('old-1', 25), key('old-2', 25), key('old-3', 25), key('fresh', 23)])
      .execute()
    expect(await inBatches(() => purgeIdempotencyKeys(cif, 24, 2), 2)).toBe(3)
    expect(await purgeIdempotencyKeys(cif, 24, 2)).toBe(0)
    expect((await cif.selectFrom('idempotency_key').select('key').execute()).map((r) => r.key)).toEqual(['fresh'])
  })
})
