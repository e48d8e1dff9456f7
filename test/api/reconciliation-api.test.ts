import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import { syncerProblems } from '../../src/contracts/problems.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import type { HttpServer } from '../../src/platform/http/server.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { loadEndSystems } from '../../src/syncer/delivery/end-systems-config.ts'
import { createSyncerApp } from '../../src/syncer/service.ts'
import { newCifId, storeVersions } from '../store/fixtures.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { call, operatorKey, problemType, testConfig } from './helpers.ts'

// The reconciliation routes on their edges: what they accept, refuse and show, against PostgreSQL alone. The
// runs themselves are worked by the syncers (test/integration/reconciliation.test.ts).

let database: OwnDatabase
let app: HttpServer
const viewerKey = 'test-viewer-key'
let woken = 0

beforeAll(async () => {
  database = await ownDatabase()
  const config = testConfig({
    SYNCER_OPERATORS: `test-operator=${apiKeyHash(operatorKey)},test-viewer=${apiKeyHash(viewerKey)}`,
    SYNCER_OPERATOR_ROLES: 'test-viewer:viewer'
  })
  const endSystems = loadEndSystems('config/end-systems.yaml', { CORE_BANKING_TOKEN: 'x' })
  app = await createSyncerApp(
    config,
    asSyncer(database.db),
    createLogger('warn', 'api-test'),
    {},
    {
      endSystems,
      onRunCreated: () => {
        woken++
      }
    }
  )
  const cifId = newCifId()
  await storeVersions(database.db, cifId, [1, 2], [])
  await storeVersions(database.db, newCifId(), [1], [])
})
afterAll(async () => {
  await app?.close()
  await database?.close()
})

const admin = (method: 'GET' | 'POST', url: string, body?: unknown, key = operatorKey) => call(app, method, url, { key, body })

describe('the reconciliation routes', () => {
  it('starts a run over every system that can be read back, counting each customer once, and wakes a worker', async () => {
    const before = woken
    const started = await admin('POST', '/v1/admin/reconciliations', {})
    expect(started.status).toBe(202)
    expect(started.body).toMatchObject({
      kind: 'RECONCILE',
      state: 'RUNNING',
      endSystems: ['core-banking', 'crm', 'cards'],
      requestedBy: 'test-operator',
      progress: { done: 0, total: 2 },
      counts: {},
      deliveries: {}
    })
    expect(woken).toBe(before + 1)
    expect((await admin('GET', `/v1/admin/runs/${started.body.runId}`)).body.runId).toBe(started.body.runId)
    expect((await admin('GET', `/v1/admin/runs/${started.body.runId}/findings`)).body).toEqual({ findings: [] })
    expect((await admin('GET', '/v1/admin/runs?kind=RECONCILE')).body.runs[0].runId).toBe(started.body.runId)
  })

  it('takes as many CIF IDs as its schema allows (10,000: more than the API’s usual 16 KB body), and no more', async () => {
    const ids = Array.from({ length: 10_000 }, (_, i) => cifIdFromNumber(9_000_000_000 + i))
    const started = await admin('POST', '/v1/admin/reconciliations', { cifIds: ids })
    expect(started.status).toBe(202)
    expect(started.body.cifIds).toHaveLength(10_000)
    const tooMany = await admin('POST', '/v1/admin/reconciliations', { cifIds: [...ids, cifIdFromNumber(9_000_010_000)] })
    expect(tooMany.status).toBe(400)
    expect(tooMany.body.errors).toEqual([{ pointer: '/cifIds', detail: expect.stringContaining('10000') }])
  })

  it('names every field at fault: a system that cannot be read back, a CIF ID with a wrong check digit, a situation that is not repaired', async () => {
    const refused = await admin('POST', '/v1/admin/reconciliations', { endSystems: ['crm', 'ledger'], cifIds: ['10000000008'] })
    expect(refused.status).toBe(400)
    expect(refused.body.errors).toEqual([
      { pointer: '/endSystems/1', detail: expect.stringContaining('not an end system that can be read back') },
      { pointer: '/cifIds/0', detail: 'has a wrong check digit' }
    ])
    const orphan = await admin('POST', '/v1/admin/reconciliations', { repair: ['ORPHAN'] })
    expect(orphan.status).toBe(400)
    const backfill = await admin('POST', '/v1/admin/backfills', { endSystem: 'ledger' })
    expect(backfill.body.errors).toEqual([{ pointer: '/endSystem', detail: expect.stringContaining('not a configured end system') }])
  })

  it('answers run-not-found and finding-not-found, and lets a viewer look but not act', async () => {
    const missing = await admin('GET', '/v1/admin/runs/999999')
    expect([missing.status, missing.body.type]).toEqual([404, problemType(syncerProblems.runNotFound)])
    const finding = await admin('POST', '/v1/admin/findings/999999/repair', { reason: 'no such finding' })
    expect([finding.status, finding.body.type]).toEqual([404, problemType(syncerProblems.findingNotFound)])
    expect((await admin('GET', '/v1/admin/runs', undefined, viewerKey)).status).toBe(200)
    expect((await admin('POST', '/v1/admin/reconciliations', {}, viewerKey)).status).toBe(403)
    expect((await admin('POST', '/v1/admin/backfills', { endSystem: 'crm' }, viewerKey)).status).toBe(403)
  })

  it('starts a backfill counting the customers the system holds no record of', async () => {
    const started = await admin('POST', '/v1/admin/backfills', { endSystem: 'cards' })
    expect(started.status).toBe(202)
    expect(started.body).toMatchObject({ kind: 'BACKFILL', endSystems: ['cards'], progress: { done: 0, total: 2 }, queued: 0 })
  })
})
