import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { CifService } from '../../src/cif/service.ts'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import { customerEventTypes, dataSchemaFor, EVENT_SOURCE } from '../../src/contracts/customer-events.ts'
import { signEvent } from '../../src/contracts/event-signature.ts'
import { syncerProblems } from '../../src/contracts/problems.ts'
import { topics } from '../../src/contracts/topics.ts'
import { type DatabaseHandle, openDatabase } from '../../src/platform/database/index.ts'
import { createConsumer, createIdempotentProducer } from '../../src/platform/kafka.ts'
import { redactPaths } from '../../src/platform/logger.ts'
import type { Simulator } from '../../src/simulator/service.ts'
import { claimDue, recoverExpiredLeases } from '../../src/syncer/delivery/delivery-store.ts'
import { storeEvents } from '../../src/syncer/intake/event-store.ts'
import type { Syncer } from '../../src/syncer/service.ts'
import { asSyncer, type TestDatabase } from '../support/database.ts'
import { devSigningKey, devTrustedKeys, newEventKeyPair } from '../support/event-keys.ts'
import {
  call,
  connections,
  eventSchemaErrors,
  keys,
  newPerson,
  problemType,
  readWithCloudEventsSdk,
  startTestCifService,
  TopicReader
} from './helpers.ts'
import { approverKey, attemptsOf, deliveriesOf, eventually, operatorKey, startTestSimulator, startTestSyncer } from './syncer-helpers.ts'

let cif: CifService
let simulator: Simulator
let syncer: Syncer
let database: DatabaseHandle<TestDatabase>
let status: TopicReader

/** What the syncer warned of, kept so that a test can read it (and written out as any test log is). */
const syncerWarnings: Record<string, any>[] = []
const syncerLog = pino(
  // At warn at least, whatever LOG_LEVEL says, so that the warnings are there to read.
  {
    name: 'syncer-test',
    level: ['trace', 'debug', 'info'].includes(process.env.LOG_LEVEL ?? '') ? process.env.LOG_LEVEL : 'warn',
    redact: { paths: redactPaths }
  },
  new Writable({
    write: (chunk, _encoding, done) => {
      const entry = JSON.parse(String(chunk))
      if (entry.level >= 40) syncerWarnings.push(entry)
      process.stdout.write(chunk)
      done()
    }
  })
)
const startSyncer = () => startTestSyncer(simulator, {}, { log: syncerLog })

beforeAll(async () => {
  database = openDatabase<TestDatabase>(connections().databaseUrl, { maxConnections: 4 })
  cif = await startTestCifService()
  simulator = await startTestSimulator()
  syncer = await startSyncer()
  status = await TopicReader.open(connections().kafka, topics.syncStatus)
  // Earlier test files left customers on the topic. Let the syncer deliver them first, so that a fault
  // switched on below hits this file's customers, not that backlog.
  const { cifId } = await createCustomer()
  await eventually(() => deliveriesOf(database, cifId), allSucceeded, 60_000)
  await eventually(
    () => database.db.selectFrom('delivery').select('id').where('state', 'not in', ['SUCCESS', 'FAILED', 'SKIPPED']).execute(),
    (open) => open.length === 0,
    60_000
  )
})
afterAll(async () => {
  await status?.close()
  await syncer?.close()
  await simulator?.close()
  await cif?.close()
  await database?.close()
})
afterEach(async () => {
  for (const system of simulator.systems.values()) await system.setFault({ mode: 'none' })
})

async function createCustomer(overrides: Record<string, unknown> = {}): Promise<{ cifId: string; person: Record<string, any> }> {
  const person = newPerson(overrides)
  const created = await call(cif.url, 'POST', '/v1/customers', { body: person })
  expect(created.status).toBe(201)
  return { cifId: created.body.cifId, person }
}

const settled = (states: string[]) => (rows: { state: string }[]) => rows.length > 0 && rows.every((row) => states.includes(row.state))
const allSucceeded = settled(['SUCCESS'])
const syncApi = (path: string, key = keys.branchPortal) => call(syncer.url, 'GET', path, { key })
const admin = (method: string, path: string, body?: unknown) => call(syncer.url, method, path, { key: operatorKey, body })

