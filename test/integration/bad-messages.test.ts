import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CifService } from '../../src/cif/service.ts'
import { MAX_CUSTOMER_EVENT_BYTES } from '../../src/contracts/customer-events.ts'
import { type DatabaseHandle, openDatabase } from '../../src/platform/database/index.ts'
import { redactPaths } from '../../src/platform/logger.ts'
import type { Simulator } from '../../src/simulator/service.ts'
import type { Syncer } from '../../src/syncer/service.ts'
import { type BadMessageKind, type ProducedBadMessage, produceBadMessage } from '../support/bad-messages.ts'
import type { TestDatabase } from '../support/database.ts'
import { call, connections, newPerson, startTestCifService } from './helpers.ts'
import { deliveriesOf, eventually, operatorKey, startTestSimulator, startTestSyncer } from './syncer-helpers.ts'

// Bad messages produced straight onto cif.customer.events of the real broker, each handled as
// docs/reliability.md ("Bad messages on the topic") says, and none holding up the customer's partition.

let cif: CifService
let simulator: Simulator
let syncer: Syncer
let database: DatabaseHandle<TestDatabase>
const warnings: Record<string, any>[] = []

const SYSTEMS = ['cards', 'core-banking', 'crm']

beforeAll(async () => {
  database = openDatabase<TestDatabase>(connections().databaseUrl, { maxConnections: 4 })
  cif = await startTestCifService()
  simulator = await startTestSimulator()
  const log = pino(
    { name: 'syncer-test', level: 'warn', redact: { paths: redactPaths } },
    new Writable({
      write: (chunk, _encoding, done) => {
        warnings.push(JSON.parse(String(chunk)))
        done()
      }
    })
  )
  syncer = await startTestSyncer(simulator, {}, { log })
})
afterAll(async () => {
  await syncer?.close()
  await simulator?.close()
  await cif?.close()
  await database?.close()
})

const stack = () => ({ infrastructure: { kafka: connections().kafka }, database })
const states = (cifId: string) => deliveriesOf(database, cifId).then((rows) => rows.map((d) => `${d.end_system}:${d.customer_version}:${d.state}`))
const allIn = (cifId: string, versions: number[]) => async () => {
  const rows = await states(cifId)
  return versions.every((v) => SYSTEMS.every((s) => rows.includes(`${s}:${v}:SUCCESS`)))
}
const until = (probe: () => Promise<boolean>, timeoutMs?: number) => eventually(probe, (done) => done, timeoutMs)
const receipts = (system: string, cifId: string) => simulator.systems.get(system)!.receipts.filter((r) => r.cifId === cifId)
/** The versions an end system was sent, in the order it received them (each request names its event in its Idempotency-Key). */
async function versionsSent(system: string, cifId: string): Promise<number[]> {
  const events = await database.db.selectFrom('sync_event').select(['event_id', 'customer_version']).where('cif_id', '=', cifId).execute()
  const versionOf = new Map(events.map((e) => [e.event_id, e.customer_version]))
  // A repeat of a request (a retry after a timeout on a busy machine) is an idempotent replay, not a second record.
  const keys = [...new Set(receipts(system, cifId).map((r) => r.idempotencyKey ?? ''))]
  return keys.map((key) => versionOf.get(key.split(':')[0] ?? '') ?? -1)
}

async function createCustomer(): Promise<string> {
  const created = await call(cif.url, 'POST', '/v1/customers', { body: newPerson() })
  expect(created.status).toBe(201)
  return created.body.cifId
}
async function change(cifId: string, version: number): Promise<void> {
  const changed = await call(cif.url, 'PATCH', `/v1/customers/${cifId}`, {
    body: { email: `v${version + 1}@example.com` },
    headers: { 'if-match': `"${version}"` }
  })
  expect(changed.status).toBe(200)
}

