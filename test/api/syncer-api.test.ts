import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import { httpProblems, syncerProblems } from '../../src/contracts/problems.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import type { HttpServer } from '../../src/platform/http/server.ts'
import { type ClaimedDelivery, claimDue, recordAttempts } from '../../src/syncer/delivery/delivery-store.ts'
import type { Decision } from '../../src/syncer/delivery/states.ts'
import { storeEvents } from '../../src/syncer/intake/event-store.ts'
import { sequenceStatusUpdates } from '../../src/syncer/status/sync-status.ts'
import { eventMessage, kafkaMessage } from '../store/fixtures.ts'
import { asSyncer } from '../support/database.ts'
import { devTrustedKeys } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { approverKey, call, keys, operatorKey, problemType, syncerApp, testConfig, withApprover } from './helpers.ts'

// The syncer's callback and admin APIs on their edges, against PostgreSQL alone: the customers, deliveries,
// attempts and statuses they serve are put in the database by the syncer's own stores, as its intake and
// lanes would, with no Kafka and no end system.

let database: OwnDatabase
let app: HttpServer

const END_SYSTEMS = ['cards', 'core-banking', 'crm']
const PORTAL = 'branch-portal'
const ONBOARDING = 'onboarding-app'

// The file has a database of its own, so CIF IDs need only differ within the file.
let sequenceNumber = 1_000_000_000
const newCifId = (): string => cifIdFromNumber(++sequenceNumber)

/** Of the branch portal: version 1 reached core banking and CRM, version 2 waits everywhere. */
const onTrack = newCifId()
/** Of the branch portal: version 1 FAILED in CRM after a retry, so version 2 is BLOCKED there. */
const stuck = newCifId()
/** Of the onboarding app: version 1 reached core banking and CRM. */
const theirs = newCifId()
/** Well-formed, but no event ever named it. */
const unknown = cifIdFromNumber(9_999_999_999)

/** Takes every due delivery of one end system for an attempt, as its lane would; by CIF ID. */
async function claim(endSystem: string): Promise<Map<string, ClaimedDelivery>> {
  const claimed = await claimDue(asSyncer(database.db), endSystem, 10, [60_000])
  return new Map(claimed.map((delivery) => [delivery.cif_id, delivery]))
}

/** Records one attempt's answer on its own, so the statuses it tells come in the order the test records them. */
async function answer(delivery: ClaimedDelivery | undefined, decision: Decision): Promise<void> {
  if (!delivery) throw new Error('no such claimed delivery')
  const startedAt = new Date(Date.now() - 100)
  const failed = decision.state !== 'SUCCESS'
  const [current] = await recordAttempts(asSyncer(database.db), [
    {
      delivery,
      decision,
      attempt: {
        status: failed ? 'ERROR' : 'SUCCESS',
        httpStatus: failed ? 422 : 201,
        message: failed ? 'HTTP 422: {"error":"invalid branch"}' : 'HTTP 201',
        remarks: failed ? 'the end system refused the request' : 'created',
        timeoutMs: 1000,
        startedAt,
        finishedAt: new Date(startedAt.getTime() + 100)
      }
    }
  ])
  if (!current) throw new Error(`delivery ${delivery.id} was no longer this attempt's`)
}

const deliveryId = async (cifId: string, endSystem: string, version: number): Promise<string> =>
  (
    await database.db
      .selectFrom('delivery')
      .select('id')
      .where('cif_id', '=', cifId)
      .where('end_system', '=', endSystem)
      .where('customer_version', '=', version)
      .executeTakeFirstOrThrow()
  ).id

