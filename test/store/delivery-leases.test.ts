import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { recoverExpiredLeases } from '../../src/syncer/delivery/delivery-store.ts'
import { remark, remarkTemplates } from '../../src/syncer/delivery/states.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import {
  attemptsOf as attemptsOfIn,
  claim,
  claimOne,
  decisions,
  deliveryById,
  deliveryOf,
  expireLease,
  newCifId,
  newEndSystem,
  record,
  statusesOf,
  storeVersions
} from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

const attemptsOf = (deliveryId: string) => attemptsOfIn(database.db, deliveryId)

describe('recovering attempts whose syncer stopped', () => {
  it('schedules an expired IN_FLIGHT delivery again at once, with an ERROR attempt saying why, and leaves live leases alone', async () => {
    const crm = newEndSystem('crm')
    const lost = newCifId()
    const live = newCifId()
    await storeVersions(database.db, lost, [1], [crm])
    await storeVersions(database.db, live, [1], [crm])
    const [dead, running] = await claim(database.db, crm)
    expect([dead!.cif_id, running!.cif_id]).toEqual([lost, live])
    const runningBefore = await deliveryById(database.db, running!.id)
    await expireLease(database.db, dead!.id)

    expect(await recoverExpiredLeases(asSyncer(database.db))).toBe(1)

    expect(await deliveryById(database.db, dead!.id)).toMatchObject({
      state: 'RETRY_SCHEDULED',
      lease_until: null,
      attempts: 1,
      round_attempts: 0,
      remarks: remark('leaseLost', { attempt: 1 })
    })
    expect(await attemptsOf(dead!.id)).toEqual([
      expect.objectContaining({
        attempt_number: 1,
        status: 'ERROR',
        http_status: null,
        response_message: 'no answer recorded',
        remarks: remarkTemplates.leaseLostAttempt,
        event_type: 'cif.customer.created',
        customer_version: 1,
        end_system: crm
      })
    ])
    // The one with a live lease is as it was, with no attempt row.
    expect(await deliveryById(database.db, running!.id)).toEqual(runningBefore)
    expect(await attemptsOf(running!.id)).toEqual([])
    // Nothing else has expired: a second pass finds nothing.
    expect(await recoverExpiredLeases(asSyncer(database.db))).toBe(0)
  })

  it('does not spend the retry budget: the next attempt is the same attempt of its round again', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [crm])
    // Attempt 1 fails in a way a retry may fix; attempt 2 is lost with its syncer.
    await record(database.db, await claimOne(database.db, crm), decisions.retry(0))
    const second = await claimOne(database.db, crm)
    expect([second.attempts, second.round_attempts]).toEqual([2, 2])
    await expireLease(database.db, second.id)
    expect(await recoverExpiredLeases(asSyncer(database.db))).toBe(1)
    expect(await deliveryById(database.db, second.id)).toMatchObject({ state: 'RETRY_SCHEDULED', attempts: 2, round_attempts: 1 })

    // Due at once; attempt 3 overall, but the 2nd of the round, as the lost one was.
    const third = await claimOne(database.db, crm)
    expect([third.attempts, third.round_attempts]).toEqual([3, 2])
    expect((await attemptsOf(second.id)).map((a) => [a.attempt_number, a.status])).toEqual([
      [1, 'ERROR'],
      [2, 'ERROR']
    ])
    // Lease recovery tells the owner nothing: only the recorded retry of attempt 1 was told.
    expect((await statusesOf(database.db, cifId)).feed.map((s) => s.kind)).toEqual(['RETRYING'])
  })

  it('leaves deliveries that are not IN_FLIGHT alone, whatever their lease says', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1, 2], [crm])
    const create = await claimOne(database.db, crm)
    await record(database.db, create, decisions.success())
    const update = await deliveryOf(database.db, cifId, crm, 2)
    await expireLease(database.db, create.id)
    await expireLease(database.db, update.id)
    expect(await recoverExpiredLeases(asSyncer(database.db))).toBe(0)
    expect((await deliveryById(database.db, create.id)).state).toBe('SUCCESS')
    expect((await deliveryById(database.db, update.id)).state).toBe('PENDING')
  })
})
