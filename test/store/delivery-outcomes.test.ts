import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { statusKinds } from '../../src/contracts/sync-status-events.ts'
import { topics } from '../../src/contracts/topics.ts'
import { recordAttempts, recoverExpiredLeases } from '../../src/syncer/delivery/delivery-store.ts'
import { sequenceStatusUpdates } from '../../src/syncer/status/sync-status.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import {
  attemptsOf as attemptsOfIn,
  claim,
  claimOne,
  decisions,
  deliveryById,
  expireLease,
  finished,
  newCifId,
  newEndSystem,
  OWNER,
  record,
  statementsOf,
  statusesOf,
  storeVersions
} from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

const attemptsOf = (deliveryId: string) => attemptsOfIn(database.db, deliveryId)

describe('recording a batch of attempts', () => {
  it('takes the same few statements whatever the batch holds: successes with record ids, events now in sync, retries, failures', async () => {
    const crm = newEndSystem('crm')
    const customers = Array.from({ length: 12 }, () => newCifId())
    for (const cifId of customers) await storeVersions(database.db, cifId, [1], [crm])
    const claimed = await claim(database.db, crm, 12)
    const outcomes = claimed.map((delivery, i) =>
      finished(delivery, i < 6 ? decisions.success(`crm-${i}`) : i < 9 ? decisions.retry(60_000) : decisions.fail())
    )
    const counted = statementsOf(database.db)
    expect(await recordAttempts(asSyncer(counted.db), outcomes)).toEqual(claimed.map(() => true))
    // The attempts, the deliveries with their record ids, the failures' followers blocked, the events' locks,
    // their deliveries, and the statuses: one row each, the feed entry and the status message at once.
    expect(counted.statements).toHaveLength(6)

    const xrefs = await database.db
      .selectFrom('customer_xref')
      .select(['cif_id', 'external_id'])
      .where('end_system', '=', crm)
      .orderBy('external_id')
      .execute()
    expect(xrefs).toEqual(claimed.slice(0, 6).map((d, i) => ({ cif_id: d.cif_id, external_id: `crm-${i}` })))
    const told = await Promise.all(claimed.map((d) => statusesOf(database.db, d.cif_id)))
    const expected = claimed.map((_, i) => (i < 6 ? ['DELIVERED', 'IN_SYNC'] : i < 9 ? ['RETRYING'] : ['FAILED']))
    expect(told.map(({ feed }) => feed.map((u) => u.kind))).toEqual(expected)
    expect(told.map(({ outbox }) => outbox.map((u) => u.kind))).toEqual(expected)
  })
})