beforeAll(async () => {
  database = await ownDatabase()
  app = await syncerApp(database, testConfig(withApprover))
  const db = asSyncer(database.db)
  await storeEvents(
    db,
    [eventMessage(onTrack, 1, PORTAL), eventMessage(theirs, 1, ONBOARDING), eventMessage(stuck, 1, PORTAL)],
    END_SYSTEMS,
    devTrustedKeys
  )
  const core = await claim('core-banking')
  await answer(core.get(onTrack), { state: 'SUCCESS', externalId: 'CB-1' })
  await answer(core.get(theirs), { state: 'SUCCESS', externalId: 'CB-2' })
  await answer(core.get(stuck), { state: 'SUCCESS', externalId: 'CB-3' })
  const crm = await claim('crm')
  await answer(crm.get(onTrack), { state: 'SUCCESS', externalId: 'CRM-1' })
  await answer(crm.get(theirs), { state: 'SUCCESS', externalId: 'CRM-2' })
  await answer(crm.get(stuck), { state: 'RETRY_SCHEDULED', delayMs: 0 })
  await answer((await claim('crm')).get(stuck), { state: 'FAILED' })
  await storeEvents(db, [eventMessage(onTrack, 2, PORTAL), eventMessage(stuck, 2, PORTAL)], END_SYSTEMS, devTrustedKeys)
  await sequenceStatusUpdates(db)
})
afterAll(async () => {
  await app?.close()
  await database?.close()
})

/** What the feed says, in a form a test can compare: whose, where, what. */
const told = (updates: Record<string, any>[]) => updates.map((u) => `${u.cifId} ${u.endSystem} ${u.kind}`)

/** Every page of a source system's feed from `after`, `limit` at a time, until a page comes back empty. */
async function readFeed(key: string, limit: number, after?: string): Promise<{ pages: Record<string, any>[][]; next: string | undefined }> {
  const pages: Record<string, any>[][] = []
  let cursor = after
  for (;;) {
    const page = await call(app, 'GET', `/v1/sync/updates?limit=${limit}${cursor ? `&after=${cursor}` : ''}`, { key })
    expect(page.status).toBe(200)
    if (page.body.updates.length === 0) {
      // Nothing new: the cursor stays where it was.
      expect(page.body.next).toBe(cursor ?? '0')
      return { pages, next: cursor }
    }
    pages.push(page.body.updates)
    expect(BigInt(page.body.next)).toBeGreaterThan(BigInt(cursor ?? '0'))
    cursor = page.body.next
  }
}

describe('callback API: a customer', () => {
  it('shows a source system its customer, per end system at the latest version', async () => {
    const sync = await call(app, 'GET', `/v1/sync/customers/${onTrack}`)
    expect(sync.status).toBe(200)
    expect(sync.body).toMatchObject({ cifId: onTrack, latestVersion: 2, state: 'IN_PROGRESS' })
    expect(sync.body.endSystems.map((d: Record<string, any>) => [d.endSystem, d.customerVersion, d.state])).toEqual([
      ['cards', 2, 'PENDING'],
      ['core-banking', 2, 'PENDING'],
      ['crm', 2, 'PENDING']
    ])
    const needsAttention = await call(app, 'GET', `/v1/sync/customers/${stuck}`)
    expect(needsAttention.body.state).toBe('NEEDS_ATTENTION')
    expect(needsAttention.body.endSystems.find((d: Record<string, any>) => d.endSystem === 'crm')).toMatchObject({
      customerVersion: 2,
      state: 'BLOCKED'
    })
  })

  it('answers another source system’s customer exactly as one that does not exist', async () => {
    // The onboarding app sees its customer: the branch portal's 404 below is about whose it is.
    expect((await call(app, 'GET', `/v1/sync/customers/${theirs}`, { key: keys.onboardingApp })).status).toBe(200)
    const foreign = await call(app, 'GET', `/v1/sync/customers/${theirs}`)
    const missing = await call(app, 'GET', `/v1/sync/customers/${unknown}`)
    expect(foreign.status).toBe(404)
    expect(foreign.body.type).toBe(problemType(syncerProblems.customerNotFound))
    expect(missing.status).toBe(404)
    // Nothing in the answer, but the CIF ID asked for, tells a caller that the customer exists.
    expect(JSON.stringify(foreign.body).replaceAll(theirs, '<cifId>')).toBe(JSON.stringify(missing.body).replaceAll(unknown, '<cifId>'))
    expect((await call(app, 'GET', `/v1/sync/customers/${onTrack}`, { key: keys.onboardingApp })).status).toBe(404)
  })

  it('shows another source system’s customer to a source system granted read-all', async () => {
    const granted = await syncerApp(database, testConfig({ CIF_SOURCE_SYSTEM_GRANTS: 'onboarding-app:read-all' }))
    try {
      const read = await call(granted, 'GET', `/v1/sync/customers/${onTrack}`, { key: keys.onboardingApp })
      expect(read.status).toBe(200)
      expect(read.body.cifId).toBe(onTrack)
      // The grant widens reads, not the feed: that stays each source system's own.
      const feed = await call(granted, 'GET', '/v1/sync/updates?limit=500', { key: keys.onboardingApp })
      expect(feed.body.updates.every((u: { cifId: string }) => u.cifId !== onTrack)).toBe(true)
    } finally {
      await granted.close()
    }
  })

  it('refuses a CIF ID with a wrong check digit or the wrong shape, naming cifId', async () => {
    const wrongCheckDigit = `${onTrack.slice(0, 10)}${(Number(onTrack[10]) + 1) % 10}`
    const mistyped = await call(app, 'GET', `/v1/sync/customers/${wrongCheckDigit}`)
    expect(mistyped.status).toBe(400)
    expect(mistyped.body.type).toBe(problemType(httpProblems.validationFailed))
    expect(mistyped.body.errors).toEqual([{ parameter: 'cifId', detail: 'has a wrong check digit' }])
    const tooShort = await call(app, 'GET', `/v1/sync/customers/${onTrack.slice(0, 10)}`)
    expect(tooShort.status).toBe(400)
    expect(tooShort.body.errors.map((e: { parameter: string }) => e.parameter)).toEqual(['cifId'])
  })

  it('requires a source system’s key: none, an unknown one or an operator’s is 401', async () => {
    for (const key of [null, 'no-such-key-anywhere', operatorKey]) {
      const refused = await call(app, 'GET', `/v1/sync/customers/${onTrack}`, { key })
      expect(refused.status, `key ${key}`).toBe(401)
      expect(refused.body.type).toBe(problemType(httpProblems.unauthorized))
      expect(refused.headers.get('www-authenticate')).toBe('Bearer')
    }
  })
})

