import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { CifService } from '../../src/cif/service.ts'
import { topics } from '../../src/contracts/topics.ts'
import { type DatabaseHandle, openDatabase } from '../../src/platform/database/index.ts'
import type { Simulator } from '../../src/simulator/service.ts'
import type { EndSystemConfig } from '../../src/syncer/delivery/end-systems-config.ts'
import type { Syncer } from '../../src/syncer/service.ts'
import type { TestDatabase } from '../support/database.ts'
import { call, connections, eventSchemaErrors, keys, newPerson, startTestCifService, TopicReader } from './helpers.ts'
import { attemptsOf, deliveriesOf, eventually, operatorKey, startTestSimulator, startTestSyncer } from './syncer-helpers.ts'

// Pausing, retiring and coalescing on the whole stack: the CIF service, Kafka, the syncer and the simulated
// end systems, cards taking the full record (coalesce: true).

let cif: CifService
let simulator: Simulator
let syncer: Syncer
let database: DatabaseHandle<TestDatabase>
let status: TopicReader

const coalescingCards = (systems: EndSystemConfig[]) => systems.map((s) => (s.name === 'cards' ? { ...s, coalesce: true } : s))
// Retries enough to outlast the outages here: a create must not go FAILED while its system is down. A
// deadline of a second, so that a pause makes a version overdue.
const startSyncer = (systems = coalescingCards) =>
  startTestSyncer(simulator, { retries: 100 }, { systems, env: { SYNCER_IN_SYNC_DEADLINE_MS: '1000' } })

