import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/platform/config.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { reconcileCommand } from '../../src/roles/reconcile.ts'
import type { Fault } from '../../src/simulator/end-system-simulator.ts'
import { type Simulator, startSimulator } from '../../src/simulator/service.ts'
import { AttemptRecorder } from '../../src/syncer/delivery/attempt-recorder.ts'
import { EndSystemClient } from '../../src/syncer/delivery/end-system-client.ts'
import { type EndSystemConfig, loadEndSystems } from '../../src/syncer/delivery/end-systems-config.ts'
import { DeliveryLane } from '../../src/syncer/delivery/lane.ts'
import { EndSystemReader } from '../../src/syncer/reconciliation/end-system-reader.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { attemptsOf, deliveriesOf, laneTelemetry, newCifId, newEndSystem, storeVersions } from './fixtures.ts'

// Each misbehaviour as the simulator answers it over HTTP (PUT /systems/{name}/fault), and what a lane makes
// of it: the attempts it records, where the delivery ends, and what the system holds afterwards.
let database: OwnDatabase
let simulator: Simulator
const dir = mkdtempSync(join(tmpdir(), 'cif-syncer-misbehave-'))

beforeAll(async () => {
  database = await ownDatabase()
  simulator = await startSimulator({ host: '127.0.0.1', port: 0 }, createLogger('silent', 'test'))
})
afterEach(async () => {
  for (const name of simulator.systems.keys()) await setFault(name, { mode: 'none' })
})
afterAll(async () => {
  await simulator?.close()
  await database?.close()
  rmSync(dir, { recursive: true, force: true })
})

async function setFault(system: string, fault: Fault): Promise<void> {
  const response = await fetch(`${simulator.url}/systems/${system}/fault`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(fault)
  })
  expect(response.status, await response.clone().text()).toBe(200)
}

const retry = 'retry: { retries: 2, timeoutMs: 1000, timeoutMultiplier: 1, maxTimeoutMs: 1000, backoffMs: 50, maxBackoffMs: 3000 }'

/**
 * The simulator's core banking as an end systems file names it, under a name of this test's own; read back
 * by its record id (as shipped), by CIF ID (which also gives the record id), or not at all.
 */
function coreBanking(readBack: 'by-record-id' | 'by-cif-id' | 'none'): { system: EndSystemConfig; file: string } {
  const name = newEndSystem('core-banking')
  const body = `'{"customerNumber": cifId, "email": customer.email, "version": version}'`
  const read = {
    'by-record-id': `read: { method: GET, path: '/customers/{externalId}', record: record, cifId: customerNumber }`,
    'by-cif-id': `read: { method: GET, path: '/customers?customerNumber={cifId}', record: record, cifId: customerNumber, externalId: id }`,
    none: ''
  }[readBack]
  const file = join(dir, `${name}.yaml`)
  writeFileSync(
    file,
    `endSystems:
  - name: ${name}
    baseUrl: ${simulator.systems.get('core-banking')!.url}
    createConflictMeansExists: true
    ${retry}
    circuitBreaker: { consecutiveFailures: 50, halfOpenAfterMs: 1000 }
    operations:
      create: { method: POST, path: /customers, externalId: customerId, body: ${body} }
      update: { method: PUT, path: '/customers/{externalId}', body: ${body} }
      ${read}
${readBack === 'none' ? '' : `    compare: ${body}`}
`
  )
  return { system: loadEndSystems(file)[0]!, file }
}

/** Stores `versions` of a new customer for `system`, lets a lane deliver them until each settles, and returns what happened. */
/**
 * Stores `versions` of a customer (one event per version: a version stored already is not stored again),
 * with deliveries to `storedFor`, and runs `system`'s lane until its deliveries of the customer settle.
 */
