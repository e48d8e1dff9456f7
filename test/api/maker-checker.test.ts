import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import { httpProblems, type ProblemType, syncerProblems } from '../../src/contracts/problems.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import type { HttpServer } from '../../src/platform/http/server.ts'
import { claimDue } from '../../src/syncer/delivery/delivery-store.ts'
import { storeEvents } from '../../src/syncer/intake/event-store.ts'
import { decisions, eventMessage, record } from '../store/fixtures.ts'
import { asSyncer } from '../support/database.ts'
import { devTrustedKeys } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { call, problemType, syncerApp, testConfig } from './helpers.ts'

// Maker-checker on the admin API, against PostgreSQL alone: a skip or a bulk redrive is asked for by one
// operator and applied only once another, with the role approver, approves it.

let database: OwnDatabase
let app: HttpServer

const PORTAL = 'branch-portal'
const operators = {
  maker: { name: 'ops-tan', key: 'test-maker-key', role: 'operator' },
  checker: { name: 'ops-lim', key: 'test-checker-key', role: 'approver' },
  lead: { name: 'ops-ng', key: 'test-lead-key', role: 'approver' },
  auditor: { name: 'auditor', key: 'test-auditor-key', role: 'viewer' }
} as const
type Who = keyof typeof operators

const BULK_LIMIT = 4
const config = testConfig({
  SYNCER_OPERATORS: Object.values(operators)
    .map((o) => `${o.name}=${apiKeyHash(o.key)}`)
    .join(','),
  SYNCER_OPERATOR_ROLES: Object.values(operators)
    .map((o) => `${o.name}:${o.role}`)
    .join(','),
  SYNCER_BULK_REDRIVE_LIMIT: String(BULK_LIMIT),
  SYNCER_ACTION_REQUEST_EXPIRY_MS: '7200000'
})

const as = (who: Who, method: 'GET' | 'POST', url: string, body?: unknown) => call(app, method, url, { key: operators[who].key, body })

// The file has a database of its own, so CIF IDs need only differ within the file.
let sequenceNumber = 1_000_000_000
/** Customers whose create FAILED in `endSystem` (and went through to core banking): their FAILED delivery ids. */
async function failedIn(endSystem: string, count: number): Promise<string[]> {
  const db = asSyncer(database.db)
  const cifIds = Array.from({ length: count }, () => cifIdFromNumber(++sequenceNumber))
  await storeEvents(
    db,
    cifIds.map((cifId) => eventMessage(cifId, 1, PORTAL)),
    [endSystem],
    devTrustedKeys
  )
  const ids: string[] = []
  for (const delivery of await claimDue(db, endSystem, 100, [60_000])) {
    await record(database.db, delivery, decisions.fail())
    ids.push(delivery.id)
  }
  return ids.sort((a, b) => Number(a) - Number(b))
}

let systemNumber = 0
const newSystem = (name: string) => `${name}-${++systemNumber}`

beforeAll(async () => {
  database = await ownDatabase()
  app = await syncerApp(database, config)
})
afterAll(async () => {
  await app?.close()
  await database?.close()
})

const statesOf = async (ids: string[]) =>
  (await database.db.selectFrom('delivery').select(['id', 'state']).where('id', 'in', ids).orderBy('id').execute()).map((d) => d.state)
const actionsOn = (ids: string[]) =>
  database.db
    .selectFrom('operator_action')
    .select(['delivery_id', 'action', 'operator', 'approved_by', 'reason'])
    .where('delivery_id', 'in', ids)
    .orderBy('delivery_id')
    .execute()