describe('delivering a customer to every end system', () => {
  it('creates the customer in all three systems, each in its own shape, and reports it in sync', async () => {
    const { cifId, person } = await createCustomer()
    const deliveries = await eventually(() => deliveriesOf(database, cifId), allSucceeded)
    expect(deliveries.map((d) => [d.end_system, d.operation, d.attempts])).toEqual([
      ['cards', 'create', 1],
      ['core-banking', 'create', 1],
      ['crm', 'create', 1]
    ])

    const core = simulator.systems.get('core-banking')!.recordForCif(cifId)!
    expect(core.payload).toMatchObject({
      customerNumber: cifId,
      customerType: 'INDIVIDUAL',
      name: { first: 'Ada', middle: 'King', last: 'Lovelace' }
    })
    expect(simulator.systems.get('crm')!.recordForCif(cifId)!.payload).toMatchObject({
      externalRef: cifId,
      displayName: 'Ada Lovelace',
      email: person.email
    })
    expect(simulator.systems.get('cards')!.recordForCif(cifId)!.payload).toMatchObject({ cif: cifId, embossName: 'ADA LOVELACE' })
    expect(deliveries.find((d) => d.end_system === 'core-banking')!.external_id).toBe(core.id)

    const [attempt] = await attemptsOf(database, cifId, 'crm')
    expect(attempt).toMatchObject({
      status: 'SUCCESS',
      http_status: 201,
      attempt_number: 1,
      event_type: 'cif.customer.created',
      customer_version: 1,
      timeout_ms: 1000
    })

    const sync = await syncApi(`/v1/sync/customers/${cifId}`)
    expect(sync.status).toBe(200)
    expect(sync.body).toMatchObject({ cifId, latestVersion: 1, state: 'IN_SYNC' })
    expect(sync.body.endSystems.map((e: { endSystem: string; state: string }) => `${e.endSystem}:${e.state}`)).toEqual([
      'cards:SUCCESS',
      'core-banking:SUCCESS',
      'crm:SUCCESS'
    ])

    const messages = await status.waitFor(() => status.forKey(cifId).some((m) => m.value.type === 'cif.sync.customer.in-sync'))
    const mine = messages.filter((m) => m.key === cifId).map((m) => m.value)
    expect(mine.filter((m) => m.type === 'cif.sync.delivery.succeeded')).toHaveLength(3)
    expect(mine.find((m) => m.type === 'cif.sync.customer.in-sync')!.data).toMatchObject({
      kind: 'IN_SYNC',
      cifId,
      customerVersion: 1,
      endSystems: ['cards', 'core-banking', 'crm']
    })
  })

  it('retries a passing failure and records ERROR, ERROR, SUCCESS with the system’s message', async () => {
    await simulator.systems.get('crm')!.setFault({ mode: 'fail-next', count: 2, status: 503, message: 'maintenance window' })
    const { cifId } = await createCustomer()
    await eventually(() => deliveriesOf(database, cifId), allSucceeded)
    const attempts = await attemptsOf(database, cifId, 'crm')
    expect(attempts.map((a) => [a.attempt_number, a.status, a.http_status])).toEqual([
      [1, 'ERROR', 503],
      [2, 'ERROR', 503],
      [3, 'SUCCESS', 201]
    ])
    expect(attempts[0]!.response_message).toBe('HTTP 503: {"error":"maintenance window"}')
    expect(attempts[0]!.remarks).toMatch(/^crm answered 503 \(a fault on its side\); retry 1 of 3 in/)
    await status.waitFor(() => status.forKey(cifId).some((m) => m.value.type === 'cif.sync.delivery.retrying'))
  })

  it('fails a refused create at once, blocks later versions behind it, and lets an operator redrive it', async () => {
    await simulator.systems.get('cards')!.setFault({ mode: 'status', status: 422, message: 'embossName too long' })
    const { cifId } = await createCustomer()
    const failed = await eventually(
      () => deliveriesOf(database, cifId),
      (rows) => rows.some((d) => d.end_system === 'cards' && d.state === 'FAILED')
    )
    const cards = failed.find((d) => d.end_system === 'cards')!
    expect(cards.attempts).toBe(1)
    expect(cards.remarks).toBe('cards refused the create (422); retrying cannot help')
    expect(cards.last_error).toBe('HTTP 422: {"error":"embossName too long"}')

    const patched = await call(cif.url, 'PATCH', `/v1/customers/${cifId}`, { body: { branchCode: 'SIN02' }, headers: { 'if-match': '"1"' } })
    expect(patched.status).toBe(200)
    // The other systems are not held up by it: they get version 2 while cards waits (on a loaded machine
    // perhaps only after cards' delivery is found blocked).
    const blocked = await eventually(
      () => deliveriesOf(database, cifId),
      (rows) =>
        rows.some((d) => d.end_system === 'cards' && d.customer_version === 2 && d.state === 'BLOCKED') &&
        rows.filter((d) => d.end_system !== 'cards').every((d) => d.state === 'SUCCESS')
    )
    expect(blocked.find((d) => d.end_system === 'cards' && d.customer_version === 2)!.remarks).toBe(
      `waits behind delivery ${cards.id} (version 1), which FAILED; redrive or skip it`
    )
    expect((await syncApi(`/v1/sync/customers/${cifId}`)).body.state).toBe('NEEDS_ATTENTION')

    await simulator.systems.get('cards')!.setFault({ mode: 'none' })
    const redriven = await admin('POST', `/v1/admin/deliveries/${cards.id}/redrive`, { reason: 'cards fixed the name length rule' })
    expect(redriven.status).toBe(200)
    expect(redriven.body).toMatchObject({ state: 'PENDING', remarks: 'redriven by test-operator: cards fixed the name length rule' })
    await eventually(() => deliveriesOf(database, cifId), allSucceeded)
    expect(simulator.systems.get('cards')!.recordForCif(cifId)!.version).toBe(2)
    const actions = await database.db.selectFrom('operator_action').selectAll().where('delivery_id', '=', cards.id).execute()
    expect(actions).toMatchObject([
      { action: 'REDRIVE', operator: 'test-operator', reason: 'cards fixed the name length rule', from_state: 'FAILED' }
    ])
    expect((await syncApi(`/v1/sync/customers/${cifId}`)).body.state).toBe('IN_SYNC')
  })

  it('gives up on a system that stays down, with remarks, while the others succeed without waiting', async () => {
    await simulator.systems.get('core-banking')!.setFault({ mode: 'down' })
    const { cifId } = await createCustomer()
    const rows = await eventually(
      () => deliveriesOf(database, cifId),
      (d) => d.some((row) => row.end_system === 'core-banking' && row.state === 'FAILED')
    )
    const down = rows.find((d) => d.end_system === 'core-banking')!
    expect(down.attempts).toBe(4)
    expect(down.remarks).toMatch(/^core-banking refused the connection \(is it down\?\); gave up after 4 attempts/)
    const attempts = await attemptsOf(database, cifId, 'core-banking')
    expect(attempts.map((a) => a.status)).toEqual(['ERROR', 'ERROR', 'ERROR', 'ERROR'])
    expect(attempts[0]!.response_message).toMatch(/^ECONNREFUSED/)
    for (const other of rows.filter((d) => d.end_system !== 'core-banking')) {
      expect(other.state).toBe('SUCCESS')
      // Done long before the down system's retries ran out.
      expect(other.completed_at!.getTime()).toBeLessThan(down.completed_at!.getTime())
    }
    await status.waitFor(() => status.forKey(cifId).some((m) => m.value.type === 'cif.sync.delivery.failed'))
    const failedStatus = status.forKey(cifId).find((m) => m.value.type === 'cif.sync.delivery.failed')
    expect(failedStatus?.value.data).toMatchObject({ endSystem: 'core-banking', state: 'FAILED', attempts: 4 })

    const asked = await admin('POST', `/v1/admin/deliveries/${down.id}/skip`, { reason: 'customer closed before go-live' })
    expect(asked.status).toBe(202)
    const approved = await call(syncer.url, 'POST', `/v1/admin/requests/${asked.body.requestId}/approve`, { key: approverKey })
    expect(approved.body).toMatchObject({ state: 'APPROVED', appliedTo: [down.id] })
    expect((await deliveriesOf(database, cifId)).find((d) => d.id === down.id)).toMatchObject({
      state: 'SKIPPED',
      remarks: 'skipped by test-operator, approved by test-approver: customer closed before go-live'
    })
    expect((await syncApi(`/v1/sync/customers/${cifId}`)).body.state).toBe('PARTIAL')
    await status.waitFor(() => status.forKey(cifId).some((m) => m.value.type === 'cif.sync.delivery.skipped'))
    const again = await admin('POST', `/v1/admin/deliveries/${down.id}/skip`, { reason: 'twice' })
    expect(again.status).toBe(409)
    expect(again.body).toMatchObject({ type: problemType(syncerProblems.deliveryStateConflict), state: 'SKIPPED' })
  })

  it('uses a longer timeout on each retry', async () => {
    await simulator.systems.get('cards')!.setFault({ mode: 'slow', delayMs: 1500 })
    const { cifId } = await createCustomer()
    await eventually(() => deliveriesOf(database, cifId), allSucceeded)
    const attempts = await attemptsOf(database, cifId, 'cards')
    expect(attempts.map((a) => [a.status, a.timeout_ms])).toEqual([
      ['ERROR', 1000],
      ['SUCCESS', 2000]
    ])
    expect(attempts[0]!.remarks).toMatch(/^cards timed out after 1 s/)
    expect(attempts[0]!.duration_ms).toBeGreaterThanOrEqual(990)
  })

  it('sends the update only after the create succeeded, in version order, under retries', async () => {
    await simulator.systems.get('crm')!.setFault({ mode: 'fail-next', count: 3, status: 502 })
    const { cifId } = await createCustomer()
    for (const [version, email] of [
      [1, 'v2@example.com'],
      [2, 'v3@example.com']
    ] as const) {
      const patched = await call(cif.url, 'PATCH', `/v1/customers/${cifId}`, { body: { email }, headers: { 'if-match': `"${version}"` } })
      expect(patched.status).toBe(200)
    }
    await eventually(
      () => deliveriesOf(database, cifId),
      (rows) => rows.length === 9 && allSucceeded(rows)
    )
    const crm = simulator.systems.get('crm')!
    const calls = crm.receipts.filter((r) => r.cifId === cifId && r.status < 300)
    expect(calls.map((r) => r.method)).toEqual(['POST', 'PATCH', 'PATCH'])
    expect(crm.recordForCif(cifId)!.payload.email).toBe('v3@example.com')
    const crmAttempts = await attemptsOf(database, cifId, 'crm')
    expect(crmAttempts.map((a) => `${a.customer_version}:${a.status}`)).toEqual([
      '1:ERROR',
      '1:ERROR',
      '1:ERROR',
      '1:SUCCESS',
      '2:SUCCESS',
      '3:SUCCESS'
    ])
    expect(simulator.systems.get('core-banking')!.recordForCif(cifId)!.version).toBe(3)
  })

  it('masks the customer’s personal data in what an end system said, the name before a rename too', async () => {
    const { cifId, person } = await createCustomer()
    await eventually(() => deliveriesOf(database, cifId), allSucceeded)
    await simulator.systems
      .get('crm')!
      .setFault({ mode: 'status', status: 400, message: `invalid contact Ada Lovelace <${person.email}> +44 20 7946 0958` })
    // A rename: the end system quotes the name it held before, which the update no longer carries.
    await call(cif.url, 'PATCH', `/v1/customers/${cifId}`, { body: { lastName: 'King' }, headers: { 'if-match': '"1"' } })
    const rows = await eventually(
      () => deliveriesOf(database, cifId),
      (d) => d.some((row) => row.state === 'FAILED')
    )
    const failed = rows.find((d) => d.state === 'FAILED')!
    expect(failed.last_error).toBe('HTTP 400: {"error":"invalid contact *** *** <***> ***"}')
  })
})