describe('bad messages on cif.customer.events', () => {
  it('handles each as documented and none stops the partition: the next change of the customer goes at once', async () => {
    const cifId = await createCustomer()
    await change(cifId, 1)
    await until(allIn(cifId, [1, 2]), 30_000)

    const kinds: BadMessageKind[] = [
      'duplicate',
      'older-version',
      'no-key',
      'no-headers',
      'not-json',
      'oversize',
      'wrong-signature',
      'tombstone',
      'unknown-cif-unsigned',
      'unknown-cif-signed-update'
    ]
    const produced = new Map<BadMessageKind, ProducedBadMessage>()
    for (const kind of kinds) produced.set(kind, await produceBadMessage(stack(), kind, { cifId }))

    // A good event behind them all on the customer's partition is delivered promptly: well within the 30 s
    // after which the intake's watchdog would replace a consumer that made no progress (which would hide a
    // partition stopped by a message), on a machine busy enough to take seconds over a delivery.
    await change(cifId, 2)
    await until(allIn(cifId, [3]), 20_000)

    // Deduplicated, and nothing older went over the newer: each system got each version once, in order.
    for (const system of SYSTEMS) {
      expect(await versionsSent(system, cifId), system).toEqual([1, 2, 3])
    }
    expect(await states(cifId)).toHaveLength(9)

    // Kept as unreadable, each saying why, and listed for a person in the admin API (never the content).
    const listed = await call(syncer.url, 'GET', `/v1/admin/unreadable-messages?key=${cifId}`, { key: operatorKey })
    expect(listed.status).toBe(200)
    expect(listed.body.messages.map((m: { reason: string }) => m.reason)).toEqual([
      expect.stringMatching(new RegExp(`^version 1 of customer ${cifId} is already stored as event [0-9a-f-]{36}: one version, one event$`)),
      'not JSON',
      expect.stringMatching(new RegExp(`^larger than a customer event can be \\([0-9]+ bytes, at most ${MAX_CUSTOMER_EVENT_BYTES}\\): not read$`)),
      expect.stringMatching(/^not signed by the CIF service: its signature does not match it/),
      'a tombstone (no value): not a customer event'
    ])
    expect(JSON.stringify(listed.body)).not.toMatch(/example\.(com|net)/)
    // Each with a warning in the log: where, and why; never the content.
    const warned = warnings.filter((w) => w.key === cifId)
    expect(warned.map((w) => w.reason)).toEqual(listed.body.messages.map((m: { reason: string }) => m.reason))
    expect(JSON.stringify(warned)).not.toMatch(/example\.(com|net)/)

    // An unknown CIF ID: unsigned, kept as unreadable; signed (the CIF service's word), stored, but an update of
    // a record no system has: FAILED without calling any, for a person to look at.
    const unsigned = produced.get('unknown-cif-unsigned')!.cifId
    expect((await call(syncer.url, 'GET', `/v1/admin/unreadable-messages?key=${unsigned}`, { key: operatorKey })).body.messages).toEqual([
      expect.objectContaining({ reason: 'not signed by the CIF service: it carries no signature' })
    ])
    const signed = produced.get('unknown-cif-signed-update')!.cifId
    const failed = await eventually(
      () => deliveriesOf(database, signed),
      (rows) => rows.length === 3 && rows.every((d) => d.state === 'FAILED')
    )
    expect(new Set(failed.map((d) => d.last_error))).toEqual(new Set(['not called: no record id for this customer in this system']))
    for (const system of SYSTEMS) expect(receipts(system, unsigned).concat(receipts(system, signed)), system).toEqual([])
  })

  it('holds a version after a gap, visibly, until the missing one arrives (from any partition), then sends both in order', async () => {
    const gap = await produceBadMessage(stack(), 'version-gap')
    const cifId = gap.madeUp!
    await until(allIn(cifId, [1, 2]), 30_000)
    const held = await eventually(
      () => call(syncer.url, 'GET', `/v1/admin/deliveries?cifId=${cifId}&state=BLOCKED`, { key: operatorKey }),
      (answer) => answer.body.deliveries.length === 3
    )
    expect(held.body.deliveries.map((d: Record<string, unknown>) => [d.customerVersion, d.remarks])).toEqual(
      SYSTEMS.map(() => [
        4,
        'held: version 3 of the customer has not reached the syncer, though an earlier one has (a gap in the versions); it goes after version 3'
      ])
    )
    const summary = await call(syncer.url, 'GET', '/v1/admin/summary', { key: operatorKey })
    expect(summary.status).toBe(200)
    for (const system of SYSTEMS) expect(await versionsSent(system, cifId), system).toEqual([1, 2])

    await gap.fillGap!()
    await until(allIn(cifId, [3, 4]), 20_000)
    for (const system of SYSTEMS) {
      expect(await versionsSent(system, cifId), system).toEqual([1, 2, 3, 4])
    }
    expect(simulator.systems.get('core-banking')!.recordForCif(cifId)!.version).toBe(4)
  })
})