describe('callback API: the updates feed', () => {
  it('pages through a source system’s status changes in order, with after and next', async () => {
    const { pages } = await readFeed(keys.branchPortal, 2)
    expect(pages.map((page) => page.length)).toEqual([2, 2, 1])
    expect(told(pages.flat())).toEqual([
      `${onTrack} core-banking DELIVERED`,
      `${stuck} core-banking DELIVERED`,
      `${onTrack} crm DELIVERED`,
      `${stuck} crm RETRYING`,
      `${stuck} crm FAILED`
    ])
    // One page that holds it all says the same.
    const whole = await call(app, 'GET', '/v1/sync/updates')
    expect(whole.body.updates).toEqual(pages.flat())
  })

  it('serves each source system only its own customers’ changes', async () => {
    const { pages } = await readFeed(keys.onboardingApp, 500)
    expect(told(pages.flat())).toEqual([`${theirs} core-banking DELIVERED`, `${theirs} crm DELIVERED`])
  })

  it('refuses a limit out of 1 to 500, a cursor that is not a position and an unknown parameter, naming each', async () => {
    for (const [query, parameter] of [
      ['limit=0', 'limit'],
      ['limit=501', 'limit'],
      ['limit=-1', 'limit'],
      ['limit=ten', 'limit'],
      ['after=nope', 'after'],
      ['after=-5', 'after'],
      ['since=1', 'since']
    ] as const) {
      const refused = await call(app, 'GET', `/v1/sync/updates?${query}`)
      expect(refused.status, query).toBe(400)
      expect(refused.body.type).toBe(problemType(httpProblems.validationFailed))
      expect(
        refused.body.errors.map((e: { parameter: string }) => e.parameter),
        query
      ).toEqual([parameter])
    }
    // The edges themselves are in range.
    expect((await call(app, 'GET', '/v1/sync/updates?limit=1')).body.updates).toHaveLength(1)
    expect((await call(app, 'GET', '/v1/sync/updates?limit=500')).status).toBe(200)
  })
})

const admin = (method: 'GET' | 'POST', url: string, body?: unknown) => call(app, method, url, { key: operatorKey, body })
const ids = (rows: { deliveryId: string }[]) => rows.map((row) => row.deliveryId)

