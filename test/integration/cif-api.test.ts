import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CifService } from '../../src/cif/service.ts'
import { checkEventSignature } from '../../src/contracts/event-signature.ts'
import { topics } from '../../src/contracts/topics.ts'
import { type DatabaseHandle, openDatabase } from '../../src/platform/database/index.ts'
import type { TestDatabase } from '../support/database.ts'
import { devTrustedKeys } from '../support/event-keys.ts'
import { call, connections, eventSchemaErrors, newPerson, readWithCloudEventsSdk, startTestCifService, TopicReader } from './helpers.ts'

// What needs Kafka: the events a change publishes, and readiness. The API's edges are tested against
// PostgreSQL alone, through inject, in test/api/cif-api.test.ts and test/api/hostile-input.test.ts.
let cif: CifService
let events: TopicReader
let database: DatabaseHandle<TestDatabase>

beforeAll(async () => {
  cif = await startTestCifService()
  events = await TopicReader.open(connections().kafka, topics.customerEvents)
  database = openDatabase<TestDatabase>(connections().databaseUrl, { maxConnections: 2 })
})
afterAll(async () => {
  await events?.close()
  await cif?.close()
  await database?.close()
})

const outboxRowsFor = async (cifId: string) =>
  database.db.selectFrom('outbox_message').select(['event_id', 'status']).where('message_key', '=', cifId).execute()

describe('create, then the event on the topic', () => {
  it('returns the CIF ID, stores the record and publishes a schema-valid created event keyed by CIF ID', async () => {
    const person = newPerson()
    const created = await call(cif.url, 'POST', '/v1/customers', { body: person })
    expect(created.status).toBe(201)
    const { cifId } = created.body
    expect(cifId).toMatch(/^[0-9]{11}$/)
    expect(created.headers.get('location')).toBe(`/v1/customers/${cifId}`)
    expect(created.headers.get('etag')).toBe('"1"')
    expect(created.body).toMatchObject({ ...person, cifId, version: 1, sourceSystem: 'branch-portal' })

    const read = await call(cif.url, 'GET', `/v1/customers/${cifId}`)
    expect(read.status).toBe(200)
    expect(read.body).toEqual(created.body)

    const [message] = await events.waitFor(() => events.forKey(cifId).length === 1).then(() => events.forKey(cifId))
    expect(message!.headers['content-type']).toBe('application/cloudevents+json; charset=utf-8')
    expect(message!.value).toMatchObject({
      specversion: '1.0',
      type: 'cif.customer.created',
      subject: cifId,
      customerversion: 1,
      sourcesystem: 'branch-portal',
      data: created.body
    })
    expect(await eventSchemaErrors(message!.value)).toEqual([])
    const sdk = readWithCloudEventsSdk(message!)
    expect(sdk).toEqual({ event: { ...message!.value, partitionkey: cifId }, ceHeaders: [] })
    // Signed with the development key (CIF_EVENT_SIGNING_KEY unset), as the syncer verifies it.
    expect(checkEventSignature(message!.value, devTrustedKeys)).toEqual({ signed: true, keyId: 'local-development' })
    expect(await outboxRowsFor(cifId)).toEqual([{ event_id: message!.value.id, status: 'SENT' }])
  })

  it('publishes an update as version 2 after the created event, naming the changed fields', async () => {
    const created = await call(cif.url, 'POST', '/v1/customers', { body: newPerson() })
    const { cifId } = created.body
    const patched = await call(cif.url, 'PATCH', `/v1/customers/${cifId}`, {
      body: { mobileNumber: '+6598765432', middleName: null },
      headers: { 'content-type': 'application/merge-patch+json', 'if-match': '"1"' }
    })
    expect(patched.status).toBe(200)
    expect(patched.headers.get('etag')).toBe('"2"')
    expect(patched.body.version).toBe(2)
    expect(patched.body.mobileNumber).toBe('+6598765432')
    expect(patched.body).not.toHaveProperty('middleName')

    await events.waitFor(() => events.forKey(cifId).length === 2)
    const [first, second] = events.forKey(cifId)
    expect(first!.value.type).toBe('cif.customer.created')
    expect(second!.value).toMatchObject({ type: 'cif.customer.updated', customerversion: 2, changedfields: 'middleName,mobileNumber' })
    expect(second!.offset).toBeGreaterThan(first!.offset)
    expect(second!.partition).toBe(first!.partition)
    expect(await eventSchemaErrors(second!.value)).toEqual([])
    expect(checkEventSignature(second!.value, devTrustedKeys)).toMatchObject({ signed: true })
  })
})

describe('readiness', () => {
  it('is ready with its database, Kafka and the outbox relay up', async () => {
    const ready = await call(cif.url, 'GET', '/health/ready', { key: null })
    expect(ready.status).toBe(200)
    expect(ready.body).toMatchObject({ status: 'ready', checks: { database: 'up', kafka: 'up', outboxRelay: 'up' } })
    expect(ready.body.details.outboxRelay).toMatchObject({ restarts: 0, lastRestart: null })
  })
})
