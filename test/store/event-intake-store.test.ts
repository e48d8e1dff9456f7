import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { customerEvent, customerEventTypes } from '../../src/contracts/customer-events.ts'
import { storeEvents } from '../../src/syncer/intake/event-store.ts'
import { asSyncer } from '../support/database.ts'
import { devSigningKey, devTrustedKeys } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { customerAt, eventMessage, kafkaMessage, newCifId, newEndSystem, OWNER } from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

const deliveriesOf = (cifIds: string[]) =>
  database.db
    .selectFrom('delivery')
    .innerJoin('sync_event', 'sync_event.event_id', 'delivery.event_id')
    .select(['delivery.id', 'delivery.cif_id', 'delivery.end_system', 'delivery.operation', 'delivery.customer_version', 'delivery.state'])
    .select(['delivery.remarks', 'sync_event.kafka_offset', 'sync_event.event'])
    .where('delivery.cif_id', 'in', cifIds)
    .orderBy('delivery.id')
    .execute()

describe('storing a batch of events', () => {
  it('stores each event once with a delivery per end system, event by event in the order read, and a batch read again adds nothing', async () => {
    const systems = [newEndSystem('core-banking'), newEndSystem('crm'), newEndSystem('cards')]
    const [first, second] = [newCifId(), newCifId()]
    const batch = [eventMessage(first, 1), eventMessage(second, 1), eventMessage(first, 2)]

    await storeEvents(asSyncer(database.db), batch, systems, devTrustedKeys)
    await storeEvents(asSyncer(database.db), batch, systems, devTrustedKeys)

    const deliveries = await deliveriesOf([first, second])
    expect(deliveries.map((d) => [d.cif_id, d.customer_version, d.end_system, d.operation, d.state])).toEqual(
      [
        [first, 1, 'create'],
        [second, 1, 'create'],
        [first, 2, 'update']
      ].flatMap(([cifId, version, operation]) => systems.map((system) => [cifId, version, system, operation, 'PENDING']))
    )
    expect(deliveries.map((d) => d.kafka_offset)).toEqual(batch.flatMap((message) => systems.map(() => String(message.offset))))
    expect(deliveries[0]!.event).toEqual(JSON.parse(batch[0]!.value))
    expect(deliveries.every((d) => d.remarks === null)).toBe(true)
  })

  it('says on its deliveries when an event reached the syncer long after it was made', async () => {
    const system = newEndSystem()
    const cifId = newCifId()
    const madeAt = new Date(Date.now() - 5 * 60_000).toISOString()
    const event = customerEvent(customerEventTypes.created, { ...customerAt(cifId, 1), updatedAt: madeAt }, OWNER, devSigningKey)

    await storeEvents(asSyncer(database.db), [kafkaMessage(cifId, JSON.stringify(event))], [system], devTrustedKeys)

    const [delivery] = await deliveriesOf([cifId])
    expect(delivery!.remarks).toMatch(/^reached the syncer 5 min \d+ s after it was made/)
  })
})
