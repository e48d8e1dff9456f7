import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import { httpProblems, type ProblemType, syncerProblems } from '../../src/contracts/problems.ts'
import type { HttpServer } from '../../src/platform/http/server.ts'
import { findAttempts, findDeliveries } from '../../src/syncer/api/read-model.ts'
import { claimDue } from '../../src/syncer/delivery/delivery-store.ts'
import { storeEvents } from '../../src/syncer/intake/event-store.ts'
import { sequenceStatusUpdates } from '../../src/syncer/status/sync-status.ts'
import { decisions, eventMessage, record } from '../store/fixtures.ts'
import { asSyncer } from '../support/database.ts'
import { devTrustedKeys } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { approverKey, call, keys, operatorKey, problemType, syncerApp, testConfig, withApprover } from './helpers.ts'

// The syncer's admin and callback APIs against what a hostile or careless client sends: every input that
// reaches PostgreSQL or a Date is refused at the edge with a 400 naming the field, never a 500, and a
// refused redrive or skip writes nothing. Nothing here needs Kafka or a socket: inject sends any URL.

let database: OwnDatabase
let app: HttpServer

const PORTAL = 'branch-portal'
const END_SYSTEMS = ['core-banking', 'crm']
// The file has a database of its own, so CIF IDs need only differ within the file.
const toRedrive = cifIdFromNumber(1_000_000_001)
const toSkip = cifIdFromNumber(1_000_000_002)
/** The redrive target's CRM delivery and the skip target's, both FAILED after one attempt. */
const failed = { redrive: '', skip: '' }

beforeAll(async () => {
  database = await ownDatabase()
  app = await syncerApp(database, testConfig(withApprover))
  const db = asSyncer(database.db)
  await storeEvents(db, [eventMessage(toRedrive, 1, PORTAL), eventMessage(toSkip, 1, PORTAL)], END_SYSTEMS, devTrustedKeys)
  for (const delivery of await claimDue(db, 'crm', 10, [60_000])) {
    await record(database.db, delivery, decisions.fail())
    failed[delivery.cif_id === toRedrive ? 'redrive' : 'skip'] = delivery.id
  }
  await sequenceStatusUpdates(db)
})
afterAll(async () => {
  await app?.close()
  await database?.close()
})

const admin = (method: 'GET' | 'POST', url: string, body?: unknown) => call(app, method, url, { key: operatorKey, body })

describe('well-formed requests are answered', () => {
  it('finds deliveries and attempts by every filter, at the edges of the date-times accepted', async () => {
    const filters = `cifId=${toRedrive}&endSystem=crm&from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59.999999Z&limit=500&after=0`
    const deliveries = await admin('GET', `/v1/admin/deliveries?${filters}&state=FAILED`)
    expect(deliveries.status).toBe(200)
    expect(deliveries.body.deliveries.map((d: { deliveryId: string }) => d.deliveryId)).toEqual([failed.redrive])
    const attempts = await admin('GET', `/v1/admin/attempts?${filters}&status=ERROR&deliveryId=${failed.redrive}`)
    expect(attempts.status).toBe(200)
    expect(attempts.body.attempts).toHaveLength(1)
    // Offsets to ±15:59 (PostgreSQL's limit), minus zero and a fraction: RFC 3339 as both ends read it.
    for (const [from, to] of [
      ['2000-01-01T00:00:00+15:59', '2999-12-31T23:59:59-15:59'],
      ['2000-01-01T00:00:00.5-00:00', '9999-12-31T23:59:59-15:59'],
      ['0001-01-01T00:00:00+15:59', '2999-02-28T12:00:00.123456789+05:30']
    ] as [string, string][]) {
      const answer = await admin('GET', `/v1/admin/deliveries?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}&endSystem=crm`)
      expect(answer.status, `${from} ${to}`).toBe(200)
      expect(answer.body.deliveries, `${from} ${to}`).toHaveLength(2)
    }
    expect((await admin('GET', '/v1/admin/summary')).status).toBe(200)
    expect((await call(app, 'GET', `/v1/sync/customers/${toRedrive}`)).status).toBe(200)
    expect((await call(app, 'GET', '/v1/sync/updates?after=0&limit=1')).body.updates).toHaveLength(1)
  })

  it('reads a from or to to the microsecond, as PostgreSQL stores it', async () => {
    // A Date would keep milliseconds only, and cut .000501 to .000: the filter would take in a row it must not.
    await database.db
      .updateTable('delivery')
      .set({
        created_at: (eb) => eb.fn('make_timestamptz', [eb.val(2030), eb.val(1), eb.val(1), eb.val(0), eb.val(0), eb.val(0.0005), eb.val('UTC')])
      })
      .where('id', '=', failed.skip)
      .execute()
    const found = async (query: string) =>
      (await admin('GET', `/v1/admin/deliveries?endSystem=crm&${query}`)).body.deliveries.map((d: { deliveryId: string }) => d.deliveryId)
    expect(await found('from=2030-01-01T00:00:00.0005Z')).toEqual([failed.skip])
    expect(await found('from=2030-01-01T00:00:00.000501Z')).toEqual([])
    expect(await found('from=2029-12-31T23:00:00Z&to=2030-01-01T00:00:00.000501Z')).toEqual([failed.skip])
    expect(await found('from=2029-12-31T23:00:00Z&to=2030-01-01T00:00:00.0005Z')).toEqual([])
  })
})