describe('admin API: who may use it', () => {
  it('requires an operator’s key: none, an unknown one or a source system’s is 401', async () => {
    for (const key of [null, 'no-such-key-anywhere', keys.branchPortal]) {
      for (const [method, url] of [
        ['GET', '/v1/admin/deliveries'],
        ['GET', '/v1/admin/attempts'],
        ['GET', '/v1/admin/summary'],
        ['GET', '/v1/admin/unreadable-messages'],
        ['POST', `/v1/admin/deliveries/${await deliveryId(stuck, 'crm', 1)}/redrive`]
      ] as const) {
        const refused = await call(app, method, url, { key, body: method === 'POST' ? { reason: 'let me in' } : undefined })
        expect(refused.status, `${method} ${url} with ${key}`).toBe(401)
        expect(refused.body.type).toBe(problemType(httpProblems.unauthorized))
      }
    }
    expect((await admin('GET', '/v1/admin/deliveries')).status).toBe(200)
    // The refused redrive did nothing.
    expect((await admin('GET', '/v1/admin/deliveries?state=FAILED')).body.deliveries).toHaveLength(1)
  })
})

describe('the OpenAPI document', () => {
  it('says which key each API takes: the admin API an operator’s, the callback API a source system’s', async () => {
    const { body } = await call(app, 'GET', '/openapi.json', { key: null })
    expect(Object.keys(body.components.securitySchemes).sort()).toEqual(['operatorKey', 'sourceSystemKey'])
    const security = (path: string) => Object.values<{ security?: unknown }>(body.paths[path]).map((operation) => operation.security)
    expect(security('/v1/admin/deliveries')).toEqual([[{ operatorKey: [] }]])
    expect(security('/v1/admin/deliveries/{id}/redrive')).toEqual([[{ operatorKey: [] }]])
    expect(security('/v1/sync/customers/{cifId}')).toEqual([[{ sourceSystemKey: [] }]])
  })
})

describe('admin API: the messages kept as unreadable', () => {
  it('lists them with where they were and why, never what they held, by key and time, paged', async () => {
    const [first, second] = [newCifId(), newCifId()]
    await storeEvents(
      asSyncer(database.db),
      [kafkaMessage(first, 'not json, and Ada Lovelace’s email ada@example.com'), kafkaMessage(second, '{"type":"payment.made"}')],
      END_SYSTEMS,
      devTrustedKeys
    )
    const all = (await admin('GET', '/v1/admin/unreadable-messages')).body.messages
    const mine = all.filter((m: { key: string }) => m.key === first || m.key === second)
    expect(mine).toEqual([
      {
        id: expect.any(String),
        topic: 'cif.customer.events',
        partition: 0,
        offset: expect.stringMatching(/^[0-9]+$/),
        key: first,
        reason: 'not JSON',
        receivedAt: expect.any(String),
        characters: 50
      },
      expect.objectContaining({ key: second, reason: 'not a CIF customer event (type "payment.made")', characters: 23 })
    ])
    expect(JSON.stringify(all)).not.toMatch(/Lovelace|ada@example/)
    expect((await admin('GET', `/v1/admin/unreadable-messages?key=${second}`)).body.messages).toEqual([mine[1]])
    expect((await admin('GET', `/v1/admin/unreadable-messages?after=${mine[0].id}&limit=1`)).body.messages).toEqual([mine[1]])
    const later = new Date(Date.now() + 60_000).toISOString()
    expect((await admin('GET', `/v1/admin/unreadable-messages?from=${later}`)).body.messages).toEqual([])
    expect((await admin('GET', `/v1/admin/unreadable-messages?to=${later}&key=${first}`)).body.messages).toEqual([mine[0]])
    const refused = await admin('GET', '/v1/admin/unreadable-messages?from=yesterday&limit=0')
    expect(refused.status).toBe(400)
    expect(refused.body.errors.map((e: { parameter: string }) => e.parameter).sort()).toEqual(['from', 'limit'])
  })
})

