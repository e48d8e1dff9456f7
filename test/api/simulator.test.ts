import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createLogger } from '../../src/platform/logger.ts'
import { type Simulator, startSimulator } from '../../src/simulator/service.ts'

// The simulated end systems as the local stack runs them: with their records in its data folder.
const dataDir = mkdtempSync(join(tmpdir(), 'cif-syncer-simulator-'))
afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

const start = (withDataDir = true): Promise<Simulator> =>
  startSimulator({ host: '127.0.0.1', port: 0, ...(withDataDir ? { dataDir } : {}) }, createLogger('silent', 'test'))

async function send(simulator: Simulator, method: string, path: string, body: unknown) {
  const response = await fetch(`${simulator.systems.get('core-banking')!.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body)
  })
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

const records = async (simulator: Simulator) => (await simulator.app.inject({ method: 'GET', url: '/systems/core-banking/records' })).json()

describe('the simulator', () => {
  it('keeps its records across a restart: an earlier customer can still be updated, and new ids carry on', async () => {
    const first = await start()
    expect(await send(first, 'POST', '/customers', { customerNumber: '10000000009', version: 1 })).toEqual({
      status: 201,
      body: { customerId: 'CB-0000001', status: 'ACTIVE' }
    })
    expect((await send(first, 'PUT', '/customers/CB-0000001', { customerNumber: '10000000009', version: 2 })).status).toBe(200)
    await first.close()

    const second = await start()
    try {
      expect(await records(second)).toEqual([
        expect.objectContaining({ id: 'CB-0000001', cifId: '10000000009', version: 2, payload: { customerNumber: '10000000009', version: 2 } })
      ])
      expect((await send(second, 'PUT', '/customers/CB-0000001', { customerNumber: '10000000009', version: 3 })).status).toBe(200)
      expect((await send(second, 'POST', '/customers', { customerNumber: '10000000009', version: 1 })).status).toBe(409)
      expect((await send(second, 'POST', '/customers', { customerNumber: '10000000017', version: 1 })).body.customerId).toBe('CB-0000002')
      // A reset forgets them for good.
      expect((await second.app.inject({ method: 'POST', url: '/systems/core-banking/reset' })).statusCode).toBe(200)
    } finally {
      await second.close()
    }
    const third = await start()
    expect(await records(third)).toEqual([])
    await third.close()
  })

  it('keeps drift across a restart too: a deleted record stays gone, an altered one stays altered', async () => {
    const first = await start()
    const drift = (body: unknown) => first.app.inject({ method: 'POST', url: '/systems/core-banking/drift', payload: body as object })
    await send(first, 'POST', '/customers', { customerNumber: '10000000033', version: 1 })
    await send(first, 'POST', '/customers', { customerNumber: '10000000041', version: 1 })
    expect((await drift({ kind: 'delete', cifId: '10000000033' })).statusCode).toBe(200)
    expect((await drift({ kind: 'alter', cifId: '10000000041', fields: { version: 7 } })).statusCode).toBe(200)
    await first.close()

    const second = await start()
    try {
      const held = (await records(second)) as { cifId: string; payload: Record<string, unknown> }[]
      expect(held.map((record) => record.cifId)).toEqual(['10000000041'])
      expect(held[0]!.payload.version).toBe(7)
    } finally {
      await second.app.inject({ method: 'POST', url: '/systems/core-banking/reset' })
      await second.close()
    }
  })

  it('logs every call it answered, paged by seq, with the version and Idempotency-Key it was sent', async () => {
    const simulator = await start(false)
    try {
      const call = (method: string, path: string, key: string, body: unknown) =>
        fetch(`${simulator.systems.get('core-banking')!.url}${path}`, {
          method,
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify(body)
        })
      await call('POST', '/customers', 'e1:core-banking', { customerNumber: '10000000058', version: 1 })
      await call('POST', '/customers', 'e1:core-banking', { customerNumber: '10000000058', version: 1 }) // a repeat
      await call('PUT', '/customers/CB-0000001', 'e2:core-banking', { customerNumber: '10000000058', version: 2 })
      const page = async (query: string) => (await simulator.app.inject({ method: 'GET', url: `/systems/core-banking/calls${query}` })).json()
      const first = await page('?limit=2')
      expect(first).toEqual({
        items: [
          expect.objectContaining({ seq: 1, method: 'POST', cifId: '10000000058', version: 1, idempotencyKey: 'e1:core-banking', status: 201 }),
          expect.objectContaining({ seq: 2, method: 'POST', version: 1, idempotencyKey: 'e1:core-banking', status: 201 })
        ],
        next: 2
      })
      expect(await page('?after=2&limit=2')).toEqual({
        items: [expect.objectContaining({ seq: 3, method: 'PUT', version: 2, idempotencyKey: 'e2:core-banking', status: 200 })],
        next: null
      })
      expect((await page('?after=-1')).errors).toEqual([expect.objectContaining({ parameter: 'after' })])
    } finally {
      await simulator.close()
    }
  })

  it('keeps nothing without a data folder (tests and the benchmark)', async () => {
    const first = await start(false)
    await send(first, 'POST', '/customers', { customerNumber: '10000000025', version: 1 })
    await first.close()
    const second = await start(false)
    expect(await records(second)).toEqual([])
    await second.close()
  })

  it('documents a control API that takes no key: no Authorize on its page', async () => {
    const simulator = await start(false)
    const openapi = (await simulator.app.inject({ method: 'GET', url: '/openapi.json' })).json()
    expect(openapi.components.securitySchemes).toEqual({})
    await simulator.close()
  })

  it('misbehaves for the next `count` calls it concerns, then behaves; refuses a misbehaviour it does not know, naming the field', async () => {
    const simulator = await start(false)
    try {
      const fault = (body: unknown) => simulator.app.inject({ method: 'PUT', url: '/systems/core-banking/fault', payload: body as object })
      const refused = await fault({ mode: 'redirect', status: 300 })
      expect(refused.statusCode).toBe(400)
      expect(refused.body).toContain('/status')
      expect((await fault({ mode: 'conflict-unknown', count: 1 })).statusCode).toBe(200)
      // An update is not a create: conflict-unknown lets it by, and its count is kept for the create.
      expect((await send(simulator, 'PUT', '/customers/CB-0000001', { customerNumber: '10000000058', version: 2 })).status).toBe(404)
      expect(await send(simulator, 'POST', '/customers', { customerNumber: '10000000058', version: 1 })).toEqual({
        status: 409,
        body: { error: 'this customer exists already' }
      })
      expect((await send(simulator, 'POST', '/customers', { customerNumber: '10000000058', version: 1 })).status).toBe(201)
      expect((await fault({ mode: 'rate-limit', retryAfterSeconds: 7, as: 'seconds' })).statusCode).toBe(200)
      const limited = await fetch(`${simulator.systems.get('core-banking')!.url}/customers`, { method: 'POST', body: '{}' })
      expect([limited.status, limited.headers.get('retry-after')]).toEqual([429, '7'])
      // Reads are never misbehaved on: reconciliation and the create's read-back see the system as it is.
      const read = await fetch(`${simulator.systems.get('core-banking')!.url}/customers?customerNumber=10000000058`)
      expect([read.status, ((await read.json()) as { record: unknown }).record]).toEqual([200, { customerNumber: '10000000058', version: 1 }])
    } finally {
      await simulator.close()
    }
  })
})