describe('recording an attempt', () => {
  it('moves a delivery to SUCCESS, writes the attempt, keeps the record id and tells the owner DELIVERED', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [crm])
    const delivery = await claimOne(database.db, crm)
    const startedAt = new Date('2026-11-25T10:00:00.000Z')
    const finishedAt = new Date('2026-11-25T10:00:00.250Z')
    expect(
      await record(database.db, delivery, decisions.success('CRM-77'), { startedAt, finishedAt, message: 'HTTP 201', remarks: 'created in crm' })
    ).toBe(true)

    expect(await deliveryById(database.db, delivery.id)).toMatchObject({
      state: 'SUCCESS',
      attempts: 1,
      lease_until: null,
      external_id: 'CRM-77',
      last_error: null,
      remarks: 'created in crm',
      completed_at: expect.any(Date)
    })
    expect(await attemptsOf(delivery.id)).toEqual([
      expect.objectContaining({
        attempt_number: 1,
        status: 'SUCCESS',
        http_status: 201,
        response_message: 'HTTP 201',
        remarks: 'created in crm',
        event_id: delivery.event_id,
        event_type: 'cif.customer.created',
        customer_version: 1,
        end_system: crm,
        timeout_ms: 1000,
        duration_ms: 250,
        started_at: startedAt,
        finished_at: finishedAt
      })
    ])
    const xref = await database.db.selectFrom('customer_xref').selectAll().where('cif_id', '=', cifId).execute()
    expect(xref).toEqual([expect.objectContaining({ end_system: crm, external_id: 'CRM-77' })])

    const { feed, outbox } = await statusesOf(database.db, cifId)
    // The only end system: its success is also the customer's, so IN_SYNC follows DELIVERED.
    expect(feed.map((s) => s.kind)).toEqual(['DELIVERED', 'IN_SYNC'])
    expect(feed[0]!.data).toMatchObject({
      cifId,
      customerVersion: 1,
      endSystem: crm,
      deliveryId: delivery.id,
      state: 'SUCCESS',
      attempts: 1,
      externalId: 'CRM-77'
    })
    expect(outbox.map((m) => [m.topic, m.type, m.sourcesystem])).toEqual([
      [topics.syncStatus, statusKinds.DELIVERED.type, OWNER],
      [topics.syncStatus, statusKinds.IN_SYNC.type, OWNER]
    ])
    // The feed and the topic tell the same thing.
    expect(outbox.map((m) => m.data)).toEqual(feed.map((s) => s.data))
  })

  it('keeps the record id of a create only: an update that succeeds leaves the cross-reference alone', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1, 2], [crm])
    await record(database.db, await claimOne(database.db, crm), decisions.success('CRM-1'))
    const update = await claimOne(database.db, crm)
    expect(update.xref_external_id).toBe('CRM-1')
    await record(database.db, update, decisions.success('CRM-OTHER'))
    const xref = await database.db.selectFrom('customer_xref').select('external_id').where('cif_id', '=', cifId).execute()
    expect(xref).toEqual([{ external_id: 'CRM-1' }])
  })

  it('schedules a retry the delay ahead, and tells the owner RETRYING with when', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [crm])
    const delivery = await claimOne(database.db, crm)
    expect(await record(database.db, delivery, decisions.retry(90_000))).toBe(true)

    const row = await deliveryById(database.db, delivery.id)
    expect(row).toMatchObject({
      state: 'RETRY_SCHEDULED',
      attempts: 1,
      round_attempts: 1,
      lease_until: null,
      completed_at: null,
      last_error: 'HTTP 503: {"error":"maintenance"}',
      remarks: 'the end system is unavailable; retry 1 of 3 in 1m'
    })
    // Both set from the same now(): the gap is the delay, exactly.
    const { rows } = await sql<{
      ms: number
    }>`select extract(epoch from next_attempt_at - updated_at) * 1000 as ms from delivery where id = ${delivery.id}`.execute(database.db)
    expect(Number(rows[0]!.ms)).toBe(90_000)
    expect(await claim(database.db, crm)).toEqual([])

    expect(await attemptsOf(delivery.id)).toEqual([
      expect.objectContaining({ attempt_number: 1, status: 'ERROR', http_status: 503, response_message: 'HTTP 503: {"error":"maintenance"}' })
    ])
    const { feed, outbox } = await statusesOf(database.db, cifId)
    expect(feed.map((s) => s.kind)).toEqual(['RETRYING'])
    expect(feed[0]!.data).toMatchObject({ state: 'RETRY_SCHEDULED', deliveryId: delivery.id, nextAttemptAt: row.next_attempt_at.toISOString() })
    expect(outbox.map((m) => [m.topic, m.type, m.data])).toEqual([[topics.syncStatus, statusKinds.RETRYING.type, feed[0]!.data]])
  })

  it('clears the last error once a retry succeeds: the delivery and its DELIVERED status carry no error it no longer has', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [crm])
    const delivery = await claimOne(database.db, crm)
    await record(database.db, delivery, decisions.retry(0))
    expect(await deliveryById(database.db, delivery.id)).toMatchObject({ last_error: 'HTTP 503: {"error":"maintenance"}' })
    await record(database.db, await claimOne(database.db, crm), decisions.success('CRM-9'))

    expect(await deliveryById(database.db, delivery.id)).toMatchObject({ state: 'SUCCESS', last_error: null })
    const { feed } = await statusesOf(database.db, cifId)
    expect(feed.find((s) => s.kind === 'DELIVERED')!.data).toMatchObject({ lastError: null })
    // The transaction table keeps every error.
    expect((await attemptsOf(delivery.id)).map((a) => a.status)).toEqual(['ERROR', 'SUCCESS'])
  })

  it('fails a delivery, keeping the error, and tells the owner FAILED', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [crm])
    const delivery = await claimOne(database.db, crm)
    expect(await record(database.db, delivery, decisions.fail(), { remarks: 'crm refused the branch code' })).toBe(true)

    expect(await deliveryById(database.db, delivery.id)).toMatchObject({
      state: 'FAILED',
      lease_until: null,
      completed_at: expect.any(Date),
      last_error: 'HTTP 400: {"error":"invalid branch"}',
      remarks: 'crm refused the branch code'
    })
    expect(await attemptsOf(delivery.id)).toEqual([
      expect.objectContaining({
        status: 'ERROR',
        http_status: 400,
        response_message: 'HTTP 400: {"error":"invalid branch"}',
        remarks: 'crm refused the branch code'
      })
    ])
    const { feed, outbox } = await statusesOf(database.db, cifId)
    expect(feed.map((s) => s.kind)).toEqual(['FAILED'])
    expect(feed[0]!.data).toMatchObject({
      state: 'FAILED',
      lastError: 'HTTP 400: {"error":"invalid branch"}',
      remarks: 'crm refused the branch code'
    })
    expect(outbox.map((m) => [m.topic, m.type, m.data])).toEqual([[topics.syncStatus, statusKinds.FAILED.type, feed[0]!.data]])
    // A FAILED create records no record id.
    expect(await database.db.selectFrom('customer_xref').select('cif_id').where('cif_id', '=', cifId).execute()).toEqual([])
  })

  it('gives the status updates their feed positions as they are recorded, in order', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [crm])
    const delivery = await claimOne(database.db, crm)
    await record(database.db, delivery, decisions.retry(0))
    await record(database.db, await claimOne(database.db, crm), decisions.success())
    expect(await sequenceStatusUpdates(asSyncer(database.db))).toBe(0)
    const rows = await database.db.selectFrom('sync_status_update').select(['id', 'seq', 'kind']).where('cif_id', '=', cifId).orderBy('id').execute()
    expect(rows.map((r) => r.kind)).toEqual(['RETRYING', 'DELIVERED', 'IN_SYNC'])
    const seqs = rows.map((r) => Number(r.seq))
    expect(seqs.every((seq) => seq > 0)).toBe(true)
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs)
    expect(await database.db.selectFrom('sync_status_update').select('id').where('seq', 'is', null).execute()).toEqual([])
  })
})