async function deliver(system: EndSystemConfig, versions = [1], cifId = newCifId(), settleMs = 20_000, storedFor = [system.name]) {
  if (versions.length) await storeVersions(database.db, cifId, versions, storedFor)
  const client = new EndSystemClient(system)
  const lane = new DeliveryLane(
    system,
    asSyncer(database.db),
    client,
    new AttemptRecorder(asSyncer(database.db)),
    createLogger('silent', 'test'),
    laneTelemetry(database.db, system.name, client)
  )
  const settled = (rows: { state: string; end_system: string }[]) =>
    rows.filter((row) => row.end_system === system.name).every((row) => ['SUCCESS', 'FAILED'].includes(row.state))
  try {
    const deadline = Date.now() + settleMs
    for (let rows = await deliveriesOf(database.db, cifId); !settled(rows) && Date.now() < deadline; rows = await deliveriesOf(database.db, cifId)) {
      lane.wake()
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  } finally {
    await lane.stop()
    await client.close()
  }
  const deliveries = await deliveriesOf(database.db, cifId)
  return { cifId, deliveries, attempts: await attemptsOf(database.db, deliveries[0]!.id) }
}

const held = (cifId: string) => [...simulator.systems.get('core-banking')!.records.values()].filter((record) => record.cifId === cifId)
const calls = (system: string, cifId: string) => simulator.systems.get(system)!.receipts.filter((receipt) => receipt.cifId === cifId)

describe('an end system that answers a create without its record id', () => {
  it('200 with a page that is not JSON: FAILED at once, not created twice, remarks saying what to do', async () => {
    await setFault('core-banking', { mode: 'not-json' })
    const { cifId, deliveries, attempts } = await deliver(coreBanking('by-record-id').system)
    expect(deliveries).toMatchObject([{ state: 'FAILED', external_id: null }])
    expect(attempts).toHaveLength(1)
    expect(attempts[0]).toMatchObject({ status: 'ERROR', http_status: 200 })
    expect(attempts[0]!.response_message).toMatch(/^HTTP 200: <html>/)
    expect(attempts[0]!.remarks).toMatch(
      /accepted the create, but its answer was not JSON, so updates could not be addressed; not sent again, as a second create could make a duplicate record; give .* a read by \{cifId\}/
    )
    expect(held(cifId)).toHaveLength(1)
  })

  it('201 without the id, and a read by CIF ID configured: the record it holds is found and linked, and the update reaches it', async () => {
    await setFault('core-banking', { mode: 'no-record-id' })
    const { cifId, deliveries, attempts } = await deliver(coreBanking('by-cif-id').system, [1, 2])
    const [record] = held(cifId)
    expect(deliveries).toMatchObject([
      { customer_version: 1, state: 'SUCCESS', external_id: record!.id },
      { customer_version: 2, state: 'SUCCESS' }
    ])
    expect(attempts).toEqual([expect.objectContaining({ status: 'SUCCESS', http_status: 201 })])
    expect(attempts[0]!.remarks).toContain(`its answer held no record id: record ${record!.id} found by reading it back by CIF ID`)
    expect(held(cifId)).toEqual([expect.objectContaining({ version: 2 })])
  })

  it('201 without the id, and no read by CIF ID: FAILED, never SUCCESS without the id', async () => {
    await setFault('core-banking', { mode: 'no-record-id' })
    const { cifId, deliveries, attempts } = await deliver(coreBanking('none').system)
    expect(deliveries).toMatchObject([{ state: 'FAILED', external_id: null }])
    expect(attempts).toEqual([expect.objectContaining({ status: 'ERROR', http_status: 201 })])
    expect(attempts[0]!.remarks).toMatch(/accepted the create, but its answer held no record id, so updates could not be addressed/)
    expect(held(cifId)).toHaveLength(1)
  })
})

describe('an end system that answers 201 and stores nothing', () => {
  it('looks delivered; `cif-syncer reconcile --repair` finds it MISSING and a repair creates it', async () => {
    const { system, file } = coreBanking('by-record-id')
    const response = await fetch(`${simulator.url}/systems/core-banking/drift`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'lose-creates', count: 1 })
    })
    expect(response.status).toBe(200)
    const { cifId, deliveries } = await deliver(system)
    expect(deliveries).toMatchObject([{ state: 'SUCCESS' }])
    expect(held(cifId)).toEqual([])

    const printed: string[] = []
    const config = loadConfig({ DATABASE_URL: database.url, SYNCER_END_SYSTEMS_FILE: file })
    await reconcileCommand(
      config,
      createLogger('silent', 'test'),
      { systems: [system.name], cifIds: [cifId], since: undefined, repair: true, by: 'test' },
      (line) => printed.push(line)
    )
    expect(printed.join('\n')).toMatch(new RegExp(`finding \\d+: ${system.name} ${cifId} MISSING`))
    expect(printed.at(-1)).toBe('repairs asked for: 1 deliveries (the syncers send them)')
    // The repair is a delivery like any other: the lane sends it.
    const repaired = await deliver(system, [], cifId)
    expect(repaired.deliveries.map((d) => [d.operation, d.state, d.reconciliation_run_id !== null])).toEqual([
      ['create', 'SUCCESS', false],
      ['create', 'SUCCESS', true]
    ])
    expect(held(cifId)).toHaveLength(1)
  })
})

