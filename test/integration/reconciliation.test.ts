import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CifService } from '../../src/cif/service.ts'
import { loadConfig } from '../../src/platform/config.ts'
import { type DatabaseHandle, openDatabase } from '../../src/platform/database/index.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import { createLogger } from '../../src/platform/logger.ts'
import type { Simulator } from '../../src/simulator/service.ts'
import { type EndSystemConfig, loadEndSystems, parseEndSystems } from '../../src/syncer/delivery/end-systems-config.ts'
import { Reconciler } from '../../src/syncer/reconciliation/reconciler.ts'
import { createRun } from '../../src/syncer/reconciliation/run-store.ts'
import { type Syncer, startSyncer } from '../../src/syncer/service.ts'
import { asSyncer, type TestDatabase } from '../support/database.ts'
import { call, connections, keys, newPerson, startTestCifService, withApprover } from './helpers.ts'
import { CORE_BANKING_TOKEN, deliveriesOf, eventually, operatorKey, startTestSimulator, testRetry } from './syncer-helpers.ts'

let cif: CifService
let simulator: Simulator
let syncer: Syncer
let database: DatabaseHandle<TestDatabase>
const log = createLogger(process.env.LOG_LEVEL ?? 'warn', 'reconciliation-test')

/** A fourth system, as a newcomer adds it to the end systems file: the simulator's lending system. */
const lendingYaml = (url: string) => `
endSystems:
  - name: lending
    baseUrl: ${url}
    reconcile: { ratePerSecond: 200 }
    operations:
      create: { method: POST, path: /borrowers, externalId: borrowerId, body: '{"cif": cifId, "name": customer.lastName, "version": version}' }
      update: { method: PUT, path: '/borrowers/{externalId}', body: '{"cif": cifId, "name": customer.lastName, "version": version}' }
`

/** The shipped end systems, pointed at this file's simulator, fast enough for a test (and `extra` systems). */
function endSystems(extra: EndSystemConfig[] = []): EndSystemConfig[] {
  const url = (name: string) => simulator.systems.get(name)!.url
  const env = { CORE_BANKING_URL: url('core-banking'), CRM_URL: url('crm'), CARDS_URL: url('cards'), CORE_BANKING_TOKEN }
  return [...loadEndSystems('config/end-systems.yaml', env), ...extra].map((system) => ({
    ...system,
    retry: testRetry,
    circuitBreaker: { consecutiveFailures: 50, halfOpenAfterMs: 1000 },
    readBackRatePerSecond: Math.max(system.readBackRatePerSecond, 2000)
  }))
}

async function startTheSyncer(systems: EndSystemConfig[]): Promise<Syncer> {
  const config = loadConfig({
    SYNCER_PORT: '0',
    SYNCER_GROUP_ID: 'cif-syncer-test',
    SYNCER_POLL_INTERVAL_MS: '50',
    OUTBOX_POLL_INTERVAL_MS: '100',
    CIF_SOURCE_SYSTEMS: `branch-portal=${apiKeyHash(keys.branchPortal)},onboarding-app=${apiKeyHash(keys.onboardingApp)}`,
    ...withApprover
  })
  return startSyncer(config, connections(), log, systems)
}

const admin = (method: string, path: string, body?: unknown) => call(syncer.url, method, path, { key: operatorKey, body })
const drift = (system: string, body: unknown) => call(simulator.url, 'POST', `/systems/${system}/drift`, { body })

async function createCustomer(): Promise<string> {
  const created = await call(cif.url, 'POST', '/v1/customers', { body: newPerson() })
  expect(created.status).toBe(201)
  return created.body.cifId
}

const allSucceeded = (rows: { state: string }[]) => rows.length > 0 && rows.every((row) => row.state === 'SUCCESS')

async function delivered(cifId: string, systems = 3): Promise<void> {
  await eventually(
    () => deliveriesOf(database, cifId),
    (rows) => allSucceeded(rows) && new Set(rows.map((r) => r.end_system)).size === systems,
    30_000
  )
}

async function runDone(runId: string, timeoutMs = 180_000): Promise<any> {
  return (
    await eventually(
      () => admin('GET', `/v1/admin/runs/${runId}`),
      (r) => r.body.state === 'DONE',
      timeoutMs
    )
  ).body
}

async function findings(runId: string): Promise<any[]> {
  const all: any[] = []
  for (let after = '0'; ; ) {
    const page = (await admin('GET', `/v1/admin/runs/${runId}/findings?limit=500&after=${after}`)).body.findings
    all.push(...page)
    if (page.length < 500) return all
    after = page.at(-1).findingId
  }
}

beforeAll(async () => {
  database = openDatabase<TestDatabase>(connections().databaseUrl, { maxConnections: 4 })
  cif = await startTestCifService()
  simulator = await startTestSimulator()
  syncer = await startTheSyncer(endSystems())
})
afterAll(async () => {
  await syncer?.close()
  await simulator?.close()
  await cif?.close()
  await database?.close()
})