describe('taking events from Kafka', () => {
  it('makes one delivery per system of a message that arrives twice', async () => {
    const { cifId } = await createCustomer()
    const first = await eventually(() => deliveriesOf(database, cifId), allSucceeded)
    // The event as the syncer stored it (jsonb: its keys in another order), so still signed by the CIF service.
    const event = await database.db.selectFrom('sync_event').select('event').where('cif_id', '=', cifId).executeTakeFirstOrThrow()
    // The duplicate, then a marker with the same key: same partition, so once the marker is kept as
    // unreadable the duplicate before it has certainly been consumed.
    const marker = `after-duplicate-${cifId}`
    const producer = createIdempotentProducer(connections().kafka, 'duplicate-test')
    await producer.send({
      messages: [
        { topic: topics.customerEvents, key: cifId, value: JSON.stringify(event.event) },
        { topic: topics.customerEvents, key: cifId, value: marker }
      ]
    })
    await producer.close()
    await eventually(
      () => database.db.selectFrom('unreadable_message').select('id').where('message_value', '=', marker).executeTakeFirst(),
      (row) => row !== undefined
    )
    expect(await deliveriesOf(database, cifId)).toEqual(first)
    expect(simulator.systems.get('crm')!.receipts.filter((r) => r.cifId === cifId)).toHaveLength(1)
    // Read as the event it is (its signature verified), not kept as unreadable: found stored, and no more.
    const kept = await database.db.selectFrom('unreadable_message').select('message_value').where('message_key', '=', cifId).execute()
    expect(kept.map((row) => row.message_value)).toEqual([marker])
  })

  it('keeps an unreadable message instead of dropping it, and goes on', async () => {
    const producer = createIdempotentProducer(connections().kafka, 'poison-test')
    const marker = `poison-${Date.now()}`
    // Signed with the CIF service's key, so that it is its shape that makes it unreadable.
    const poison = signEvent({ type: 'cif.customer.created', id: 'not-a-uuid' }, devSigningKey)
    await producer.send({ messages: [{ topic: topics.customerEvents, key: marker, value: JSON.stringify(poison) }] })
    await producer.close()
    const row = await eventually(
      () => database.db.selectFrom('unreadable_message').selectAll().where('message_key', '=', marker).executeTakeFirst(),
      (r) => r !== undefined
    )
    expect(row!.reason).toMatch(/^does not match the cif.customer.created schema/)
    const { cifId } = await createCustomer()
    await eventually(() => deliveriesOf(database, cifId), allSucceeded)
  })

  it('delivers nothing of an event the CIF service did not sign, keeps it as unreadable with the reason, and warns', async () => {
    // Well-formed events for CIF IDs the CIF service never made (its sequence is nowhere near 9 000 000 000).
    const forged = (cifId: string) => ({
      specversion: '1.0',
      id: crypto.randomUUID(),
      source: EVENT_SOURCE,
      type: customerEventTypes.created,
      subject: cifId,
      time: new Date().toISOString(),
      datacontenttype: 'application/json',
      dataschema: dataSchemaFor(customerEventTypes.created),
      customerversion: 1,
      sourcesystem: 'branch-portal',
      data: {
        cifId,
        version: 1,
        legalForm: 'PERSON',
        firstName: 'Mallory',
        lastName: 'Forger',
        dateOfBirth: '1980-01-01',
        email: 'mallory@example.com',
        sourceSystem: 'branch-portal',
        createdAt: new Date().toISOString(),
        updatedAt: new Date().toISOString()
      }
    })
    const base = 9_000_000_000 + Math.floor(Math.random() * 900_000_000)
    const [unsigned, strangers] = [cifIdFromNumber(base), cifIdFromNumber(base + 1)]
    const producer = createIdempotentProducer(connections().kafka, 'forger')
    await producer.send({
      messages: [
        { topic: topics.customerEvents, key: unsigned, value: JSON.stringify(forged(unsigned)) },
        {
          topic: topics.customerEvents,
          key: strangers,
          value: JSON.stringify(signEvent(forged(strangers), newEventKeyPair('cif-2026-01').signingKey))
        }
      ]
    })
    await producer.close()

    const reasons = {
      [unsigned]: 'not signed by the CIF service: it carries no signature',
      [strangers]: 'not signed by the CIF service: it names key "cif-2026-01", which is not a trusted key of the CIF service'
    }
    for (const [cifId, reason] of Object.entries(reasons)) {
      // Kept in the same transaction as its deliveries would have been made: once it is there, none will come.
      const kept = await eventually(
        () => database.db.selectFrom('unreadable_message').select(['reason', 'message_value']).where('message_key', '=', cifId).execute(),
        (rows) => rows.length > 0
      )
      expect(kept.map((row) => row.reason)).toEqual([reason])
      expect(JSON.parse(kept[0]!.message_value!).subject).toBe(cifId)
      expect(await database.db.selectFrom('sync_event').select('event_id').where('cif_id', '=', cifId).execute()).toEqual([])
      expect(await deliveriesOf(database, cifId)).toEqual([])
      for (const system of ['core-banking', 'crm', 'cards']) expect(simulator.systems.get(system)!.recordForCif(cifId), system).toBeUndefined()
      const sync = await syncApi(`/v1/sync/customers/${cifId}`)
      expect(sync.status).toBe(404)
      const warning = syncerWarnings.find((entry) => entry.key === cifId)
      expect(warning).toMatchObject({
        msg: 'message not signed by the CIF service: kept as unreadable, not delivered',
        topic: topics.customerEvents,
        reason
      })
      expect(JSON.stringify(warning)).not.toMatch(/Mallory|Forger|mallory@example/)
    }
    expect(simulator.systems.get('crm')!.receipts.filter((r) => r.cifId === unsigned || r.cifId === strangers)).toEqual([])
  })

  it('loses nothing and stores nothing twice when the syncer dies between storing and committing', async () => {
    await syncer.close()
    try {
      const { cifId } = await createCustomer()
      // A syncer that stores the event, then dies before committing its offset.
      const doomed = createConsumer(connections().kafka, 'cif-syncer-test', 'doomed-syncer')
      const stream = await doomed.consume({ topics: [topics.customerEvents], mode: 'committed', fallbackMode: 'earliest', maxWaitTime: 50 })
      for await (const message of stream) {
        await storeEvents(asSyncer(database.db), [message], ['core-banking', 'crm', 'cards'], devTrustedKeys)
        if (message.key === cifId) break
      }
      await stream.close()
      await doomed.close() // no commit: as if killed
      expect((await deliveriesOf(database, cifId)).map((d) => d.state)).toEqual(['PENDING', 'PENDING', 'PENDING'])
    } finally {
      syncer = await startSyncer()
    }
    const cifIds = (await database.db.selectFrom('delivery').select('cif_id').where('state', '=', 'PENDING').execute()).map((r) => r.cif_id)
    for (const cifId of new Set(cifIds)) {
      const rows = await eventually(() => deliveriesOf(database, cifId), allSucceeded)
      expect(rows).toHaveLength(3)
      expect(simulator.systems.get('cards')!.receipts.filter((r) => r.cifId === cifId && r.status === 201)).toHaveLength(1)
    }
  })
  it('records an attempt lost with a dead syncer as ERROR, saying so, and tries again', async () => {
    await syncer.close()
    let cifId: string
    try {
      cifId = (await createCustomer()).cifId
      const doomed = createConsumer(connections().kafka, 'cif-syncer-test', 'doomed-syncer')
      const stream = await doomed.consume({ topics: [topics.customerEvents], mode: 'committed', fallbackMode: 'earliest', maxWaitTime: 50 })
      for await (const message of stream) {
        await storeEvents(asSyncer(database.db), [message], ['core-banking', 'crm', 'cards'], devTrustedKeys)
        await message.commit()
        if (message.key === cifId) break
      }
      await stream.close()
      await doomed.close()
      // The doomed syncer takes the crm delivery for an attempt, then dies before recording an answer.
      const [claimed] = await claimDue(asSyncer(database.db), 'crm', 1, [1])
      expect(claimed!.cif_id).toBe(cifId)
      await new Promise((r) => setTimeout(r, 20))
      expect(await recoverExpiredLeases(asSyncer(database.db))).toBe(1)
    } finally {
      syncer = await startSyncer()
    }
    await eventually(() => deliveriesOf(database, cifId), allSucceeded)
    const attempts = await attemptsOf(database, cifId, 'crm')
    expect(attempts.map((a) => [a.attempt_number, a.status])).toEqual([
      [1, 'ERROR'],
      [2, 'SUCCESS']
    ])
    expect(attempts[0]!.remarks).toBe('the syncer stopped or stalled during this attempt (syncer down); the delivery is tried again')
  })
})