interface Case {
  name: string
  method?: 'GET' | 'POST'
  /** `{redrive}` and `{skip}` stand for the FAILED deliveries seeded above. */
  url: string
  body?: unknown
  raw?: string
  headers?: Record<string, string>
  /** Whose key: the operator's on /v1/admin, the branch portal's on /v1/sync, unless another (or none) is given. */
  key?: string | null
  status: number
  /** The query or path parameter the problem must name. */
  parameter?: string
  /** The JSON Pointer into the body the problem must name. */
  pointer?: string
  /** The problem type, when it is not validation-failed. */
  problem?: ProblemType
}

const long = 'a'.repeat(10_000)
const arabicDigits = '١٠٠٠٠٠٠٠٠٠١'
const leapSecond = '2026-06-30T23:59:60Z'
const reason = (value: unknown): { reason: unknown } => ({ reason: value })

const adminCases: Case[] = [
  // Free text that reaches PostgreSQL: a NUL byte is a PostgreSQL error, other control characters are log injection.
  { name: 'endSystem with a NUL byte', url: '/v1/admin/deliveries?endSystem=a%00b', status: 400, parameter: 'endSystem' },
  { name: 'endSystem with an escape sequence', url: '/v1/admin/deliveries?endSystem=%1B%5B31mcrm', status: 400, parameter: 'endSystem' },
  { name: 'endSystem with a newline', url: '/v1/admin/deliveries?endSystem=crm%0Aadmin', status: 400, parameter: 'endSystem' },
  { name: 'endSystem with a bidi override', url: '/v1/admin/deliveries?endSystem=%E2%80%AEmrc', status: 400, parameter: 'endSystem' },
  { name: 'endSystem 10,000 characters', url: `/v1/admin/deliveries?endSystem=${long}`, status: 400, parameter: 'endSystem' },
  { name: 'endSystem empty', url: '/v1/admin/deliveries?endSystem=', status: 400, parameter: 'endSystem' },
  { name: 'endSystem given twice', url: '/v1/admin/deliveries?endSystem=crm&endSystem=cards', status: 400, parameter: 'endSystem' },
  { name: 'attempts: endSystem with a NUL byte', url: '/v1/admin/attempts?endSystem=crm%00', status: 400, parameter: 'endSystem' },
  { name: 'cifId with a NUL byte', url: `/v1/admin/deliveries?cifId=${toRedrive.slice(0, 10)}%00`, status: 400, parameter: 'cifId' },
  { name: 'cifId in Arabic-Indic digits', url: `/v1/admin/deliveries?cifId=${arabicDigits}`, status: 400, parameter: 'cifId' },
  {
    name: 'cifId with a wrong check digit',
    url: `/v1/admin/attempts?cifId=${toRedrive.slice(0, 10)}${(Number(toRedrive[10]) + 1) % 10}`,
    status: 400,
    parameter: 'cifId'
  },
  { name: 'cifId as a path traversal', url: '/v1/admin/deliveries?cifId=..%2F..%2Fetc%2Fpasswd', status: 400, parameter: 'cifId' },
  { name: 'state with a NUL byte', url: '/v1/admin/deliveries?state=FAILED%00', status: 400, parameter: 'state' },
  { name: 'state in lower case', url: '/v1/admin/deliveries?state=failed', status: 400, parameter: 'state' },
  { name: 'status with a NUL byte', url: '/v1/admin/attempts?status=ERROR%00', status: 400, parameter: 'status' },
  // Date-times the date-time format lets through but a Date or PostgreSQL cannot read, or reads otherwise.
  { name: 'from a leap second', url: `/v1/admin/deliveries?from=${leapSecond}`, status: 400, parameter: 'from' },
  { name: 'to a leap second', url: `/v1/admin/attempts?to=${leapSecond}`, status: 400, parameter: 'to' },
  { name: 'from an offset without minutes', url: '/v1/admin/deliveries?from=2026-01-01T00:00:00%2B05', status: 400, parameter: 'from' },
  { name: 'to an offset without a colon', url: '/v1/admin/attempts?to=2026-01-01T00:00:00%2B0530', status: 400, parameter: 'to' },
  { name: 'from an offset beyond PostgreSQL’s ±15:59', url: '/v1/admin/deliveries?from=2026-01-01T00:00:00%2B23:59', status: 400, parameter: 'from' },
  { name: 'from with a space for T', url: '/v1/admin/deliveries?from=2026-01-01%2000:00:00Z', status: 400, parameter: 'from' },
  { name: 'from without an offset', url: '/v1/admin/deliveries?from=2026-01-01T00:00:00', status: 400, parameter: 'from' },
  { name: 'from in year 0', url: '/v1/admin/deliveries?from=0000-01-01T00:00:00Z', status: 400, parameter: 'from' },
  { name: 'to in year 275760', url: '/v1/admin/deliveries?to=%2B275760-09-13T00:00:01Z', status: 400, parameter: 'to' },
  { name: 'from in month 13', url: '/v1/admin/attempts?from=2026-13-01T00:00:00Z', status: 400, parameter: 'from' },
  { name: 'from on 30 February', url: '/v1/admin/deliveries?from=2026-02-30T00:00:00Z', status: 400, parameter: 'from' },
  { name: 'from at hour 24', url: '/v1/admin/deliveries?from=2026-01-01T24:00:00Z', status: 400, parameter: 'from' },
  {
    name: 'from with a 20-digit fraction',
    url: '/v1/admin/deliveries?from=2026-01-01T00:00:00.12345678901234567890Z',
    status: 400,
    parameter: 'from'
  },
  { name: 'from with a NUL byte', url: '/v1/admin/deliveries?from=2026-01-01T00:00:00Z%00', status: 400, parameter: 'from' },
  { name: 'from in Arabic-Indic digits', url: '/v1/admin/deliveries?from=%D9%A2%D9%A0%D9%A2%D9%A6-01-01T00:00:00Z', status: 400, parameter: 'from' },
  { name: 'from a Unix time', url: '/v1/admin/deliveries?from=1767225600', status: 400, parameter: 'from' },
  // Numbers as a query string gives them: ASCII digits only, in range, without sign or exponent.
  { name: 'limit in Arabic-Indic digits', url: '/v1/admin/deliveries?limit=%D9%A1%D9%A0', status: 400, parameter: 'limit' },
  { name: 'limit with a plus sign', url: '/v1/admin/deliveries?limit=%2B1', status: 400, parameter: 'limit' },
  { name: 'limit with an exponent', url: '/v1/admin/attempts?limit=1e3', status: 400, parameter: 'limit' },
  { name: 'limit with a leading zero', url: '/v1/admin/deliveries?limit=010', status: 400, parameter: 'limit' },
  { name: 'limit in hexadecimal', url: '/v1/admin/deliveries?limit=0x10', status: 400, parameter: 'limit' },
  { name: 'limit with a trailing newline', url: '/v1/admin/deliveries?limit=10%0A', status: 400, parameter: 'limit' },
  { name: 'after beyond bigint', url: '/v1/admin/deliveries?after=9223372036854775808', status: 400, parameter: 'after' },
  { name: 'after negative', url: '/v1/admin/attempts?after=-1', status: 400, parameter: 'after' },
  { name: 'after with a NUL byte', url: '/v1/admin/deliveries?after=1%00', status: 400, parameter: 'after' },
  { name: 'deliveryId beyond bigint', url: '/v1/admin/attempts?deliveryId=9223372036854775808', status: 400, parameter: 'deliveryId' },
  { name: 'deliveryId 0', url: '/v1/admin/attempts?deliveryId=0', status: 400, parameter: 'deliveryId' },
  { name: 'deliveryId with a leading zero', url: '/v1/admin/attempts?deliveryId=01', status: 400, parameter: 'deliveryId' },
  { name: 'deliveryId a fraction', url: '/v1/admin/attempts?deliveryId=1.5', status: 400, parameter: 'deliveryId' },
  { name: 'unknown filter', url: '/v1/admin/deliveries?sort=id', status: 400, parameter: 'sort' },
  { name: 'filter named __proto__', url: '/v1/admin/deliveries?__proto__=x', status: 400, parameter: '__proto__' },
  { name: 'summary with a filter it has none of', url: '/v1/admin/summary?endSystem=a%00b', status: 400, parameter: 'endSystem' },
  // Redrive and skip: the reason is written to PostgreSQL and shown in remarks, logs and the status feed.
  {
    name: 'reason with a NUL byte',
    method: 'POST',
    url: '/v1/admin/deliveries/{redrive}/redrive',
    body: reason('crm\u0000fixed'),
    status: 400,
    pointer: '/reason'
  },
  {
    name: 'reason with a newline',
    method: 'POST',
    url: '/v1/admin/deliveries/{redrive}/redrive',
    body: reason('crm fixed\nINFO all good'),
    status: 400,
    pointer: '/reason'
  },
  {
    name: 'reason with a tab',
    method: 'POST',
    url: '/v1/admin/deliveries/{skip}/skip',
    body: reason('not\tneeded'),
    status: 400,
    pointer: '/reason'
  },
  {
    name: 'reason with an escape sequence',
    method: 'POST',
    url: '/v1/admin/deliveries/{skip}/skip',
    body: reason('\u001b[2Jgone'),
    status: 400,
    pointer: '/reason'
  },
  {
    name: 'reason with a bidi override',
    method: 'POST',
    url: '/v1/admin/deliveries/{redrive}/redrive',
    body: reason('fixed \u202edexif ton'),
    status: 400,
    pointer: '/reason'
  },
  {
    name: 'reason with a line separator',
    method: 'POST',
    url: '/v1/admin/deliveries/{redrive}/redrive',
    body: reason('fixed\u2028forged'),
    status: 400,
    pointer: '/reason'
  },
  {
    name: 'reason with a lone surrogate',
    method: 'POST',
    url: '/v1/admin/deliveries/{redrive}/redrive',
    raw: '{"reason":"fixed \\ud800"}',
    status: 400,
    pointer: '/reason'
  },
  { name: 'reason only spaces', method: 'POST', url: '/v1/admin/deliveries/{skip}/skip', body: reason('     '), status: 400, pointer: '/reason' },
  {
    name: 'reason 501 characters',
    method: 'POST',
    url: '/v1/admin/deliveries/{skip}/skip',
    body: reason('a'.repeat(501)),
    status: 400,
    pointer: '/reason'
  },
  { name: 'reason a number', method: 'POST', url: '/v1/admin/deliveries/{redrive}/redrive', body: reason(42), status: 400, pointer: '/reason' },
  { name: 'reason null', method: 'POST', url: '/v1/admin/deliveries/{redrive}/redrive', body: reason(null), status: 400, pointer: '/reason' },
  {
    name: 'reason an array',
    method: 'POST',
    url: '/v1/admin/deliveries/{skip}/skip',
    body: reason(['crm', 'fixed']),
    status: 400,
    pointer: '/reason'
  },
  {
    name: 'unknown field',
    method: 'POST',
    url: '/v1/admin/deliveries/{redrive}/redrive',
    body: { reason: 'crm fixed', force: true },
    status: 400,
    pointer: '/force'
  },
  { name: 'body an array', method: 'POST', url: '/v1/admin/deliveries/{redrive}/redrive', body: [reason('crm fixed')], status: 400, pointer: '/' },
  { name: 'body a string', method: 'POST', url: '/v1/admin/deliveries/{skip}/skip', raw: '"crm fixed"', status: 400, pointer: '/' },
  { name: 'body null', method: 'POST', url: '/v1/admin/deliveries/{skip}/skip', raw: 'null', status: 400, pointer: '/' },
  {
    name: 'body __proto__',
    method: 'POST',
    url: '/v1/admin/deliveries/{redrive}/redrive',
    raw: '{"__proto__":{"admin":true},"reason":"crm fixed"}',
    status: 400,
    problem: httpProblems.malformedBody
  },
  {
    name: 'malformed JSON',
    method: 'POST',
    url: '/v1/admin/deliveries/{redrive}/redrive',
    raw: '{"reason": "crm',
    status: 400,
    problem: httpProblems.malformedBody
  },
  { name: 'empty body', method: 'POST', url: '/v1/admin/deliveries/{redrive}/redrive', raw: '', status: 400, problem: httpProblems.malformedBody },
  {
    name: 'body over 16 KiB',
    method: 'POST',
    url: '/v1/admin/deliveries/{redrive}/redrive',
    body: reason('a'.repeat(20_000)),
    status: 413,
    problem: httpProblems.bodyTooLarge
  },
  {
    name: 'form-encoded body',
    method: 'POST',
    url: '/v1/admin/deliveries/{skip}/skip',
    raw: 'reason=crm+fixed',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    status: 415,
    problem: httpProblems.unsupportedMediaType
  },
  {
    name: 'id beyond bigint',
    method: 'POST',
    url: '/v1/admin/deliveries/9223372036854775808/redrive',
    body: reason('crm fixed'),
    status: 400,
    parameter: 'id'
  },
  { name: 'id 0', method: 'POST', url: '/v1/admin/deliveries/0/skip', body: reason('crm fixed'), status: 400, parameter: 'id' },
  { name: 'id negative', method: 'POST', url: '/v1/admin/deliveries/-1/redrive', body: reason('crm fixed'), status: 400, parameter: 'id' },
  { name: 'id with an exponent', method: 'POST', url: '/v1/admin/deliveries/1e3/redrive', body: reason('crm fixed'), status: 400, parameter: 'id' },
  { name: 'id with a plus sign', method: 'POST', url: '/v1/admin/deliveries/%2B1/redrive', body: reason('crm fixed'), status: 400, parameter: 'id' },
  {
    name: 'id in Arabic-Indic digits',
    method: 'POST',
    url: '/v1/admin/deliveries/%D9%A1/skip',
    body: reason('crm fixed'),
    status: 400,
    parameter: 'id'
  },
  {
    name: 'id with a NUL byte',
    method: 'POST',
    url: '/v1/admin/deliveries/{redrive}%00/redrive',
    body: reason('crm fixed'),
    status: 400,
    parameter: 'id'
  },
  {
    name: 'id as a path traversal',
    method: 'POST',
    url: '/v1/admin/deliveries/..%2F..%2Fsummary/redrive',
    body: reason('crm fixed'),
    status: 400,
    parameter: 'id'
  },
  {
    name: 'id well-formed but unknown',
    method: 'POST',
    url: '/v1/admin/deliveries/999999999999999999/redrive',
    body: reason('crm fixed'),
    status: 404,
    problem: syncerProblems.deliveryNotFound
  },
  // Bulk redrive and action requests: what they select by reaches PostgreSQL as the list filter does.
  {
    name: 'bulk redrive: ids as numbers',
    method: 'POST',
    url: '/v1/admin/deliveries/redrive',
    body: { reason: 'crm fixed', deliveryIds: [1, 2] },
    status: 400,
    pointer: '/deliveryIds/0'
  },
  {
    name: 'bulk redrive: id beyond bigint',
    method: 'POST',
    url: '/v1/admin/deliveries/redrive',
    body: { reason: 'crm fixed', deliveryIds: ['9223372036854775808'] },
    status: 400,
    pointer: '/deliveryIds/0'
  },
  {
    name: 'bulk redrive: filter a string',
    method: 'POST',
    url: '/v1/admin/deliveries/redrive',
    body: { reason: 'crm fixed', filter: 'state=FAILED' },
    status: 400,
    pointer: '/filter'
  },
  {
    name: 'bulk redrive: end system with a NUL byte',
    method: 'POST',
    url: '/v1/admin/deliveries/redrive',
    body: { reason: 'crm fixed', filter: { endSystem: 'crm\u0000' } },
    status: 400,
    pointer: '/filter/endSystem'
  },
  {
    name: 'bulk redrive: 30 February',
    method: 'POST',
    url: '/v1/admin/deliveries/redrive',
    body: { reason: 'crm fixed', filter: { from: '2026-02-30T00:00:00Z' } },
    status: 400,
    pointer: '/filter/from'
  },
  {
    name: 'bulk redrive: filter named __proto__',
    method: 'POST',
    url: '/v1/admin/deliveries/redrive',
    raw: '{"reason":"crm fixed","filter":{"__proto__":{"state":"FAILED"}}}',
    status: 400,
    problem: httpProblems.malformedBody
  },
  { name: 'requests: state unknown', url: '/v1/admin/requests?state=DONE', status: 400, parameter: 'state' },
  { name: 'request id beyond bigint', url: '/v1/admin/requests/9223372036854775808', status: 400, parameter: 'id' },
  {
    name: 'reject: reason with a NUL byte',
    method: 'POST',
    url: '/v1/admin/requests/1/reject',
    body: reason('no\u0000way'),
    status: 400,
    pointer: '/reason'
  },
  // The key is checked before anything else: a hostile request without one learns nothing more.
  {
    name: 'hostile reason without a key',
    method: 'POST',
    url: '/v1/admin/deliveries/{redrive}/redrive',
    body: reason('a\u0000b'),
    key: null,
    status: 401,
    problem: httpProblems.unauthorized
  },
  {
    name: 'hostile filter with a source system’s key',
    url: '/v1/admin/deliveries?from=2026-06-30T23:59:60Z',
    key: keys.branchPortal,
    status: 401,
    problem: httpProblems.unauthorized
  }
]