describe('a customer in sync', () => {
  const inSyncOf = async (cifId: string) => (await statusesOf(database.db, cifId)).feed.filter((s) => s.kind === 'IN_SYNC')

  it('is told once, when the last end system holds the version, naming every end system', async () => {
    const systems = [newEndSystem('core-banking'), newEndSystem('crm'), newEndSystem('cards')]
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], systems)
    const [core, crm, cards] = await Promise.all(systems.map((system) => claimOne(database.db, system)))
    await record(database.db, core!, decisions.success('C1'))
    await record(database.db, crm!, decisions.retry(0))
    await record(database.db, cards!, decisions.success('K1'))
    expect(await inSyncOf(cifId)).toEqual([])
    await record(database.db, await claimOne(database.db, systems[1]!), decisions.success('R1'))

    const inSync = await inSyncOf(cifId)
    expect(inSync).toHaveLength(1)
    expect(inSync[0]!.data).toMatchObject({ cifId, customerVersion: 1, eventId: core!.event_id, endSystems: [...systems].sort() })
    const outboxInSync = (await statusesOf(database.db, cifId)).outbox.filter((m) => m.type === statusKinds.IN_SYNC.type)
    expect(outboxInSync.map((m) => m.data)).toEqual([inSync[0]!.data])
  })

  it('is told once when the last two successes are recorded in one batch, or at the same time', async () => {
    const systems = [newEndSystem('core-banking'), newEndSystem('crm'), newEndSystem('cards')]
    const batched = newCifId()
    const together = newCifId()
    await storeVersions(database.db, batched, [1], systems)
    await storeVersions(database.db, together, [1], systems)
    const claimed = (await Promise.all(systems.map((system) => claim(database.db, system)))).flat()
    const of = (cifId: string) => claimed.filter((d) => d.cif_id === cifId)

    expect(
      await recordAttempts(
        asSyncer(database.db),
        of(batched).map((d) => finished(d, decisions.success()))
      )
    ).toEqual([true, true, true])
    expect(await inSyncOf(batched)).toHaveLength(1)

    const [first, ...lastTwo] = of(together)
    await record(database.db, first!, decisions.success())
    // Two syncers record the last two at once: each transaction must see the other's success, or not tell.
    await Promise.all(lastTwo.map((d) => record(database.db, d, decisions.success())))
    expect(await inSyncOf(together)).toHaveLength(1)
  })

  it('is not told for a version while an end system has not got it', async () => {
    const systems = [newEndSystem('crm'), newEndSystem('cards')]
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], systems)
    await record(database.db, await claimOne(database.db, systems[0]!), decisions.success())
    await record(database.db, await claimOne(database.db, systems[1]!), decisions.fail())
    expect(await inSyncOf(cifId)).toEqual([])
  })
})