describe('callback API', () => {
  it('shows a source system only its own customers, and its status changes in order', async () => {
    const { cifId } = await createCustomer()
    await eventually(() => deliveriesOf(database, cifId), allSucceeded)
    const other = await syncApi(`/v1/sync/customers/${cifId}`, keys.onboardingApp)
    expect(other.status).toBe(404)
    expect(other.body.type).toBe(problemType(syncerProblems.customerNotFound))
    expect((await syncApi(`/v1/sync/customers/${cifId}`, 'no-such-key-anywhere')).status).toBe(401)
    expect((await syncApi(`/v1/sync/customers/${cifId}`, operatorKey)).status).toBe(401)
    expect((await admin('GET', `/v1/admin/deliveries?cifId=${cifId}`)).body.deliveries).toHaveLength(3)
    expect((await call(syncer.url, 'GET', '/v1/admin/deliveries', { key: keys.branchPortal })).status).toBe(401)

    // Page through the feed until this customer's IN_SYNC: its statuses are there, in commit order.
    const seen: Record<string, any>[] = []
    let cursor: string | undefined
    const mine = await eventually(
      async () => {
        const page = await syncApi(`/v1/sync/updates?limit=500${cursor ? `&after=${cursor}` : ''}`)
        expect(page.status).toBe(200)
        seen.push(...page.body.updates)
        cursor = page.body.next
        return seen.filter((u) => u.cifId === cifId).map((u) => u.kind)
      },
      (kinds) => kinds.includes('IN_SYNC')
    )
    expect(mine).toEqual(['DELIVERED', 'DELIVERED', 'DELIVERED', 'IN_SYNC'])
    const { body: foreign } = await call(cif.url, 'POST', '/v1/customers', { body: newPerson(), key: keys.onboardingApp })
    await eventually(() => deliveriesOf(database, foreign.cifId), allSucceeded)
    const after = await syncApi(`/v1/sync/updates?after=${cursor}`)
    expect(after.body.updates.filter((u: { cifId: string }) => u.cifId === foreign.cifId)).toEqual([])
    const theirs = await syncApi(`/v1/sync/updates?limit=500`, keys.onboardingApp)
    expect(theirs.body.updates.every((u: { cifId: string }) => u.cifId !== cifId)).toBe(true)

    expect((await syncApi('/v1/sync/updates?after=nope')).status).toBe(400)
    expect((await syncApi('/v1/sync/updates?limit=0')).status).toBe(400)
  })

  it('lists attempts and counts for operators', async () => {
    const { cifId } = await createCustomer()
    await eventually(() => deliveriesOf(database, cifId), allSucceeded)
    const attempts = await admin('GET', `/v1/admin/attempts?cifId=${cifId}&endSystem=crm&status=SUCCESS`)
    expect(attempts.body.attempts).toHaveLength(1)
    expect(attempts.body.attempts[0]).toMatchObject({ cifId, endSystem: 'crm', status: 'SUCCESS', httpStatus: 201, attemptNumber: 1 })
    const summary = await admin('GET', '/v1/admin/summary')
    expect(
      summary.body.counts.find((c: { endSystem: string; state: string }) => c.endSystem === 'crm' && c.state === 'SUCCESS').count
    ).toBeGreaterThan(0)
    const badFilter = await admin('GET', '/v1/admin/deliveries?state=LOST')
    expect(badFilter.status).toBe(400)
    expect(badFilter.body.errors[0].parameter).toBe('state')
  })
})

describe('the status topic', () => {
  it('publishes only messages that match the JSON Schema of their type, of every kind this file caused', async () => {
    const types = new Set(status.messages.map((m) => m.value.type))
    for (const type of ['succeeded', 'retrying', 'failed', 'skipped'].map((t) => `cif.sync.delivery.${t}`).concat('cif.sync.customer.in-sync')) {
      expect(types, type).toContain(type)
    }
    for (const message of status.messages) {
      expect(await eventSchemaErrors(message.value), JSON.stringify(message.value)).toEqual([])
      expect(readWithCloudEventsSdk(message)).toEqual({ event: { ...message.value, partitionkey: message.key }, ceHeaders: [] })
    }
  })
})
