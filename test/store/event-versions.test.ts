import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redrive } from '../../src/syncer/delivery/operator-actions.ts'
import { storeEvents } from '../../src/syncer/intake/event-store.ts'
import { asSyncer } from '../support/database.ts'
import { devTrustedKeys } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { claim, decisions, eventMessage, newCifId, newEndSystem, record, statusesOf } from './fixtures.ts'

// Versions out of their place on the topic: the CIF service publishes a customer's versions one after another on
// one partition, so these are messages produced by someone else, replayed, or moved. Whatever their order, an
// end system gets a customer's versions in version order, each once, and never an older one over a newer.

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

const store = (messages: ReturnType<typeof eventMessage>[], systems: string[]) =>
  storeEvents(asSyncer(database.db), messages, systems, devTrustedKeys)

const deliveries = (cifId: string) =>
  database.db
    .selectFrom('delivery')
    .select(['id', 'customer_version', 'state', 'remarks'])
    .where('cif_id', '=', cifId)
    .orderBy('customer_version')
    .execute()

describe('versions out of their place', () => {
  it('keeps a second event of a stored version as unreadable, saying which event holds it, and delivers nothing of it', async () => {
    const [system, cifId] = [newEndSystem(), newCifId()]
    await store([eventMessage(cifId, 1), eventMessage(cifId, 2)], [system])
    // Version 2 again, signed, under another id: in a batch of its own, and twice in one batch.
    const again = eventMessage(cifId, 2)
    const stored = await store([again, eventMessage(cifId, 2)], [system])
    expect(stored.unreadable.map(({ reason }) => reason)).toEqual([
      expect.stringMatching(new RegExp(`^version 2 of customer ${cifId} is already stored as event [0-9a-f-]{36}: one version, one event$`)),
      expect.stringMatching(/^version 2 of customer/)
    ])
    expect(stored.notSigned).toEqual([])
    expect((await deliveries(cifId)).map((d) => d.customer_version)).toEqual([1, 2])
    const kept = await database.db.selectFrom('unreadable_message').select(['reason', 'message_value']).where('message_key', '=', cifId).execute()
    expect(kept).toHaveLength(2)
    expect(kept[0]!.message_value).toBe(again.value)
  })

  it('holds a version that comes after a gap until the missing one arrives, then sends both in order', async () => {
    const [system, cifId] = [newEndSystem(), newCifId()]
    await store([eventMessage(cifId, 1), eventMessage(cifId, 2), eventMessage(cifId, 3)], [system])
    for (let round = 0; round < 3; round++) await record(database.db, (await claim(database.db, system))[0]!, decisions.success('X-1'))

    await store([eventMessage(cifId, 5)], [system])
    expect((await deliveries(cifId)).at(-1)).toMatchObject({
      customer_version: 5,
      state: 'BLOCKED',
      remarks:
        'held: version 4 of the customer has not reached the syncer, though an earlier one has (a gap in the versions); it goes after version 4'
    })
    expect(await claim(database.db, system)).toEqual([])

    // Version 6 behind it is not held itself (version 5 is here), and waits its turn behind 5.
    await store([eventMessage(cifId, 6)], [system])
    await store([eventMessage(cifId, 4)], [system])
    expect((await deliveries(cifId)).slice(3).map((d) => [d.customer_version, d.state, d.remarks])).toEqual([
      [4, 'PENDING', null],
      [5, 'PENDING', 'no longer held: the version before it arrived'],
      [6, 'PENDING', null]
    ])
    const sent: number[] = []
    for (let round = 0; round < 4; round++) {
      const claimed = await claim(database.db, system)
      sent.push(...claimed.map((d) => d.customer_version))
      for (const d of claimed) await record(database.db, d, decisions.success('X-1'))
    }
    expect(sent).toEqual([4, 5, 6])
  })

  it('says what a version waits for when it is both behind a FAILED one and after a gap, as either clears', async () => {
    const [system, cifId] = [newEndSystem(), newCifId()]
    await store([eventMessage(cifId, 1)], [system])
    await record(database.db, (await claim(database.db, system))[0]!, decisions.fail())
    await store([eventMessage(cifId, 3)], [system])
    const [failed] = await deliveries(cifId)
    const waitsBehind = `waits behind delivery ${failed!.id} (version 1), which FAILED; redrive or skip it`
    expect((await deliveries(cifId)).map((d) => [d.state, d.remarks])).toEqual([
      ['FAILED', expect.any(String)],
      ['BLOCKED', waitsBehind]
    ])
    // The FAILED one redriven: version 2 is still missing.
    await redrive(asSyncer(database.db), { deliveryId: failed!.id, operator: 'ops.tan', reason: 'crm is back' })
    expect((await deliveries(cifId)).at(-1)).toMatchObject({ state: 'BLOCKED', remarks: expect.stringMatching(/^held: version 2 /) })
    // It fails again; then version 2 arrives: both wait behind the FAILED one, saying so.
    await record(database.db, (await claim(database.db, system))[0]!, decisions.fail())
    await store([eventMessage(cifId, 2)], [system])
    expect((await deliveries(cifId)).map((d) => [d.customer_version, d.state, d.remarks])).toEqual([
      [1, 'FAILED', expect.any(String)],
      [2, 'BLOCKED', waitsBehind],
      [3, 'BLOCKED', waitsBehind]
    ])
  })

  it('never sends an update older than a version its end system was already sent, and tells the source system; a late create still goes', async () => {
    const [system, cifId] = [newEndSystem(), newCifId()]
    // First seen at version 3 (the syncer started after the earlier events, say): nothing to wait for.
    await store([eventMessage(cifId, 3)], [system])
    const [third] = await claim(database.db, system)
    expect(third!.customer_version).toBe(3)
    await record(database.db, third!, decisions.success('X-1'))

    await store([eventMessage(cifId, 2), eventMessage(cifId, 1)], [system])
    expect((await deliveries(cifId)).map((d) => [d.customer_version, d.state, d.remarks])).toEqual([
      [1, 'PENDING', null],
      [
        2,
        'SUPERSEDED',
        `not sent: ${system} was already sent version 3 (delivery ${third!.id}) when this older version arrived; an older version never goes over a newer one`
      ],
      [3, 'SUCCESS', 'created']
    ])
    const { feed } = await statusesOf(database.db, cifId)
    expect(feed.filter((s) => s.kind === 'SUPERSEDED').map((s) => s.data.customerVersion)).toEqual([2])
  })
})