describe('an attempt answered after its delivery moved on', () => {
  it('is recorded, replacing the placeholder lease recovery wrote, but leaves the delivery to the newer attempt', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [crm])
    const stale = await claimOne(database.db, crm)
    // The syncer stalls past its lease; another takes the delivery for attempt 2.
    await expireLease(database.db, stale.id)
    expect(await recoverExpiredLeases(asSyncer(database.db))).toBe(1)
    const current = await claimOne(database.db, crm)
    expect(current.attempts).toBe(2)

    // The stalled syncer's answer arrives, in a batch with an attempt that is still current.
    const other = newCifId()
    await storeVersions(database.db, other, [1], [crm])
    const fresh = await claimOne(database.db, crm)
    const results = await recordAttempts(asSyncer(database.db), [
      finished(stale, decisions.success('CRM-STALE')),
      finished(fresh, decisions.success('CRM-FRESH'))
    ])
    expect(results).toEqual([false, true])

    expect(await deliveryById(database.db, stale.id)).toMatchObject({ state: 'IN_FLIGHT', attempts: 2, external_id: null })
    expect((await attemptsOf(stale.id)).map((a) => [a.attempt_number, a.status, a.http_status])).toEqual([[1, 'SUCCESS', 201]])
    expect(await database.db.selectFrom('customer_xref').select('cif_id').where('cif_id', '=', cifId).execute()).toEqual([])
    expect((await statusesOf(database.db, cifId)).feed).toEqual([])
    expect(await deliveryById(database.db, fresh.id)).toMatchObject({ state: 'SUCCESS', external_id: 'CRM-FRESH' })

    // The newer attempt's answer is the one that moves it.
    expect(await record(database.db, current, decisions.success('CRM-2'))).toBe(true)
    expect(await deliveryById(database.db, stale.id)).toMatchObject({ state: 'SUCCESS', attempts: 2, external_id: 'CRM-2' })
    expect((await statusesOf(database.db, cifId)).feed.map((s) => s.kind)).toEqual(['DELIVERED', 'IN_SYNC'])
  })
})
