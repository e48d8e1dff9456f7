import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import { httpProblems, syncerProblems } from '../../src/contracts/problems.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import type { HttpServer } from '../../src/platform/http/server.ts'
import { storeEvents } from '../../src/syncer/intake/event-store.ts'
import { eventMessage, madeAt } from '../store/fixtures.ts'
import { asSyncer } from '../support/database.ts'
import { devTrustedKeys } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { call, operatorKey, problemType, syncerApp, testConfig, testEndSystems } from './helpers.ts'

// The admin API's end systems: pausing and resuming one, and what the summary says of pauses and of the
// in-sync deadline, on their edges, against PostgreSQL alone.

let database: OwnDatabase
let app: HttpServer
const auditorKey = 'test-auditor-key'
const cifId = cifIdFromNumber(1_000_000_001)

const admin = (method: 'GET' | 'POST', url: string, body?: unknown, key = operatorKey) => call(app, method, url, { key, body })
const systemActions = () =>
  database.db
    .selectFrom('operator_action')
    .select(['end_system', 'action', 'operator', 'reason'])
    .where('end_system', 'is not', null)
    .orderBy('id')
    .execute()

beforeAll(async () => {
  database = await ownDatabase()
  app = await syncerApp(
    database,
    testConfig({
      SYNCER_OPERATORS: `test-operator=${apiKeyHash(operatorKey)},auditor=${apiKeyHash(auditorKey)}`,
      SYNCER_OPERATOR_ROLES: 'auditor:viewer'
    })
  )
  await storeEvents(
    asSyncer(database.db),
    [eventMessage(cifId, 1)],
    testEndSystems.map((s) => s.name),
    devTrustedKeys
  )
})
afterAll(async () => {
  await app?.close()
  await database?.close()
})

describe('admin API: pausing and resuming an end system', () => {
  it('lists the configured end systems, none paused', async () => {
    const listed = await admin('GET', '/v1/admin/end-systems')
    expect(listed.status).toBe(200)
    expect(listed.body).toEqual({
      endSystems: [
        { name: 'core-banking', coalesce: false, paused: null },
        { name: 'crm', coalesce: false, paused: null },
        { name: 'cards', coalesce: true, paused: null }
      ]
    })
  })

  it('pauses a system, recording who and why, shows it in the list, the summary and the deliveries, then resumes it', async () => {
    const paused = await admin('POST', '/v1/admin/end-systems/crm/pause', { reason: 'crm upgrade 02:00-04:00' })
    expect(paused.status).toBe(200)
    expect(paused.body).toEqual({
      name: 'crm',
      coalesce: false,
      paused: { endSystem: 'crm', pausedBy: 'test-operator', reason: 'crm upgrade 02:00-04:00', pausedAt: expect.any(String) }
    })
    expect((await admin('GET', '/v1/admin/summary')).body.paused).toEqual([paused.body.paused])
    const [crm] = (await admin('GET', `/v1/admin/deliveries?cifId=${cifId}&endSystem=crm`)).body.deliveries
    expect(crm).toMatchObject({ state: 'PENDING', attempts: 0, remarks: 'paused by test-operator: crm upgrade 02:00-04:00' })

    const twice = await admin('POST', '/v1/admin/end-systems/crm/pause', { reason: 'again' })
    expect(twice.status).toBe(409)
    expect(twice.body).toMatchObject({ type: problemType(syncerProblems.endSystemStateConflict), paused: true })

    const resumed = await admin('POST', '/v1/admin/end-systems/crm/resume', { reason: 'upgrade done' })
    expect(resumed.status).toBe(200)
    expect(resumed.body).toEqual({ name: 'crm', coalesce: false, paused: null })
    expect((await admin('POST', '/v1/admin/end-systems/crm/resume', { reason: 'again' })).body).toMatchObject({
      type: problemType(syncerProblems.endSystemStateConflict),
      paused: false
    })
    expect((await admin('GET', '/v1/admin/summary')).body.paused).toEqual([])
    expect(await systemActions()).toEqual([
      { end_system: 'crm', action: 'PAUSE', operator: 'test-operator', reason: 'crm upgrade 02:00-04:00' },
      { end_system: 'crm', action: 'RESUME', operator: 'test-operator', reason: 'upgrade done' }
    ])
  })

  it('refuses an unknown system, a malformed name, a missing reason and a viewer, naming what is wrong, and records nothing', async () => {
    const before = await systemActions()
    const unknown = await admin('POST', '/v1/admin/end-systems/ledger/pause', { reason: 'maintenance' })
    expect(unknown.status).toBe(404)
    expect(unknown.body.type).toBe(problemType(syncerProblems.endSystemNotFound))
    const badName = await admin('POST', '/v1/admin/end-systems/CRM!/pause', { reason: 'maintenance' })
    expect(badName.status).toBe(400)
    expect(badName.body.errors.map((e: { parameter: string }) => e.parameter)).toEqual(['name'])
    const noReason = await admin('POST', '/v1/admin/end-systems/crm/pause', {})
    expect(noReason.status).toBe(400)
    expect(noReason.body.errors.map((e: { pointer: string }) => e.pointer)).toEqual(['/reason'])
    const viewer = await admin('POST', '/v1/admin/end-systems/crm/pause', { reason: 'maintenance' }, auditorKey)
    expect(viewer.status).toBe(403)
    expect(viewer.body.type).toBe(problemType(httpProblems.forbidden))
    expect((await admin('GET', '/v1/admin/end-systems', undefined, auditorKey)).status).toBe(200)
    expect(await systemActions()).toEqual(before)
  })
})

describe('admin API: the in-sync deadline in the summary', () => {
  it('counts the versions past it and says when the oldest was made', async () => {
    expect((await admin('GET', '/v1/admin/summary')).body.overdue).toEqual({ count: 0, oldestCreatedAt: null, deadlineMs: 300_000 })
    await madeAt(database.db, cifId, sql`'2026-01-01T00:00:00Z'::timestamptz`)
    expect((await admin('GET', '/v1/admin/summary')).body.overdue).toEqual({
      count: 1,
      oldestCreatedAt: '2026-01-01T00:00:00.000Z',
      deadlineMs: 300_000
    })
  })
})
