import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { customerEventTypes } from '../../src/contracts/customer-events.ts'
import { signEvent } from '../../src/contracts/event-signature.ts'
import { storeEvents } from '../../src/syncer/intake/event-store.ts'
import { asSyncer } from '../support/database.ts'
import { devTrustedKeys, newEventKeyPair } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { customerAt, deliveriesOf, eventMessage, kafkaMessage, newCifId, newEndSystem } from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

const unreadableFor = (key: string) => database.db.selectFrom('unreadable_message').selectAll().where('message_key', '=', key).execute()
const storedEventsOf = (cifId: string) => database.db.selectFrom('sync_event').select('event_id').where('cif_id', '=', cifId).execute()

/** A well-formed `created` event for a CIF ID the CIF service never made: what a forger would produce. */
function forgedCreate(cifId: string): Record<string, unknown> {
  return {
    specversion: '1.0',
    id: crypto.randomUUID(),
    source: 'urn:cif-syncer:cif-service',
    type: customerEventTypes.created,
    subject: cifId,
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    dataschema: 'urn:cif-syncer:schemas:cif.customer.created:1',
    customerversion: 1,
    sourcesystem: 'branch-portal',
    data: customerAt(cifId, 1)
  }
}

describe('storing only what the CIF service signed', () => {
  it('keeps a forged, a wrongly signed and a changed event as unreadable, with the reason, and delivers none of them', async () => {
    const endSystem = newEndSystem()
    const [unsigned, strangers, changed, genuine] = [newCifId(), newCifId(), newCifId(), newCifId()]
    const stranger = newEventKeyPair('cif-2099-01')
    const changedEvent = JSON.parse(eventMessage(changed, 1).value!)
    changedEvent.data.email = 'someone.else@example.com'
    const batch = [
      kafkaMessage(unsigned, JSON.stringify(forgedCreate(unsigned))),
      kafkaMessage(strangers, JSON.stringify(signEvent(forgedCreate(strangers), stranger.signingKey))),
      kafkaMessage(changed, JSON.stringify(changedEvent)),
      eventMessage(genuine, 1)
    ]

    const stored = await storeEvents(asSyncer(database.db), batch, [endSystem], devTrustedKeys)

    expect(stored.endSystems).toEqual(new Set([endSystem]))
    expect(stored.notSigned.map(({ message, reason }) => [message.key, reason])).toEqual([
      [unsigned, 'not signed by the CIF service: it carries no signature'],
      [strangers, 'not signed by the CIF service: it names key "cif-2099-01", which is not a trusted key of the CIF service'],
      [
        changed,
        'not signed by the CIF service: its signature does not match it under key "local-development" (changed after it was signed, or signed by another key)'
      ]
    ])
    for (const { message, reason } of stored.notSigned) {
      const kept = await unreadableFor(message.key!)
      expect(kept.map((row) => [row.reason, row.message_value, row.kafka_offset])).toEqual([[reason, message.value, String(message.offset)]])
      expect(await storedEventsOf(message.key!)).toEqual([])
      expect(await deliveriesOf(database.db, message.key!)).toEqual([])
    }
    expect((await deliveriesOf(database.db, genuine)).map((d) => [d.end_system, d.state])).toEqual([[endSystem, 'PENDING']])
    expect(await unreadableFor(genuine)).toEqual([])
  })

  it('accepts the event read back from the syncer’s own store, whose jsonb reorders its keys, as the same event', async () => {
    const endSystem = newEndSystem()
    const cifId = newCifId()
    const first = eventMessage(cifId, 1)
    await storeEvents(asSyncer(database.db), [first], [endSystem], devTrustedKeys)
    const { event } = await database.db.selectFrom('sync_event').select('event').where('cif_id', '=', cifId).executeTakeFirstOrThrow()
    const readBack = JSON.stringify(event)
    expect(readBack).not.toBe(first.value)

    const again = await storeEvents(asSyncer(database.db), [kafkaMessage(cifId, readBack)], [endSystem], devTrustedKeys)

    expect(again).toEqual({ endSystems: new Set(), notSigned: [], unreadable: [], versionTaken: [], ofErased: [] })
    expect(await unreadableFor(cifId)).toEqual([])
    expect(await deliveriesOf(database.db, cifId)).toHaveLength(1)
  })

  it('accepts events of every key it trusts: the old and the new during a rotation', async () => {
    const endSystem = newEndSystem()
    const next = newEventKeyPair('cif-2026-07')
    const both = new Map([...devTrustedKeys, [next.signingKey.keyId, next.publicKey]])
    const [byOld, byNew] = [newCifId(), newCifId()]
    const signedByNew = signEvent(JSON.parse(eventMessage(byNew, 1).value!), next.signingKey)

    const stored = await storeEvents(
      asSyncer(database.db),
      [eventMessage(byOld, 1), kafkaMessage(byNew, JSON.stringify(signedByNew))],
      [endSystem],
      both
    )

    expect(stored.notSigned).toEqual([])
    expect(await deliveriesOf(database.db, byOld)).toHaveLength(1)
    expect(await deliveriesOf(database.db, byNew)).toHaveLength(1)
  })
})