const callbackCases: Case[] = [
  { name: 'cifId with a NUL byte', url: `/v1/sync/customers/${toRedrive.slice(0, 10)}%00`, status: 400, parameter: 'cifId' },
  { name: 'cifId in Arabic-Indic digits', url: `/v1/sync/customers/${arabicDigits}`, status: 400, parameter: 'cifId' },
  { name: 'cifId as a path traversal', url: '/v1/sync/customers/..%2F..%2Fadmin%2Fsummary', status: 400, parameter: 'cifId' },
  { name: 'cifId 100 digits', url: `/v1/sync/customers/${'1'.repeat(100)}`, status: 400, parameter: 'cifId' },
  { name: 'cifId with a trailing newline', url: `/v1/sync/customers/${toRedrive}%0A`, status: 400, parameter: 'cifId' },
  {
    name: 'cifId with a wrong check digit',
    url: `/v1/sync/customers/${toRedrive.slice(0, 10)}${(Number(toRedrive[10]) + 1) % 10}`,
    status: 400,
    parameter: 'cifId'
  },
  {
    name: 'cifId of no customer',
    url: `/v1/sync/customers/${cifIdFromNumber(9_999_999_999)}`,
    status: 404,
    problem: syncerProblems.customerNotFound
  },
  { name: 'cifId with an operator’s key', url: `/v1/sync/customers/${toRedrive}`, key: operatorKey, status: 401, problem: httpProblems.unauthorized },
  { name: 'updates: after beyond bigint', url: '/v1/sync/updates?after=9223372036854775808', status: 400, parameter: 'after' },
  { name: 'updates: after 10,000 digits', url: `/v1/sync/updates?after=${'9'.repeat(10_000)}`, status: 400, parameter: 'after' },
  { name: 'updates: after with a NUL byte', url: '/v1/sync/updates?after=0%00', status: 400, parameter: 'after' },
  { name: 'updates: after in Arabic-Indic digits', url: '/v1/sync/updates?after=%D9%A1', status: 400, parameter: 'after' },
  { name: 'updates: after with an exponent', url: '/v1/sync/updates?after=1e3', status: 400, parameter: 'after' },
  { name: 'updates: after given twice', url: '/v1/sync/updates?after=1&after=2', status: 400, parameter: 'after' },
  { name: 'updates: limit with a plus sign', url: '/v1/sync/updates?limit=%2B1', status: 400, parameter: 'limit' },
  { name: 'updates: limit a fraction', url: '/v1/sync/updates?limit=1.0', status: 400, parameter: 'limit' },
  { name: 'updates: unknown parameter', url: '/v1/sync/updates?since=2026-01-01T00:00:00Z', status: 400, parameter: 'since' }
]