beforeAll(async () => {
  database = openDatabase<TestDatabase>(connections().databaseUrl, { maxConnections: 4 })
  cif = await startTestCifService()
  simulator = await startTestSimulator()
  syncer = await startSyncer()
  status = await TopicReader.open(connections().kafka, topics.syncStatus)
  // Earlier test files left customers on the topic: delivered first, so that what follows concerns this file's.
  const { cifId } = await createCustomer()
  await eventually(() => deliveriesOf(database, cifId), settled(['SUCCESS']), 60_000)
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

async function createCustomer(): Promise<{ cifId: string }> {
  const created = await call(cif.url, 'POST', '/v1/customers', { body: newPerson() })
  expect(created.status).toBe(201)
  return { cifId: created.body.cifId }
}

/** Versions 2 to `to` of the customer, one change each. */
async function changeTo(cifId: string, to: number): Promise<void> {
  for (let version = 1; version < to; version++) {
    const patched = await call(cif.url, 'PATCH', `/v1/customers/${cifId}`, {
      body: { email: `v${version + 1}@example.com` },
      headers: { 'if-match': `"${version}"` }
    })
    expect(patched.status).toBe(200)
  }
}

const settled = (states: string[]) => (rows: { state: string }[]) => rows.length > 0 && rows.every((row) => states.includes(row.state))
const admin = (method: string, path: string, body?: unknown) => call(syncer.url, method, path, { key: operatorKey, body })
const of = (system: string) => (rows: Awaited<ReturnType<typeof deliveriesOf>>) => rows.filter((d) => d.end_system === system)

describe('coalescing under an outage', () => {
  it('sends cards only version 1 (the create) and version 10 of versions 1-10 queued while it was down; the others get all ten', async () => {
    const cards = simulator.systems.get('cards')!
    await cards.setFault({ mode: 'down' })
    const { cifId } = await createCustomer()
    await changeTo(cifId, 10)
    await eventually(
      () => deliveriesOf(database, cifId),
      (rows) => of('cards')(rows).length === 10
    )
    await cards.setFault({ mode: 'none' })
    const rows = await eventually(
      () => deliveriesOf(database, cifId),
      (all) => all.length === 30 && settled(['SUCCESS', 'SUPERSEDED'])(all) && of('cards')(all).at(-1)!.state === 'SUCCESS'
    )
    expect(of('cards')(rows).map((d) => d.state)).toEqual(['SUCCESS', ...Array(8).fill('SUPERSEDED'), 'SUCCESS'])
    for (const d of of('cards')(rows).filter((row) => row.state === 'SUPERSEDED')) {
      expect(d.attempts).toBe(0)
      expect(d.remarks).toMatch(/^superseded by version (\d+) \(delivery \d+\): cards takes the full record/)
      expect(Number(/version (\d+)/.exec(d.remarks!)![1])).toBeGreaterThan(d.customer_version)
    }
    // What reached cards: the create of version 1, then version 10, nothing between.
    const sent = new Map(of('cards')(rows).map((d) => [`${d.event_id}:cards`, d.customer_version]))
    const received = cards.receipts.filter((r) => r.cifId === cifId && r.status < 300).map((r) => [r.method, sent.get(r.idempotencyKey!)])
    expect(received).toEqual([
      ['POST', 1],
      ['PUT', 10]
    ])
    expect(cards.recordForCif(cifId)!.version).toBe(10)
    for (const other of ['core-banking', 'crm']) expect(of(other)(rows).map((d) => d.state)).toEqual(Array(10).fill('SUCCESS'))
    // Told to the owner, each in its type's schema, and the newest version is in sync.
    const told = await status.waitFor(() => status.forKey(cifId).filter((m) => m.value.type === 'cif.sync.delivery.superseded').length === 8, 30_000)
    for (const message of told.filter((m) => m.key === cifId)) expect(await eventSchemaErrors(message.value)).toEqual([])
    const sync = await call(syncer.url, 'GET', `/v1/sync/customers/${cifId}`, { key: keys.branchPortal })
    expect(sync.body).toMatchObject({ latestVersion: 10, state: 'IN_SYNC' })
  })
})

describe('pausing an end system', () => {
  it('holds crm’s deliveries unattempted while the others go on, and sends them in order on resume', async () => {
    const paused = await admin('POST', '/v1/admin/end-systems/crm/pause', { reason: 'crm upgrade' })
    expect(paused.status).toBe(200)
    const { cifId } = await createCustomer()
    await changeTo(cifId, 2)
    const rows = await eventually(
      () => deliveriesOf(database, cifId),
      (all) => all.length === 6 && settled(['SUCCESS'])(all.filter((d) => d.end_system !== 'crm'))
    )
    // Long enough for a claim or two of every lane.
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(of('crm')(await deliveriesOf(database, cifId)).map((d) => [d.state, d.attempts, d.remarks])).toEqual([
      ['PENDING', 0, 'paused by test-operator: crm upgrade'],
      ['PENDING', 0, 'paused by test-operator: crm upgrade']
    ])
    expect(rows.filter((d) => d.end_system !== 'crm')).toHaveLength(4)
    expect(simulator.systems.get('crm')!.receipts.filter((r) => r.cifId === cifId)).toEqual([])
    expect((await admin('GET', '/v1/admin/summary')).body.paused).toEqual([paused.body.paused])
    // Past the deadline while crm waits: the owner is told once per version, naming crm.
    await status.waitFor(() => status.forKey(cifId).filter((m) => m.value.type === 'cif.sync.customer.overdue').length === 2, 15_000)
    const overdue = status.forKey(cifId).filter((m) => m.value.type === 'cif.sync.customer.overdue')
    // On a busy machine the other systems may not have had it yet either when it was told.
    expect(
      overdue.map((m) => [m.value.data.customerVersion, m.value.data.waitingFor.includes('crm'), m.value.data.deadlineMs]).sort((a, b) => a[0] - b[0])
    ).toEqual([
      [1, true, 1000],
      [2, true, 1000]
    ])
    for (const message of overdue) expect(await eventSchemaErrors(message.value)).toEqual([])
    expect((await admin('GET', '/v1/admin/summary')).body.overdue.count).toBeGreaterThanOrEqual(2)

    expect((await admin('POST', '/v1/admin/end-systems/crm/resume', { reason: 'upgrade done' })).status).toBe(200)
    await eventually(() => deliveriesOf(database, cifId), settled(['SUCCESS']))
    const attempts = await attemptsOf(database, cifId, 'crm')
    expect(attempts.map((a) => [a.customer_version, a.status])).toEqual([
      [1, 'SUCCESS'],
      [2, 'SUCCESS']
    ])
    expect(attempts[0]!.remarks).toContain('waited while crm was paused; resumed by test-operator: upgrade done')
  })
})

describe('retiring an end system removed from the configuration', () => {
  it('marks its open deliveries RETIRED at start, tells the owner, and the customer is in sync in the systems left', async () => {
    await simulator.systems.get('crm')!.setFault({ mode: 'down' })
    const { cifId } = await createCustomer()
    await eventually(
      () => deliveriesOf(database, cifId),
      (all) => all.length === 3 && settled(['SUCCESS'])(all.filter((d) => d.end_system !== 'crm'))
    )
    await syncer.close()
    syncer = await startSyncer((systems) => coalescingCards(systems).filter((s) => s.name !== 'crm'))
    try {
      const [crm] = of('crm')(
        await eventually(
          () => deliveriesOf(database, cifId),
          (all) => of('crm')(all)[0]!.state !== 'PENDING' && of('crm')(all)[0]!.state !== 'RETRY_SCHEDULED'
        )
      )
      expect(crm).toMatchObject({ state: 'RETIRED', remarks: 'retired: crm is no longer in the end systems file, so this was never sent' })
      await status.waitFor(() => status.forKey(cifId).some((m) => m.value.type === 'cif.sync.customer.in-sync'), 30_000)
      const types = status.forKey(cifId).map((m) => m.value.type)
      expect(types).toContain('cif.sync.delivery.retired')
      expect(types.indexOf('cif.sync.delivery.retired')).toBeLessThan(types.indexOf('cif.sync.customer.in-sync'))
      const sync = await call(syncer.url, 'GET', `/v1/sync/customers/${cifId}`, { key: keys.branchPortal })
      expect(sync.body.state).toBe('IN_SYNC')
    } finally {
      await syncer.close()
      syncer = await startSyncer()
    }
  })
})