describe('reconciliation finds drift in the end systems and repairs it', () => {
  it('finds each situation, with the differing fields masked, tells the owner, and repairs each with a normal delivery', async () => {
    const [inSync, deleted, altered, stale, unlinked] = [
      await createCustomer(),
      await createCustomer(),
      await createCustomer(),
      await createCustomer(),
      await createCustomer()
    ]
    for (const cifId of [inSync, deleted, altered, stale, unlinked]) await delivered(cifId)
    // A create the system answers 201 and loses.
    await drift('cards', { kind: 'lose-creates', count: 1 })
    const lost = await createCustomer()
    await delivered(lost)
    // Version 2 of one customer; then cards is made to hold version 1 again (a restore from an old backup).
    const read = await call(cif.url, 'GET', `/v1/customers/${stale}`, { key: keys.branchPortal })
    const changed = await call(cif.url, 'PATCH', `/v1/customers/${stale}`, {
      key: keys.branchPortal,
      headers: { 'if-match': read.headers.get('etag')! },
      body: { email: 'new.address@example.com' }
    })
    expect(changed.status).toBe(200)
    await eventually(
      () => deliveriesOf(database, stale),
      (rows) => rows.filter((r) => r.customer_version === 2 && r.state === 'SUCCESS').length === 3
    )
    expect((await drift('cards', { kind: 'alter', cifId: stale, fields: { version: 1 } })).status).toBe(200)
    expect((await drift('crm', { kind: 'delete', cifId: deleted })).status).toBe(200)
    const person = simulator.systems.get('core-banking')!.recordForCif(altered)!.payload as any
    expect((await drift('core-banking', { kind: 'alter', cifId: altered, fields: { name: { ...person.name, last: 'Hacked' } } })).status).toBe(200)
    await database.db.deleteFrom('customer_xref').where('cif_id', '=', unlinked).where('end_system', '=', 'core-banking').execute()
    const orphan = '99999999990'
    expect((await drift('crm', { kind: 'orphan', cifId: orphan, fields: { displayName: 'Nobody Known' } })).status).toBe(200)

    const started = await admin('POST', '/v1/admin/reconciliations', {})
    expect(started.status).toBe(202)
    expect(started.body).toMatchObject({ kind: 'RECONCILE', state: 'RUNNING', endSystems: ['core-banking', 'crm', 'cards'] })
    const run = await runDone(started.body.runId)
    const mine = new Set([inSync, deleted, altered, stale, unlinked, lost, orphan])
    const found = (await findings(run.runId)).filter((f) => mine.has(f.cifId))
    const situationOf = (cifId: string, system: string) => found.find((f) => f.cifId === cifId && f.endSystem === system)?.situation ?? 'IN_SYNC'
    expect(
      Object.fromEntries(
        [...mine].flatMap((cifId) => ['core-banking', 'crm', 'cards'].map((system) => [`${cifId}:${system}`, situationOf(cifId, system)]))
      )
    ).toEqual(
      Object.fromEntries(
        [...mine].flatMap((cifId) =>
          ['core-banking', 'crm', 'cards'].map((system) => {
            const expected: Record<string, string> = {
              [`${deleted}:crm`]: 'MISSING',
              [`${altered}:core-banking`]: 'ALTERED',
              [`${stale}:cards`]: 'STALE',
              [`${unlinked}:core-banking`]: 'UNLINKED',
              [`${lost}:cards`]: 'MISSING',
              [`${orphan}:crm`]: 'ORPHAN'
            }
            return [`${cifId}:${system}`, expected[`${cifId}:${system}`] ?? 'IN_SYNC']
          })
        )
      )
    )
    const alteredFinding = found.find((f) => f.situation === 'ALTERED')
    // Both masked: the customer's own name as masking.ts masks it, and what was typed in by hand (it could be
    // anyone's personal data) never shown.
    expect(alteredFinding.differences).toEqual([{ field: 'name.last', expected: '"***"', held: '"***"' }])
    expect(found.find((f) => f.situation === 'STALE')).toMatchObject({ heldVersion: 1, customerVersion: 2 })
    expect(run.counts.MISSING).toBeGreaterThanOrEqual(2)
    expect(run.counts.ORPHAN).toBeGreaterThanOrEqual(1)
    // The owner is told of its customers' drift, through the feed (and so on cif.sync.status).
    const feed = await call(syncer.url, 'GET', '/v1/sync/updates?limit=500', { key: keys.branchPortal })
    expect(feed.status).toBe(200)

    // Repair each finding of this file's customers: normal deliveries, remarks naming the run.
    for (const finding of found) {
      const repaired = await admin('POST', `/v1/admin/findings/${finding.findingId}/repair`, { reason: 'drift found in the test' })
      expect(repaired.status).toBe(200)
      expect(repaired.body.deliveryIds).toHaveLength(finding.situation === 'ORPHAN' ? 0 : 1)
    }
    const again = await admin('POST', `/v1/admin/findings/${alteredFinding.findingId}/repair`, { reason: 'twice' })
    expect(again.body.deliveryIds, 'a finding is repaired once').toEqual([])
    for (const cifId of [deleted, altered, stale, unlinked, lost]) await delivered(cifId)
    const repairs = await database.db.selectFrom('delivery').selectAll().where('reconciliation_run_id', '=', run.runId).execute()
    expect(repairs.map((d) => [d.cif_id, d.end_system, d.operation, d.state]).sort()).toEqual(
      [
        [deleted, 'crm', 'create', 'SUCCESS'],
        [altered, 'core-banking', 'update', 'SUCCESS'],
        [stale, 'cards', 'update', 'SUCCESS'],
        [unlinked, 'core-banking', 'create', 'SUCCESS'],
        [lost, 'cards', 'create', 'SUCCESS']
      ].sort()
    )
    const attempt = await database.db
      .selectFrom('delivery_attempt')
      .selectAll()
      .where('delivery_id', '=', repairs.find((d) => d.cif_id === altered)!.id)
      .executeTakeFirstOrThrow()
    expect(attempt.remarks).toContain(`reconciliation run ${run.runId} found ALTERED (differing: name.last)`)
    expect(attempt.remarks).toContain('asked by test-operator: drift found in the test')
    expect((simulator.systems.get('core-banking')!.recordForCif(altered)!.payload as any).name.last).toBe('Lovelace')

    // Read back again: every pair of these customers is in sync now.
    const second = await admin('POST', '/v1/admin/reconciliations', { cifIds: [inSync, deleted, altered, stale, unlinked, lost] })
    const after = await runDone(second.body.runId)
    expect(after.counts).toEqual({ IN_SYNC: 18 })
    expect(after.errors).toBe(0)
  }, 300_000)

  it('resumes a run whose worker stopped halfway: another syncer takes it up where its last page ended, finding nothing twice', async () => {
    const customers = [await createCustomer(), await createCustomer(), await createCustomer(), await createCustomer()]
    for (const cifId of customers) await delivered(cifId)
    await drift('crm', { kind: 'delete', cifId: customers[3]! })
    const db = asSyncer(database.db)
    const run = await createRun(db, { kind: 'RECONCILE', endSystems: ['crm'], cifIds: customers, requestedBy: 'test', leaseMs: 3000 })
    // This worker does one page of two customers, then is gone (a crash: its lease is left to run out).
    const first = new Reconciler({ db, endSystems: endSystems(), log, leaseMs: 3000, pageSize: 2 })
    let pages = 0
    await first.work(run, () => {
      if (++pages === 1) void first.stop()
    })
    const halfway = await db.selectFrom('reconciliation_run').selectAll().where('id', '=', run.id).executeTakeFirstOrThrow()
    expect(halfway).toMatchObject({ state: 'RUNNING', done: 2, counts: { IN_SYNC: 2 } })
    // The syncer's own worker takes it up once the lease has run out.
    const done = await runDone(run.id, 30_000)
    expect(done.counts).toEqual({ IN_SYNC: 3, MISSING: 1 })
    expect(done.progress).toMatchObject({ done: 4, total: 4 })
    expect(await findings(run.id)).toHaveLength(1)
  }, 120_000)
})