describe('hostile and malformed requests are refused, never answered 500', () => {
  const cases = [...adminCases, ...callbackCases]
  it(`has at least 30 cases (${cases.length})`, () => expect(cases.length).toBeGreaterThanOrEqual(30))

  let statusesBefore: number
  beforeAll(async () => {
    statusesBefore = await count('sync_status_update')
  })

  it.each(cases)('$name → $status', async ({ method = 'GET', url, body, raw, headers, key, status, parameter, pointer, problem }) => {
    const target = url.replace('{redrive}', failed.redrive).replace('{skip}', failed.skip)
    const defaultKey = target.startsWith('/v1/admin/') ? operatorKey : keys.branchPortal
    const response = await call(app, method, target, {
      body,
      raw,
      key: key === undefined ? defaultKey : key,
      headers: { ...(raw !== undefined ? { 'content-type': 'application/json' } : {}), ...headers }
    })
    expect(response.status).toBe(status)
    expect(response.headers.get('content-type')).toBe('application/problem+json; charset=utf-8')
    expect(response.body).toMatchObject({ status, title: expect.any(String), detail: expect.any(String) })
    expect(response.body.type).toBe(problemType(problem ?? httpProblems.validationFailed))
    if (parameter) expect(response.body.errors.map((e: { parameter?: string }) => e.parameter)).toContain(parameter)
    if (pointer) expect(response.body.errors.map((e: { pointer?: string }) => e.pointer)).toContain(pointer)
  })

  it('left no operator action, no status and no change of state behind', async () => {
    expect(await count('operator_action')).toBe(0)
    expect(await count('action_request')).toBe(0)
    expect(await count('sync_status_update')).toBe(statusesBefore)
    const states = await database.db.selectFrom('delivery').select('state').where('id', 'in', [failed.redrive, failed.skip]).execute()
    expect(states.map((row) => row.state)).toEqual(['FAILED', 'FAILED'])
  })

  it('still redrives and skips with a well-formed reason, which may hold spaces and any script', async () => {
    const redriven = await admin('POST', `/v1/admin/deliveries/${failed.redrive}/redrive`, { reason: 'CRM fixed its branch list (ticket #42)' })
    expect(redriven.status).toBe(200)
    expect(redriven.body).toMatchObject({ deliveryId: failed.redrive, state: 'PENDING' })
    const asked = await admin('POST', `/v1/admin/deliveries/${failed.skip}/skip`, { reason: 'Kunde hat gekündigt – 口座解約' })
    expect(asked.status).toBe(202)
    expect(asked.body).toMatchObject({ reason: 'Kunde hat gekündigt – 口座解約', deliveryIds: [failed.skip] })
    const approved = await call(app, 'POST', `/v1/admin/requests/${asked.body.requestId}/approve`, { key: approverKey })
    expect(approved.body).toMatchObject({ state: 'APPROVED', appliedTo: [failed.skip] })
    expect(await count('operator_action')).toBe(2)
  })
})