describe('admin API: finding deliveries and attempts', () => {
  it('filters deliveries by state, end system and CIF ID', async () => {
    const failed = await admin('GET', '/v1/admin/deliveries?state=FAILED')
    expect(failed.status).toBe(200)
    expect(failed.body.deliveries).toEqual([
      expect.objectContaining({
        cifId: stuck,
        endSystem: 'crm',
        customerVersion: 1,
        state: 'FAILED',
        attempts: 2,
        lastError: 'HTTP 422: {"error":"invalid branch"}'
      })
    ])
    const blocked = (await admin('GET', '/v1/admin/deliveries?state=BLOCKED')).body.deliveries
    expect(blocked.map((d: Record<string, any>) => [d.cifId, d.endSystem, d.customerVersion])).toEqual([[stuck, 'crm', 2]])
    expect(blocked[0].remarks).toContain(`waits behind delivery ${failed.body.deliveries[0].deliveryId}`)

    const crm = (await admin('GET', '/v1/admin/deliveries?endSystem=crm')).body.deliveries
    expect(crm).toHaveLength(5)
    expect(crm.every((d: { endSystem: string }) => d.endSystem === 'crm')).toBe(true)
    const onTrackAll = (await admin('GET', `/v1/admin/deliveries?cifId=${onTrack}`)).body.deliveries
    expect(onTrackAll).toHaveLength(6)
    expect(onTrackAll.every((d: { cifId: string }) => d.cifId === onTrack)).toBe(true)
    const onTrackCrm = (await admin('GET', `/v1/admin/deliveries?cifId=${onTrack}&endSystem=crm`)).body.deliveries
    expect(onTrackCrm.map((d: Record<string, any>) => [d.customerVersion, d.state, d.externalId])).toEqual([
      [1, 'SUCCESS', 'CRM-1'],
      [2, 'PENDING', null]
    ])
    expect((await admin('GET', `/v1/admin/deliveries?cifId=${unknown}`)).body.deliveries).toEqual([])
  })

  it('filters attempts by status and delivery', async () => {
    const failedId = await deliveryId(stuck, 'crm', 1)
    const errors = (await admin('GET', '/v1/admin/attempts?status=ERROR')).body.attempts
    expect(errors.map((a: Record<string, any>) => [a.deliveryId, a.attemptNumber, a.status, a.httpStatus])).toEqual([
      [failedId, 1, 'ERROR', 422],
      [failedId, 2, 'ERROR', 422]
    ])
    expect((await admin('GET', `/v1/admin/attempts?deliveryId=${failedId}`)).body.attempts).toEqual(errors)
    const delivered = (await admin('GET', `/v1/admin/attempts?deliveryId=${await deliveryId(onTrack, 'crm', 1)}`)).body.attempts
    expect(delivered).toEqual([expect.objectContaining({ cifId: onTrack, endSystem: 'crm', attemptNumber: 1, status: 'SUCCESS', httpStatus: 201 })])
    const coreSuccesses = (await admin('GET', '/v1/admin/attempts?endSystem=core-banking&status=SUCCESS')).body.attempts
    expect(coreSuccesses.map((a: { cifId: string }) => a.cifId)).toEqual([onTrack, theirs, stuck])
  })

  it('refuses a filter it does not know the value of, naming it', async () => {
    for (const [url, parameter] of [
      ['/v1/admin/deliveries?state=LOST', 'state'],
      ['/v1/admin/deliveries?cifId=123', 'cifId'],
      ['/v1/admin/deliveries?limit=0', 'limit'],
      ['/v1/admin/attempts?status=TIMEOUT', 'status'],
      ['/v1/admin/attempts?deliveryId=first', 'deliveryId'],
      ['/v1/admin/attempts?from=yesterday', 'from']
    ] as const) {
      const refused = await admin('GET', url)
      expect(refused.status, url).toBe(400)
      expect(refused.body.type).toBe(problemType(httpProblems.validationFailed))
      expect(
        refused.body.errors.map((e: { parameter: string }) => e.parameter),
        url
      ).toEqual([parameter])
    }
  })

  it('counts deliveries by end system and state', async () => {
    const summary = await admin('GET', '/v1/admin/summary')
    expect(summary.status).toBe(200)
    expect(summary.body.counts).toEqual([
      { endSystem: 'cards', state: 'PENDING', count: 5 },
      { endSystem: 'core-banking', state: 'PENDING', count: 2 },
      { endSystem: 'core-banking', state: 'SUCCESS', count: 3 },
      { endSystem: 'crm', state: 'BLOCKED', count: 1 },
      { endSystem: 'crm', state: 'FAILED', count: 1 },
      { endSystem: 'crm', state: 'PENDING', count: 1 },
      { endSystem: 'crm', state: 'SUCCESS', count: 2 }
    ])
  })
})