describe('backfill of a new end system', () => {
  it("delivers each existing customer's latest version to a system added to the file, with progress", async () => {
    const customers = [await createCustomer(), await createCustomer(), await createCustomer()]
    for (const cifId of customers) await delivered(cifId)
    await syncer.close()
    const lending = parseEndSystems(lendingYaml(simulator.systems.get('lending')!.url), 'lending.yaml')
    syncer = await startTheSyncer(endSystems(lending))
    const started = await admin('POST', '/v1/admin/backfills', { endSystem: 'lending' })
    expect(started.status).toBe(202)
    const total = started.body.progress.total as number
    expect(total).toBeGreaterThanOrEqual(customers.length)
    const done = await eventually(
      () => admin('GET', `/v1/admin/runs/${started.body.runId}`),
      (r) => r.body.state === 'DONE' && r.body.progress.done === total,
      240_000
    )
    expect(done.body.progress).toMatchObject({ done: total, total, secondsLeft: 0 })
    expect(done.body.deliveries).toEqual({ SUCCESS: total })
    expect(simulator.systems.get('lending')!.records.size).toBe(total)
    for (const cifId of customers) expect(simulator.systems.get('lending')!.recordForCif(cifId)).toBeDefined()
    // Asked again, there is nothing left to deliver.
    const again = await admin('POST', '/v1/admin/backfills', { endSystem: 'lending' })
    expect(again.body.progress.total).toBe(0)
    const unknown = await admin('POST', '/v1/admin/backfills', { endSystem: 'ledger' })
    expect(unknown.status).toBe(400)
    expect(unknown.body.errors).toEqual([{ pointer: '/endSystem', detail: expect.stringContaining('not a configured end system') }])
  }, 300_000)
})