describe('the read model, called without the routes’ schemas', () => {
  it('refuses a from or to PostgreSQL could not read, naming it, before any query', async () => {
    const db = asSyncer(database.db)
    for (const [filters, parameter] of [
      [{ from: '2026-02-30T00:00:00Z' }, 'from'],
      [{ from: '2026-06-30T23:59:60Z' }, 'from'],
      [{ to: '2026-01-01T00:00:00+05' }, 'to'],
      [{ to: '0000-01-01T00:00:00Z' }, 'to'],
      [{ from: '2026-01-01T00:00:00+16:00' }, 'from']
    ] as const) {
      for (const find of [findDeliveries, findAttempts]) {
        await expect(find(db, filters), JSON.stringify(filters)).rejects.toMatchObject({
          type: httpProblems.validationFailed,
          extra: { errors: [{ parameter }] }
        })
      }
    }
    // 29 February is a day in a leap year, as in year 4 and 2000, and not in 1900.
    expect(await findDeliveries(db, { from: '0004-02-29T00:00:00Z', to: '2000-02-29T00:00:00Z' })).toEqual([])
    await expect(findDeliveries(db, { from: '1900-02-29T00:00:00Z' })).rejects.toMatchObject({ type: httpProblems.validationFailed })
  })
})

describe('URLs the router refuses before any route', () => {
  // Fastify's router refuses these before any route; they are answered as problems all the same.
  it.each([
    ['a CIF ID that is not valid percent-encoding', '/v1/sync/customers/%zz', keys.branchPortal],
    ['a CIF ID that is not UTF-8', '/v1/sync/customers/%FF', keys.branchPortal],
    ['a CIF ID of 10,000 digits', `/v1/sync/customers/${'1'.repeat(10_000)}`, keys.branchPortal],
    ['a delivery id that is not valid percent-encoding', '/v1/admin/deliveries/%zz/redrive', operatorKey]
  ])('%s (%s) → 400 problem', async (_name, url, key) => {
    const response = await call(app, url.endsWith('/redrive') ? 'POST' : 'GET', url, {
      key,
      body: url.endsWith('/redrive') ? reason('crm fixed') : undefined
    })
    expect(response.status).toBe(400)
    expect(response.headers.get('content-type')).toContain('application/problem+json')
    expect(response.body.type).toBe(problemType(httpProblems.validationFailed))
  })

  it('reads a query string that is not valid percent-encoding as the text it is, which matches nothing', async () => {
    for (const query of ['endSystem=%FF', 'endSystem=%zz', 'endSystem=%ED%A0%80']) {
      const response = await admin('GET', `/v1/admin/deliveries?${query}`)
      expect(response.status, query).toBe(200)
      expect(response.body.deliveries, query).toEqual([])
    }
  })
})

async function count(table: 'operator_action' | 'action_request' | 'sync_status_update'): Promise<number> {
  const { n } = await database.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow()
  return Number(n)
}