const operatorActionsOn = (id: string) =>
  database.db.selectFrom('operator_action').select(['action', 'operator', 'reason', 'from_state']).where('delivery_id', '=', id).execute()

describe('admin API: roles', () => {
  it('lets an operator with the role viewer look, but not redrive or skip, and writes nothing for the refusal', async () => {
    const auditorKey = 'test-auditor-key'
    const roles = await syncerApp(
      database,
      testConfig({
        SYNCER_OPERATORS: `test-operator=${apiKeyHash(operatorKey)},auditor=${apiKeyHash(auditorKey)}`,
        SYNCER_OPERATOR_ROLES: 'auditor:viewer'
      })
    )
    try {
      const failed = await deliveryId(stuck, 'crm', 1)
      expect((await call(roles, 'GET', `/v1/admin/deliveries?cifId=${stuck}`, { key: auditorKey })).status).toBe(200)
      for (const action of ['redrive', 'skip']) {
        const refused = await call(roles, 'POST', `/v1/admin/deliveries/${failed}/${action}`, { key: auditorKey, body: { reason: 'just looking' } })
        expect(refused.status, action).toBe(403)
        expect(refused.body.type).toBe(problemType(httpProblems.forbidden))
      }
      expect(await operatorActionsOn(failed)).toEqual([])
    } finally {
      await roles.close()
    }
    expect(() => testConfig({ SYNCER_OPERATOR_ROLES: 'test-operator:admin' })).toThrow(
      /must look like name:role, role one of viewer, operator, approver/
    )
    expect(() => testConfig({ SYNCER_OPERATOR_ROLES: 'nobody:viewer' })).toThrow(/not an operator/)
  })
})

describe('admin API: refused redrives and skips change nothing', () => {
  it('refuses to redrive a delivery that is not FAILED, or to ask to skip one that is neither FAILED nor BLOCKED, saying its state', async () => {
    const delivered = await deliveryId(onTrack, 'crm', 1)
    const redrive = await admin('POST', `/v1/admin/deliveries/${delivered}/redrive`, { reason: 'crm lost it' })
    expect(redrive.status).toBe(409)
    expect(redrive.body.type).toBe(problemType(syncerProblems.deliveryStateConflict))
    expect(redrive.body.state).toBe('SUCCESS')
    const waiting = await deliveryId(onTrack, 'crm', 2)
    const skip = await admin('POST', `/v1/admin/deliveries/${waiting}/skip`, { reason: 'not needed' })
    expect(skip.status).toBe(409)
    expect(skip.body).toMatchObject({ type: problemType(syncerProblems.deliveryStateConflict), state: 'PENDING' })
    const blocked = await admin('POST', `/v1/admin/deliveries/${await deliveryId(stuck, 'crm', 2)}/redrive`, { reason: 'try it anyway' })
    expect(blocked.body).toMatchObject({ type: problemType(syncerProblems.deliveryStateConflict), state: 'BLOCKED' })

    expect((await operatorActionsOn(delivered)).concat(await operatorActionsOn(waiting))).toEqual([])
    const after = (await admin('GET', `/v1/admin/deliveries?cifId=${onTrack}&endSystem=crm`)).body.deliveries
    expect(after.map((d: { state: string }) => d.state)).toEqual(['SUCCESS', 'PENDING'])
  })

  it('answers 404 for a delivery that does not exist', async () => {
    for (const action of ['redrive', 'skip']) {
      const missing = await admin('POST', `/v1/admin/deliveries/999999999/${action}`, { reason: 'no such thing' })
      expect(missing.status, action).toBe(404)
      expect(missing.body.type).toBe(problemType(syncerProblems.deliveryNotFound))
    }
  })

  it('requires a reason of at least 3 characters and a delivery id, naming what is wrong', async () => {
    const failed = await deliveryId(stuck, 'crm', 1)
    const tooShort = await admin('POST', `/v1/admin/deliveries/${failed}/redrive`, { reason: 'ok' })
    expect(tooShort.status).toBe(400)
    expect(tooShort.body.type).toBe(problemType(httpProblems.validationFailed))
    expect(tooShort.body.errors.map((e: { pointer: string }) => e.pointer)).toEqual(['/reason'])
    const none = await admin('POST', `/v1/admin/deliveries/${failed}/redrive`, {})
    expect(none.body.errors.map((e: { pointer: string }) => e.pointer)).toEqual(['/reason'])
    const notAnId = await admin('POST', '/v1/admin/deliveries/0/redrive', { reason: 'the first one' })
    expect(notAnId.status).toBe(400)
    expect(notAnId.body.errors.map((e: { parameter: string }) => e.parameter)).toEqual(['id'])
    expect(await operatorActionsOn(failed)).toEqual([])
    expect(ids((await admin('GET', '/v1/admin/deliveries?state=FAILED')).body.deliveries)).toEqual([failed])
  })
})