const requestCount = async () =>
  Number(
    (
      await database.db
        .selectFrom('action_request')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n
  )

function expectProblem(response: { status: number; body: any }, type: ProblemType): void {
  expect(response.status).toBe(type.status)
  expect(response.body.type).toBe(problemType(type))
}

describe('roles', () => {
  it('lets a viewer look at requests, but not ask for a skip or a bulk redrive; nothing is stored', async () => {
    const [failed] = await failedIn(newSystem('crm'), 1)
    const before = await requestCount()
    expectProblem(await as('auditor', 'POST', `/v1/admin/deliveries/${failed}/skip`, { reason: 'just looking' }), httpProblems.forbidden)
    expectProblem(
      await as('auditor', 'POST', '/v1/admin/deliveries/redrive', { reason: 'just looking', deliveryIds: [failed] }),
      httpProblems.forbidden
    )
    expect((await as('auditor', 'GET', '/v1/admin/requests')).status).toBe(200)
    expect(await requestCount()).toBe(before)
  })

  it('lets an operator ask, but not approve or reject; the request stays PENDING', async () => {
    const [failed] = await failedIn(newSystem('crm'), 1)
    const asked = await as('lead', 'POST', `/v1/admin/deliveries/${failed}/skip`, { reason: 'customer closed' })
    expect(asked.status).toBe(202)
    const { requestId } = asked.body
    const refused = await as('maker', 'POST', `/v1/admin/requests/${requestId}/approve`)
    expectProblem(refused, httpProblems.forbidden)
    expect(refused.body.detail).toContain('approver')
    expectProblem(await as('maker', 'POST', `/v1/admin/requests/${requestId}/reject`, { reason: 'not now' }), httpProblems.forbidden)
    expectProblem(await as('auditor', 'POST', `/v1/admin/requests/${requestId}/approve`), httpProblems.forbidden)
    expect((await as('maker', 'GET', `/v1/admin/requests/${requestId}`)).body.state).toBe('PENDING')
    expect(await statesOf([failed!])).toEqual(['FAILED'])
  })

  it('lets an approver ask too, but never approve its own request: another approver must', async () => {
    const [failed] = await failedIn(newSystem('crm'), 1)
    const asked = await as('checker', 'POST', `/v1/admin/deliveries/${failed}/skip`, { reason: 'duplicate customer, merged in crm' })
    expect(asked.status).toBe(202)
    const own = await as('checker', 'POST', `/v1/admin/requests/${asked.body.requestId}/approve`)
    expectProblem(own, syncerProblems.fourEyesRequired)
    expect(await statesOf([failed!])).toEqual(['FAILED'])
    const approved = await as('lead', 'POST', `/v1/admin/requests/${asked.body.requestId}/approve`)
    expect(approved.status).toBe(200)
    expect(approved.body).toMatchObject({ state: 'APPROVED', requestedBy: 'ops-lim', decidedBy: 'ops-ng' })
  })
})

describe('a skip needs a second person', () => {
  it('answers 202 with the PENDING request, and SKIPS only once an approver approves, recording both names', async () => {
    const [failed] = await failedIn(newSystem('crm'), 1)
    const asked = await as('maker', 'POST', `/v1/admin/deliveries/${failed}/skip`, { reason: 'customer closed before go-live' })
    expect(asked.status).toBe(202)
    expect(asked.body).toMatchObject({
      requestId: expect.any(String),
      kind: 'SKIP',
      state: 'PENDING',
      requestedBy: 'ops-tan',
      reason: 'customer closed before go-live',
      deliveryIds: [failed],
      appliedTo: [],
      decidedBy: null
    })
    expect(new Date(asked.body.expiresAt).getTime() - new Date(asked.body.requestedAt).getTime()).toBe(7_200_000)
    expect(await statesOf([failed!])).toEqual(['FAILED'])
    const pending = await as('checker', 'GET', '/v1/admin/requests?state=PENDING')
    expect(pending.body.requests.map((r: { requestId: string }) => r.requestId)).toContain(asked.body.requestId)

    const approved = await as('checker', 'POST', `/v1/admin/requests/${asked.body.requestId}/approve`)
    expect(approved.status).toBe(200)
    expect(approved.body).toMatchObject({ state: 'APPROVED', decidedBy: 'ops-lim', appliedTo: [failed] })
    const skipped = (await as('auditor', 'GET', '/v1/admin/deliveries?state=SKIPPED')).body.deliveries
    const delivery = skipped.find((d: { deliveryId: string }) => d.deliveryId === failed)
    expect(delivery).toMatchObject({
      deliveryId: failed,
      state: 'SKIPPED',
      remarks: 'skipped by ops-tan, approved by ops-lim: customer closed before go-live'
    })
    expect(await actionsOn([failed!])).toEqual([
      { delivery_id: failed, action: 'SKIP', operator: 'ops-tan', approved_by: 'ops-lim', reason: 'customer closed before go-live' }
    ])
    expect((await as('auditor', 'GET', `/v1/admin/requests/${asked.body.requestId}`)).body).toEqual(approved.body)

    const again = await as('lead', 'POST', `/v1/admin/requests/${asked.body.requestId}/approve`)
    expectProblem(again, syncerProblems.actionRequestDecided)
    expect(again.body.state).toBe('APPROVED')
    expect(await actionsOn([failed!])).toHaveLength(1)
  })

  it('is refused at once for a delivery a skip cannot apply to', async () => {
    const crm = newSystem('crm')
    const [failed] = await failedIn(crm, 1)
    const redriven = await as('maker', 'POST', `/v1/admin/deliveries/${failed}/redrive`, { reason: 'crm is back' })
    // One person may redrive one delivery: it sends again what was going to be sent anyway.
    expect(redriven.status).toBe(200)
    const refused = await as('maker', 'POST', `/v1/admin/deliveries/${failed}/skip`, { reason: 'too late' })
    expectProblem(refused, syncerProblems.deliveryStateConflict)
    expect(refused.body.state).toBe('PENDING')
    expectProblem(await as('maker', 'POST', '/v1/admin/deliveries/999999999/skip', { reason: 'no such thing' }), syncerProblems.deliveryNotFound)
  })

  it('is rejected with a reason: nothing is done, and it is listed as REJECTED', async () => {
    const [failed] = await failedIn(newSystem('crm'), 1)
    const asked = await as('maker', 'POST', `/v1/admin/deliveries/${failed}/skip`, { reason: 'customer closed' })
    const rejected = await as('checker', 'POST', `/v1/admin/requests/${asked.body.requestId}/reject`, { reason: 'the account is still open' })
    expect(rejected.status).toBe(200)
    expect(rejected.body).toMatchObject({ state: 'REJECTED', decidedBy: 'ops-lim', decisionReason: 'the account is still open', appliedTo: [] })
    expect(await statesOf([failed!])).toEqual(['FAILED'])
    expect(await actionsOn([failed!])).toEqual([])
    const listed = (await as('auditor', 'GET', '/v1/admin/requests?state=REJECTED')).body.requests
    expect(listed.map((r: { requestId: string }) => r.requestId)).toContain(asked.body.requestId)
    expect(listed.every((r: { state: string }) => r.state === 'REJECTED')).toBe(true)
    expectProblem(await as('lead', 'POST', `/v1/admin/requests/${asked.body.requestId}/approve`), syncerProblems.actionRequestDecided)
  })
})

describe('bulk redrive', () => {
  const reason = 'crm is back after the outage'

  it('by filter: selects the FAILED deliveries the list filter matches, and redrives those still FAILED on approval', async () => {
    const crm = newSystem('crm')
    const ids = await failedIn(crm, 3)
    const asked = await as('maker', 'POST', '/v1/admin/deliveries/redrive', { reason, filter: { endSystem: crm, state: 'FAILED' } })
    expect(asked.status).toBe(202)
    expect(asked.body).toMatchObject({ kind: 'BULK_REDRIVE', state: 'PENDING', filter: { endSystem: crm, state: 'FAILED' }, deliveryIds: ids })
    expect(await statesOf(ids)).toEqual(['FAILED', 'FAILED', 'FAILED'])
    // One is redriven by hand meanwhile; the approval leaves it alone.
    await as('lead', 'POST', `/v1/admin/deliveries/${ids[0]}/redrive`, { reason: 'this one could not wait' })

    const approved = await as('checker', 'POST', `/v1/admin/requests/${asked.body.requestId}/approve`)
    expect(approved.status).toBe(200)
    expect(approved.body).toMatchObject({ state: 'APPROVED', deliveryIds: ids, appliedTo: ids.slice(1) })
    expect(await statesOf(ids)).toEqual(['PENDING', 'PENDING', 'PENDING'])
    expect(await actionsOn(ids)).toEqual([
      { delivery_id: ids[0], action: 'REDRIVE', operator: 'ops-ng', approved_by: null, reason: 'this one could not wait' },
      ...ids.slice(1).map((id) => ({ delivery_id: id, action: 'REDRIVE', operator: 'ops-tan', approved_by: 'ops-lim', reason }))
    ])
  })

  it('by ids, and by ids and filter together (the deliveries of either)', async () => {
    const crm = newSystem('crm')
    const cards = newSystem('cards')
    const inCrm = await failedIn(crm, 2)
    const inCards = await failedIn(cards, 2)
    const byIds = await as('maker', 'POST', '/v1/admin/deliveries/redrive', { reason, deliveryIds: [inCards[1], inCrm[0]] })
    expect(byIds.status).toBe(202)
    expect(byIds.body).toMatchObject({ filter: null, deliveryIds: [inCrm[0], inCards[1]] })
    const both = await as('maker', 'POST', '/v1/admin/deliveries/redrive', { reason, deliveryIds: [inCards[0]], filter: { endSystem: crm } })
    expect(both.body.deliveryIds).toEqual([...inCrm, inCards[0]])

    const approved = await as('lead', 'POST', `/v1/admin/requests/${byIds.body.requestId}/approve`)
    expect(approved.body.appliedTo).toEqual([inCrm[0], inCards[1]])
    expect(await statesOf([...inCrm, ...inCards])).toEqual(['PENDING', 'FAILED', 'FAILED', 'PENDING'])
  })

  it('refuses a bad selection with a 400 naming the field, and stores nothing', async () => {
    const crm = newSystem('crm')
    const ids = await failedIn(crm, BULK_LIMIT + 1)
    const [delivered] = await failedIn(newSystem('crm'), 1)
    await as('maker', 'POST', `/v1/admin/deliveries/${delivered}/redrive`, { reason: 'back to PENDING' })
    const before = await requestCount()
    for (const [body, pointer] of [
      [{ reason, filter: { endSystem: crm } }, '/filter'],
      [{ reason, deliveryIds: ids }, '/deliveryIds'],
      [{ reason, deliveryIds: [ids[0], delivered] }, '/deliveryIds/1'],
      [{ reason, deliveryIds: ['987654321'] }, '/deliveryIds/0'],
      [{ reason, deliveryIds: [ids[0], ids[0]] }, '/deliveryIds'],
      [{ reason, deliveryIds: [] }, '/deliveryIds'],
      [{ reason, deliveryIds: ['0'] }, '/deliveryIds/0'],
      [{ reason }, '/deliveryIds'],
      [{ reason, filter: { endSystem: 'no-such-system' } }, '/filter'],
      [{ reason, filter: { state: 'BLOCKED' } }, '/filter/state'],
      [{ reason, filter: { cifId: '12345678901' } }, '/filter/cifId'],
      [{ reason, filter: { from: 'yesterday' } }, '/filter/from'],
      [{ reason, filter: { endSystem: crm, limit: '2' } }, '/filter/limit'],
      [{ reason: 'ok', filter: { endSystem: crm } }, '/reason'],
      [{ filter: { endSystem: crm } }, '/reason']
    ] as const) {
      const refused = await as('maker', 'POST', '/v1/admin/deliveries/redrive', body)
      expect(refused.status, JSON.stringify(body)).toBe(400)
      expect(refused.body.type).toBe(problemType(httpProblems.validationFailed))
      expect(
        refused.body.errors.map((e: { pointer: string }) => e.pointer),
        JSON.stringify(body)
      ).toContain(pointer)
    }
    expect(await requestCount()).toBe(before)
    // Exactly the limit is allowed.
    expect((await as('maker', 'POST', '/v1/admin/deliveries/redrive', { reason, deliveryIds: ids.slice(0, BULK_LIMIT) })).status).toBe(202)
  })
})

describe('requests: bad input and unknown ids', () => {
  it('refuses a state, id or reason it cannot read, naming it, and answers 404 for an unknown request', async () => {
    for (const [method, url, body, field] of [
      ['GET', '/v1/admin/requests?state=LOST', undefined, 'state'],
      ['GET', '/v1/admin/requests?limit=0', undefined, 'limit'],
      ['GET', '/v1/admin/requests?after=x', undefined, 'after'],
      ['GET', '/v1/admin/requests/0', undefined, 'id'],
      ['POST', '/v1/admin/requests/abc/approve', undefined, 'id'],
      ['POST', '/v1/admin/requests/1/reject', {}, '/reason'],
      ['POST', '/v1/admin/requests/1/reject', { reason: 'no\nreally' }, '/reason']
    ] as const) {
      const refused = await as('checker', method, url, body)
      expect(refused.status, url).toBe(400)
      expect(refused.body.type).toBe(problemType(httpProblems.validationFailed))
      const named = refused.body.errors.map((e: { parameter?: string; pointer?: string }) => e.parameter ?? e.pointer)
      expect(named, url).toContain(field)
    }
    expectProblem(await as('checker', 'GET', '/v1/admin/requests/999999999'), syncerProblems.actionRequestNotFound)
    expectProblem(await as('checker', 'POST', '/v1/admin/requests/999999999/approve'), syncerProblems.actionRequestNotFound)
  })
})