describe('an end system that answers wrongly in transport', () => {
  it('50 MB of answer: 64 KiB read, an excerpt recorded, retried; the system could write only a little of it', async () => {
    await setFault('core-banking', { mode: 'huge-body', megabytes: 50, status: 500, count: 1 })
    const { cifId, deliveries, attempts } = await deliver(coreBanking('by-record-id').system)
    expect(deliveries).toMatchObject([{ state: 'SUCCESS' }])
    expect(attempts.map((a) => [a.status, a.http_status])).toEqual([
      ['ERROR', 500],
      ['SUCCESS', 201]
    ])
    expect(attempts[0]!.response_message).toMatch(/^HTTP 500 \(the first 64 KiB of a longer answer\): \{"error":"simulated failure","padding":"x+…$/)
    expect(attempts[0]!.response_message!.length).toBeLessThan(600)
    expect(attempts[0]!.remarks).toMatch(/answered 500 \(a fault on its side\); retry 1 of 2 in/)
    const [huge] = calls('core-banking', cifId)
    // The rest was never read: the syncer hung up, and the system got no further than its socket buffers.
    expect(huge).toMatchObject({ status: 500 })
    expect(huge!.bytesWritten).toBeLessThan(10 * 1024 * 1024)
  })

  it('a redirect: not followed, FAILED, remarks naming the status and the Location (masked)', async () => {
    const system = coreBanking('by-record-id').system
    const moved = `${simulator.systems.get('core-banking')!.url}/moved/customers?email=v1@example.com`
    await setFault('core-banking', { mode: 'redirect', status: 308, location: moved })
    const { cifId, deliveries, attempts } = await deliver(system)
    expect(deliveries).toMatchObject([{ state: 'FAILED' }])
    expect(attempts).toEqual([expect.objectContaining({ status: 'ERROR', http_status: 308 })])
    expect(attempts[0]!.remarks).toBe(
      `${system.name} answered with a redirect (308) to ${moved.replace('v1@example.com', '***')}, not followed; check its baseUrl in the end systems file`
    )
    expect(calls('core-banking', cifId).map((call) => call.path)).toEqual(['/customers'])
    expect(held(cifId)).toEqual([])
  })

  it('an answer trickling a byte a second: the attempt times out on the whole answer, and the retry finds the record made', async () => {
    await setFault('core-banking', { mode: 'trickle', count: 1 })
    const { cifId, deliveries, attempts } = await deliver(coreBanking('by-record-id').system)
    expect(deliveries).toMatchObject([{ state: 'SUCCESS' }])
    expect(attempts.map((a) => [a.status, a.http_status, a.response_message])).toEqual([
      ['ERROR', null, 'no complete answer within 1 s'],
      ['SUCCESS', 201, expect.stringMatching(/^HTTP 201/)]
    ])
    const first = attempts[0]!
    expect(first.finished_at.getTime() - first.started_at.getTime()).toBeLessThan(2500)
    expect(calls('core-banking', cifId)[0]!.bytesWritten).toBeGreaterThan(0)
    expect(held(cifId)).toHaveLength(1)
  })

  it('the connection closed after the headers: an attempt ERROR that says so, retried, one record', async () => {
    await setFault('core-banking', { mode: 'cut-after-headers', count: 1 })
    const { cifId, deliveries, attempts } = await deliver(coreBanking('by-record-id').system)
    expect(deliveries).toMatchObject([{ state: 'SUCCESS' }])
    expect(attempts.map((a) => [a.status, a.http_status])).toEqual([
      ['ERROR', null],
      ['SUCCESS', 201]
    ])
    expect(attempts[0]!.response_message).toBe('UND_ERR_SOCKET: other side closed')
    expect(attempts[0]!.remarks).toMatch(/closed the connection mid-answer; retry 1 of 2 in/)
    expect(held(cifId)).toHaveLength(1)
  })
})

describe('reading an end system back (reconciliation, and a create’s read-back)', () => {
  it('reads no more than 1 MiB of an answer that goes on and on, and says so', async () => {
    let written = 0
    const server = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' })
      const chunk = Buffer.alloc(64 * 1024, 'x')
      const more = (): void => {
        while (written < 50 * 1024 * 1024 && !response.destroyed) {
          written += chunk.length
          if (!response.write(chunk)) return void response.once('drain', more)
        }
        response.end()
      }
      more()
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { system } = coreBanking('by-record-id')
    const reader = new EndSystemReader({ ...system, baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }, system.reconcile!)
    try {
      expect(await reader.read(newCifId(), 'CB-1')).toEqual({ kind: 'error', message: `${system.name} answered more than 1048576 bytes` })
      expect(written).toBeLessThan(10 * 1024 * 1024)
    } finally {
      await reader.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe('an end system that answers 409 to a create it never saw', () => {
  it('naming a record id it does not hold, or another customer’s: read back, FAILED with remarks, never SUCCESS', async () => {
    const system = coreBanking('by-record-id').system
    await setFault('core-banking', { mode: 'conflict-unknown', recordId: 'CB-9999999' })
    const unknown = await deliver(system)
    expect(unknown.deliveries).toMatchObject([{ state: 'FAILED', external_id: null }])
    expect(unknown.attempts).toEqual([expect.objectContaining({ status: 'ERROR', http_status: 409 })])
    expect(unknown.attempts[0]!.remarks).toMatch(/answered 409 \(exists already\) to the create, but read back it holds no record of this customer/)

    await setFault('core-banking', { mode: 'none' })
    const other = await deliver(system)
    const [otherRecord] = held(other.cifId)
    await setFault('core-banking', { mode: 'conflict-unknown', recordId: otherRecord!.id })
    const named = await deliver(system)
    expect(named.deliveries).toMatchObject([{ state: 'FAILED', external_id: null }])
    expect(named.attempts[0]!.remarks).toContain(`record ${otherRecord!.id}, which it names, is another customer's`)
    expect(named.attempts[0]!.remarks).not.toContain(other.cifId)
  })

  it('naming no record: found by CIF ID if it is there, else FAILED', async () => {
    await setFault('core-banking', { mode: 'conflict-unknown' })
    const { deliveries, attempts } = await deliver(coreBanking('by-cif-id').system)
    expect(deliveries).toMatchObject([{ state: 'FAILED' }])
    expect(attempts[0]!.remarks).toMatch(/answered 409 \(exists already\) to the create, but read back it holds no record of this customer/)
  })

  it('for a customer it does hold (a link the syncer lost): the record read back is linked', async () => {
    const system = coreBanking('by-record-id').system
    // A second configuration of the same system: it has no link of this customer, and its create meets a 409.
    const unlinked = { ...system, name: newEndSystem('core-banking') }
    const { cifId } = await deliver(system, [1], newCifId(), 20_000, [system.name, unlinked.name])
    const [record] = held(cifId)
    const again = await deliver(unlinked, [], cifId)
    const delivery = again.deliveries.find((d) => d.end_system === unlinked.name)!
    expect(delivery).toMatchObject({ state: 'SUCCESS', external_id: record!.id })
    expect(await attemptsOf(database.db, delivery.id)).toEqual([
      expect.objectContaining({
        status: 'SUCCESS',
        http_status: 409,
        remarks: `${unlinked.name} answered 409 (exists already) to the create; record ${record!.id} read back as this customer's`
      })
    ])
    expect(held(cifId)).toHaveLength(1)
  })
})

describe('an end system that answers 429 with Retry-After', () => {
  for (const as of ['seconds', 'date'] as const) {
    it(`in ${as}: the next attempt waits at least that long, counted as a retry, the remarks say so`, async () => {
      await setFault('core-banking', { mode: 'rate-limit', retryAfterSeconds: 2, as, count: 1 })
      const asked = Date.now() + 2000
      const { deliveries, attempts } = await deliver(coreBanking('by-record-id').system)
      expect(deliveries).toMatchObject([{ state: 'SUCCESS' }])
      expect(attempts.map((a) => [a.status, a.http_status])).toEqual([
        ['ERROR', 429],
        ['SUCCESS', 201]
      ])
      // An HTTP date is to the second: the retry comes no earlier than the second it names.
      const notBefore = as === 'seconds' ? attempts[0]!.finished_at.getTime() + 2000 : Math.floor(asked / 1000) * 1000
      expect(attempts[1]!.started_at.getTime()).toBeGreaterThanOrEqual(notBefore)
      // What is left of a date's wait when the answer is read: the date is to the second, so anything from 2 s
      // down to just over 1 s, shown rounded ("Retry-After 1 s" when asked late in a second), or less on a busy
      // machine.
      expect(attempts[0]!.remarks).toMatch(
        /asked the syncer to slow down \(429, Retry-After (2|1(\.\d+)?|0\.\d+) s\); retry 1 of 2 in (2|1(\.\d+)?|0\.\d+) s$/
      )
    })
  }

  it('asking for longer than the longest pause: waits the longest pause, and says so', async () => {
    await setFault('core-banking', { mode: 'rate-limit', retryAfterSeconds: 3600, as: 'seconds', count: 1 })
    const { deliveries, attempts } = await deliver(coreBanking('by-record-id').system)
    expect(deliveries).toMatchObject([{ state: 'SUCCESS' }])
    expect(attempts[1]!.started_at.getTime() - attempts[0]!.finished_at.getTime()).toBeGreaterThanOrEqual(3000)
    expect(attempts[0]!.remarks).toBe(
      `${deliveries[0]!.end_system} asked the syncer to slow down (429, Retry-After 1 h 0 min); retry 1 of 2 in 3 s; its Retry-After is longer than the longest pause this system is given (maxBackoffMs, 3 s), which is waited instead`
    )
  })
})