// These change deliveries, so they come last: the counts above are of the deliveries as stored.
describe('admin API: redrive and skip', () => {
  it('tells an approved skip on the feed once it has its position, after the cursor, to the owner only', async () => {
    const { next: cursor } = await readFeed(keys.branchPortal, 500)
    const { next: theirCursor } = await readFeed(keys.onboardingApp, 500)
    const blocked = await deliveryId(stuck, 'crm', 2)
    const asked = await admin('POST', `/v1/admin/deliveries/${blocked}/skip`, { reason: 'the branch closed this account' })
    expect(asked.status).toBe(202)
    // Asked for, not yet approved: nothing is told.
    expect((await readFeed(keys.branchPortal, 500, cursor)).pages).toEqual([])
    const approved = await call(app, 'POST', `/v1/admin/requests/${asked.body.requestId}/approve`, { key: approverKey })
    expect(approved.body).toMatchObject({ state: 'APPROVED', appliedTo: [blocked] })
    const [skipped] = (await admin('GET', `/v1/admin/deliveries?cifId=${stuck}&endSystem=crm&state=SKIPPED`)).body.deliveries
    expect(skipped).toMatchObject({
      deliveryId: blocked,
      remarks: 'skipped by test-operator, approved by test-approver: the branch closed this account'
    })
    // Not yet sequenced: a poller at the cursor sees nothing, and later misses nothing.
    expect((await readFeed(keys.branchPortal, 500, cursor)).pages).toEqual([])
    await sequenceStatusUpdates(asSyncer(database.db))
    const { pages } = await readFeed(keys.branchPortal, 500, cursor)
    expect(told(pages.flat())).toEqual([`${stuck} crm SKIPPED`])
    expect((await readFeed(keys.onboardingApp, 500, theirCursor)).pages).toEqual([])
  })

  it('redrives a FAILED delivery, recording who, why and from which state', async () => {
    const failed = await deliveryId(stuck, 'crm', 1)
    const redriven = await admin('POST', `/v1/admin/deliveries/${failed}/redrive`, { reason: 'crm fixed its branch list' })
    expect(redriven.status).toBe(200)
    expect(redriven.body).toMatchObject({ deliveryId: failed, state: 'PENDING', remarks: 'redriven by test-operator: crm fixed its branch list' })
    expect(await operatorActionsOn(failed)).toEqual([
      { action: 'REDRIVE', operator: 'test-operator', reason: 'crm fixed its branch list', from_state: 'FAILED' }
    ])
    const again = await admin('POST', `/v1/admin/deliveries/${failed}/redrive`, { reason: 'crm fixed its branch list' })
    expect(again.status).toBe(409)
    expect(again.body.state).toBe('PENDING')
    expect(ids((await admin('GET', '/v1/admin/deliveries?state=FAILED')).body.deliveries)).toEqual([])
  })
})
