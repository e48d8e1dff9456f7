import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eraseCustomerData } from '../../src/syncer/erasure.ts'
import { storeEvents } from '../../src/syncer/intake/event-store.ts'
import { asSyncer } from '../support/database.ts'
import { devTrustedKeys } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { eventMessage, newCifId, newEndSystem } from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase(8)
})
afterAll(async () => database?.close())

describe("the syncer's erasure of a customer against its intake", () => {
  it('never leaves a delivery or a payload of an erased customer, however the two interleave', async () => {
    const syncer = asSyncer(database.db)
    const system = newEndSystem()
    const cifIds = Array.from({ length: 30 }, () => newCifId())
    // Each customer's create is stored while the customer is erased: either may go first.
    await Promise.all(
      cifIds.flatMap((cifId, i) => {
        const store = () => storeEvents(syncer, [eventMessage(cifId, 1)], [system], devTrustedKeys)
        const erase = () => eraseCustomerData(syncer, { cifId, by: 'dpo.lim', reason: 'race' })
        return i % 2 ? [store(), erase()] : [erase(), store()]
      })
    )
    const left = await database.db
      .selectFrom('delivery')
      .select(['cif_id', 'state'])
      .where('cif_id', 'in', cifIds)
      .where('state', '!=', 'SKIPPED')
      .execute()
    expect(left).toEqual([])
    const payloads = await database.db
      .selectFrom('sync_event')
      .select('cif_id')
      .where('cif_id', 'in', cifIds)
      .where('event', 'is not', null)
      .execute()
    expect(payloads).toEqual([])
    expect(await database.db.selectFrom('customer_erasure').select('cif_id').where('cif_id', 'in', cifIds).execute()).toHaveLength(cifIds.length)
  })
})
