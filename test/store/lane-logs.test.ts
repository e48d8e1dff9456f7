import { writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redactPaths } from '../../src/platform/logger.ts'
import { AttemptRecorder } from '../../src/syncer/delivery/attempt-recorder.ts'
import { EndSystemClient } from '../../src/syncer/delivery/end-system-client.ts'
import { loadEndSystems } from '../../src/syncer/delivery/end-systems-config.ts'
import { DeliveryLane } from '../../src/syncer/delivery/lane.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { deliveriesOf, laneTelemetry, newCifId, newEndSystem, storeVersions } from './fixtures.ts'

// What an operator reads in the log while an end system misbehaves: each retry and each FAILED delivery
// once, the circuit opening and closing once, each with the CIF ID and the end system, never the customer.
let database: OwnDatabase
let server: Server
let baseUrl: string
/** The status the end system answers each call with, in turn; 201 once they are used up. */
let answers: number[] = []

beforeAll(async () => {
  database = await ownDatabase()
  server = createServer((request, response) => {
    request.resume()
    const status = answers.shift() ?? 201
    // An answer that quotes the customer, as real systems do: it must not reach the log.
    request.on('end', () => response.writeHead(status, { 'content-type': 'application/json' }).end('{"id":"L-1","name":"Ada Lovelace"}'))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  baseUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`
})
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve))
  await database?.close()
})

/** Delivers one new customer to an end system with these settings; returns the log lines, as written. */
async function deliver(settings: string, until: readonly string[]): Promise<{ cifId: string; name: string; lines: string[]; state: string }> {
  const name = newEndSystem('ledger')
  const file = join(tmpdir(), `${name}.yaml`)
  writeFileSync(
    file,
    `endSystems:
  - name: ${name}
    baseUrl: ${baseUrl}
    ${settings}
    operations:
      create: { method: POST, path: /clients, body: '{"ref": cifId}', externalId: id }
      update: { method: PUT, path: '/clients/{externalId}', body: '{"ref": cifId}' }
`
  )
  const [system] = loadEndSystems(file)
  const cifId = newCifId()
  await storeVersions(database.db, cifId, [1], [name])
  const lines: string[] = []
  const log = pino({ level: 'info', redact: redactPaths }, { write: (line: string) => lines.push(line) })
  const client = new EndSystemClient(system!)
  // As the syncer makes it (service.ts): the end system is the lane logger's.
  const lane = new DeliveryLane(
    system!,
    asSyncer(database.db),
    client,
    new AttemptRecorder(asSyncer(database.db)),
    log.child({ endSystem: name }),
    laneTelemetry(database.db, name, client)
  )
  // Retries come due: the syncer's poll, faster.
  const poll = setInterval(() => lane.wake(), 20)
  try {
    const deadline = Date.now() + 15_000
    let [delivery] = await deliveriesOf(database.db, cifId)
    while (delivery && !until.includes(delivery.state) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      ;[delivery] = await deliveriesOf(database.db, cifId)
    }
    return { cifId, name, lines, state: delivery!.state }
  } finally {
    clearInterval(poll)
    await lane.stop()
    await client.close()
  }
}

const parsed = (lines: string[]) => lines.map((line) => JSON.parse(line) as Record<string, unknown>)

describe('what a lane logs', () => {
  it('a retry at warn, once, with the CIF ID, the end system (once) and why; nothing for the success after it', async () => {
    answers = [503]
    const { cifId, name, lines, state } = await deliver('retry: { retries: 2, backoffMs: 10, maxBackoffMs: 20 }', ['SUCCESS'])
    expect(state).toBe('SUCCESS')
    expect(parsed(lines)).toEqual([
      expect.objectContaining({
        level: 40,
        msg: 'delivery will be retried',
        endSystem: name,
        cifId,
        attempt: 1,
        httpStatus: 503,
        reason: `${name} answered 503 (a fault on its side)`,
        retryIn: expect.any(String)
      })
    ])
    // One key once: a second `endSystem` would make the line ambiguous JSON.
    expect(lines[0]!.match(/"endSystem"/g)).toHaveLength(1)
    expect(lines.join('')).not.toContain('Lovelace')
  })

  it('a FAILED delivery at warn, once, saying an operator must act', async () => {
    answers = [400]
    const { cifId, name, lines, state } = await deliver('retry: { retries: 2, backoffMs: 10, maxBackoffMs: 20 }', ['FAILED'])
    expect(state).toBe('FAILED')
    expect(parsed(lines)).toEqual([
      expect.objectContaining({
        level: 40,
        msg: 'delivery FAILED: an operator must redrive or skip it',
        endSystem: name,
        cifId,
        httpStatus: 400,
        reason: `${name} refused the create (400); retrying cannot help`
      })
    ])
    expect(lines.join('')).not.toContain('Lovelace')
  })

  it('the circuit opening once (not again after each failed trial call) and closing once', async () => {
    // Open after the first failure; each trial call 200 ms later fails twice more, then one succeeds.
    answers = [503, 503, 503]
    const { name, lines, state } = await deliver(
      'retry: { retries: 5, backoffMs: 10, maxBackoffMs: 20 }\n    circuitBreaker: { consecutiveFailures: 1, halfOpenAfterMs: 200 }',
      ['SUCCESS', 'FAILED']
    )
    expect(state).toBe('SUCCESS')
    const circuit = parsed(lines).filter((line) => line.circuit)
    expect(circuit).toEqual([
      expect.objectContaining({
        level: 40,
        circuit: 'open',
        endSystem: name,
        failedInARow: 1,
        msg: `circuit open: ${name} keeps failing; calls paused but for a trial call now and then`
      }),
      expect.objectContaining({ level: 40, circuit: 'closed', endSystem: name, openFor: expect.any(String) })
    ])
  })
})
