import type { InjectOptions } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import type { HttpServer } from '../../src/platform/http/server.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { loadEndSystems } from '../../src/syncer/delivery/end-systems-config.ts'
import { storeEvents } from '../../src/syncer/intake/event-store.ts'
import { createSyncerApp } from '../../src/syncer/service.ts'
import { claim, decisions, deliveryById, eventMessage, newCifId, newEndSystem, record } from '../store/fixtures.ts'
import { asSyncer } from '../support/database.ts'
import { devTrustedKeys } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { testConfig } from './helpers.ts'

// The operators' console through Fastify's inject, against PostgreSQL alone: sign-in and its cookie, CSRF on
// every change, roles, and the actions going through the admin API's stores. The browser test
// (test/integration/console-browser.test.ts) drives the same pages in Chromium on the whole stack.

const operators = {
  maker: { name: 'ops-tan', key: 'console-maker-key', role: 'operator' },
  checker: { name: 'ops-lim', key: 'console-checker-key', role: 'approver' },
  auditor: { name: 'auditor', key: 'console-auditor-key', role: 'viewer' }
} as const
type Who = keyof typeof operators

const CORE_BANKING_TOKEN = 'console-test-core-banking-token'
const config = testConfig({
  SYNCER_OPERATORS: Object.values(operators)
    .map((o) => `${o.name}=${apiKeyHash(o.key)}`)
    .join(','),
  SYNCER_OPERATOR_ROLES: Object.values(operators)
    .map((o) => `${o.name}:${o.role}`)
    .join(',')
})

let database: OwnDatabase
let app: HttpServer

/** A browser as far as the console cares: it keeps the cookies it is given and sends them back. */
class Browser {
  readonly cookies = new Map<string, string>()

  async request(method: InjectOptions['method'], url: string, form?: Record<string, string | string[]>) {
    const headers: Record<string, string> = {}
    if (this.cookies.size) headers.cookie = [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ')
    let payload: string | undefined
    if (form) {
      const body = new URLSearchParams()
      for (const [name, value] of Object.entries(form)) for (const one of [value].flat()) body.append(name, one)
      payload = body.toString()
      headers['content-type'] = 'application/x-www-form-urlencoded'
    }
    const response = await app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) })
    for (const cookie of response.cookies as { name: string; value: string; maxAge?: number; expires?: Date }[]) {
      if (cookie.value === '' || (cookie.expires && cookie.expires.getTime() < Date.now())) this.cookies.delete(cookie.name)
      else this.cookies.set(cookie.name, cookie.value)
    }
    return response
  }

  /** The CSRF token of the form on `url`'s page. */
  async tokenOf(url: string): Promise<string> {
    const page = await this.request('GET', url)
    const token = /name="_csrf" value="([^"]+)"/.exec(page.body)?.[1]
    if (!token) throw new Error(`no form token on ${url}: ${page.statusCode} ${page.body.slice(0, 300)}`)
    return token
  }

  async signIn(key: string) {
    return this.request('POST', '/console/sign-in', { key, _csrf: await this.tokenOf('/console/sign-in') })
  }
}

async function signedIn(who: Who): Promise<Browser> {
  const browser = new Browser()
  const response = await browser.signIn(operators[who].key)
  expect(response.statusCode).toBe(303)
  return browser
}

/** Customers whose create FAILED in a new end system: their FAILED delivery ids. */
async function failedDeliveries(count: number, traceparent?: string): Promise<{ endSystem: string; ids: string[]; cifIds: string[] }> {
  const db = asSyncer(database.db)
  const endSystem = newEndSystem('crm')
  const cifIds = Array.from({ length: count }, () => newCifId())
  await storeEvents(
    db,
    cifIds.map((cifId) => eventMessage(cifId, 1)),
    [endSystem],
    devTrustedKeys
  )
  const ids: string[] = []
  for (const delivery of await claim(database.db, endSystem, 100)) {
    await record(database.db, delivery, decisions.fail(), traceparent ? { traceparent } : {})
    ids.push(delivery.id)
  }
  return { endSystem, ids: ids.sort((a, b) => Number(a) - Number(b)), cifIds }
}

beforeAll(async () => {
  database = await ownDatabase()
  const endSystems = loadEndSystems('config/end-systems.yaml', {
    CORE_BANKING_URL: 'http://127.0.0.1:1',
    CRM_URL: 'http://user:crm-password@127.0.0.1:2',
    CARDS_URL: 'http://127.0.0.1:3',
    CORE_BANKING_TOKEN
  })
  app = await createSyncerApp(
    config,
    asSyncer(database.db),
    createLogger(process.env.LOG_LEVEL ?? 'warn', 'console-test'),
    {},
    {
      endSystems,
      live: () => ({ circuits: new Map([['crm', 'open']]), intake: { state: 'consuming', lag: 3 }, statusRelay: null })
    }
  )
})
afterAll(async () => {
  await app?.close()
  await database?.close()
})

describe('signing in', () => {
  it('sends a visitor without a session to the sign-in page, and back to where they were going once signed in', async () => {
    const browser = new Browser()
    const page = await browser.request('GET', '/console/actions?requestState=PENDING')
    expect(page.statusCode).toBe(303)
    expect(page.headers.location).toBe(`/console/sign-in?next=${encodeURIComponent('/console/actions?requestState=PENDING')}`)
    const form = await browser.request('GET', page.headers.location as string)
    const token = /name="_csrf" value="([^"]+)"/.exec(form.body)![1]!
    const action = /<form method="post" action="([^"]+)"/.exec(form.body)![1]!.replaceAll('&amp;', '&')
    const signedIn = await browser.request('POST', action, { key: operators.maker.key, _csrf: token })
    expect(signedIn.statusCode).toBe(303)
    expect(signedIn.headers.location).toBe('/console/actions?requestState=PENDING')
  })

  it('exchanges the key for an HTTP-only, SameSite=Strict session cookie on /console, and never returns to another site', async () => {
    const browser = new Browser()
    const token = await browser.tokenOf('/console/sign-in')
    const response = await browser.request('POST', `/console/sign-in?next=${encodeURIComponent('//evil.example/console/')}`, {
      key: operators.maker.key,
      _csrf: token
    })
    expect(response.statusCode).toBe(303)
    expect(response.headers.location).toBe('/console/overview')
    const session = [response.headers['set-cookie']].flat().find((c) => c?.startsWith('cif_console_session='))
    expect(session).toMatch(/HttpOnly/)
    expect(session).toMatch(/SameSite=Strict/)
    expect(session).toMatch(/Path=\/console/)
    // The key itself is never in the cookie.
    expect(session).not.toContain(operators.maker.key)
    const overview = await browser.request('GET', '/console/overview')
    expect(overview.statusCode).toBe(200)
    expect(overview.body).toContain('Signed in as <strong>ops-tan</strong> (operator)')
  })

  it('refuses an unknown key with 401 and no session', async () => {
    const browser = new Browser()
    const response = await browser.signIn('not-an-operator-key')
    expect(response.statusCode).toBe(401)
    expect(response.body).toContain('The API key is not known.')
    expect(browser.cookies.has('cif_console_session')).toBe(false)
    expect((await browser.request('GET', '/console/overview')).statusCode).toBe(303)
  })

  it('refuses a sign-in without the form token (login CSRF)', async () => {
    const browser = new Browser()
    await browser.request('GET', '/console/sign-in')
    const response = await browser.request('POST', '/console/sign-in', { key: operators.maker.key, _csrf: 'forged' })
    expect(response.statusCode).toBe(403)
    expect(browser.cookies.has('cif_console_session')).toBe(false)
  })

  it('takes no session cookie it did not sign, nor one whose operator was changed', async () => {
    const browser = await signedIn('auditor')
    const real = browser.cookies.get('cif_console_session')!
    browser.cookies.set('cif_console_session', real.replace('auditor', 'ops-lim'))
    expect((await browser.request('GET', '/console/overview')).statusCode).toBe(303)
    browser.cookies.set('cif_console_session', `${Date.now() + 3_600_000}.ops-lim`)
    expect((await browser.request('GET', '/console/overview')).statusCode).toBe(303)
  })

  it('ends the session on sign-out', async () => {
    const browser = await signedIn('maker')
    const out = await browser.request('POST', '/console/sign-out', { _csrf: await browser.tokenOf('/console/overview') })
    expect(out.statusCode).toBe(303)
    expect((await browser.request('GET', '/console/overview')).statusCode).toBe(303)
  })
})

describe('acting', () => {
  it('redrives a FAILED delivery with the form token, and refuses the same form without it (CSRF)', async () => {
    const { ids, cifIds } = await failedDeliveries(1)
    const browser = await signedIn('maker')
    const token = await browser.tokenOf(`/console/deliveries/${ids[0]}`)
    const forged = await browser.request('POST', `/console/deliveries/${ids[0]}/redrive`, { reason: 'crm is back' })
    expect(forged.statusCode).toBe(403)
    expect(forged.body).toContain('The form did not come from this console')
    expect((await deliveryById(database.db, ids[0]!)).state).toBe('FAILED')

    const done = await browser.request('POST', `/console/deliveries/${ids[0]}/redrive`, { reason: 'crm is back', _csrf: token })
    expect(done.statusCode).toBe(303)
    expect(done.headers.location).toBe(`/console/customers/${cifIds[0]}`)
    expect((await deliveryById(database.db, ids[0]!)).state).toBe('PENDING')
    const actions = await database.db.selectFrom('operator_action').selectAll().where('delivery_id', '=', ids[0]!).execute()
    expect(actions).toMatchObject([{ action: 'REDRIVE', operator: 'ops-tan', reason: 'crm is back', from_state: 'FAILED' }])
  })

  it('pauses and resumes an end system, each recorded with who and why and shown in the action log', async () => {
    const browser = await signedIn('maker')
    const token = await browser.tokenOf('/console/end-systems')
    const paused = await browser.request('POST', '/console/end-systems/cards/pause', { reason: 'cards maintenance window', _csrf: token })
    expect(paused.statusCode).toBe(303)
    expect(await database.db.selectFrom('end_system_pause').selectAll().where('end_system', '=', 'cards').execute()).toHaveLength(1)
    const page = await browser.request('GET', '/console/end-systems')
    expect(page.body).toMatch(/Paused<\/dt><dd>since [^<]* by ops-tan: cards maintenance window/)
    expect(page.body).toContain('/console/end-systems/cards/resume')
    const overview = await browser.request('GET', '/console/overview')
    expect(overview.body).toMatch(
      /data-end-system="cards">[\s\S]*?<span class="attention" data-paused title="paused by ops-tan: cards maintenance window">paused</
    )
    expect(overview.body).toMatch(/data-overdue>(none|<span class="attention">\d+ customer versions<\/span>)/)

    const unknown = await browser.request('POST', '/console/end-systems/ledger/pause', { reason: 'no such system', _csrf: token })
    expect(unknown.statusCode).toBe(404)
    const resumed = await browser.request('POST', '/console/end-systems/cards/resume', { reason: 'window over', _csrf: token })
    expect(resumed.statusCode).toBe(303)
    expect(await database.db.selectFrom('end_system_pause').selectAll().where('end_system', '=', 'cards').execute()).toHaveLength(0)
    // An action on a whole end system names no delivery: the log shows it all the same.
    const log = await browser.request('GET', '/console/actions?operator=ops-tan&action=PAUSE')
    expect(log.body).toContain('cards maintenance window')
  })

  it('lets a viewer read but not redrive', async () => {
    const { ids } = await failedDeliveries(1)
    const browser = await signedIn('auditor')
    const page = await browser.request('GET', `/console/deliveries/${ids[0]}`)
    expect(page.statusCode).toBe(200)
    expect(page.body).not.toContain('/redrive"')
    const response = await browser.request('POST', `/console/deliveries/${ids[0]}/redrive`, {
      reason: 'trying anyway',
      _csrf: /name="_csrf" value="([^"]+)"/.exec(page.body)![1]!
    })
    expect(response.statusCode).toBe(403)
    expect(response.body).toContain('may not redrive')
    expect((await deliveryById(database.db, ids[0]!)).state).toBe('FAILED')
  })

  it('asks for a bulk redrive of the selected deliveries, which another operator approves: one recorded action per delivery', async () => {
    const { ids, endSystem } = await failedDeliveries(3)
    const maker = await signedIn('maker')
    const asked = await maker.request('POST', '/console/deliveries/bulk', {
      action: 'redrive',
      reason: 'crm restored',
      deliveryIds: ids,
      _csrf: await maker.tokenOf(`/console/deliveries?endSystem=${endSystem}&state=FAILED`)
    })
    expect(asked.statusCode).toBe(303)
    const requestId = /#request-([0-9]+)$/.exec(asked.headers.location as string)![1]!
    // Nothing moves before the second person.
    for (const id of ids) expect((await deliveryById(database.db, id)).state).toBe('FAILED')
    // The requester is offered no answer to their own request.
    expect((await maker.request('GET', '/console/actions')).body).not.toContain(`/requests/${requestId}/approve`)

    const checker = await signedIn('checker')
    const actionsPage = await checker.request('GET', '/console/actions')
    expect(actionsPage.body).toContain(`/console/requests/${requestId}/approve`)
    const approved = await checker.request('POST', `/console/requests/${requestId}/approve`, { _csrf: await checker.tokenOf('/console/actions') })
    expect(approved.statusCode).toBe(303)
    for (const id of ids) expect((await deliveryById(database.db, id)).state).toBe('PENDING')
    const recorded = await database.db.selectFrom('operator_action').selectAll().where('request_id', '=', requestId).orderBy('delivery_id').execute()
    expect(recorded.map((r) => [r.delivery_id, r.operator, r.approved_by, r.reason])).toEqual(
      ids.map((id) => [id, 'ops-tan', 'ops-lim', 'crm restored'])
    )
    const log = await checker.request('GET', `/console/actions?operator=ops-lim&action=REDRIVE`)
    for (const id of ids) expect(log.body).toContain(`/console/deliveries/${id}"`)
  })

  it('asks for a skip per selected delivery', async () => {
    const { ids } = await failedDeliveries(2)
    const maker = await signedIn('maker')
    const asked = await maker.request('POST', '/console/deliveries/bulk', {
      action: 'skip',
      reason: 'closed account',
      deliveryIds: ids,
      _csrf: await maker.tokenOf('/console/deliveries')
    })
    expect(asked.statusCode).toBe(303)
    const requests = await database.db
      .selectFrom('action_request_delivery')
      .innerJoin('action_request', 'action_request.id', 'action_request_delivery.request_id')
      .select(['delivery_id', 'kind', 'state'])
      .where('delivery_id', 'in', ids)
      .orderBy('delivery_id')
      .execute()
    expect(requests).toEqual(ids.map((id) => ({ delivery_id: id, kind: 'SKIP', state: 'PENDING' })))
  })

  it('names the field at fault in a form it refuses', async () => {
    const browser = await signedIn('maker')
    const response = await browser.request('POST', '/console/deliveries/bulk', {
      action: 'redrive',
      reason: 'x',
      _csrf: await browser.tokenOf('/console/deliveries')
    })
    expect(response.statusCode).toBe(400)
    expect(response.headers['content-type']).toMatch(/^text\/html/)
    expect(response.body).toContain('/reason')
    expect(response.body).toContain('deliveryIds')
  })
})

describe('pages', () => {
  it('show a customer timeline: versions, each delivery and attempt, with the masked message and remarks', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
    const { cifIds, endSystem } = await failedDeliveries(1, `00-${traceId}-00f067aa0ba902b7-01`)
    const browser = await signedIn('auditor')
    const page = await browser.request('GET', `/console/customers/${cifIds[0]}`)
    // The attempt's trace: the create's, to follow in a tracing backend (docs/observability.md).
    expect(page.body).toContain(`<code class="trace"`)
    expect(page.body).toContain(traceId)
    expect(page.statusCode).toBe(200)
    expect(page.body).toContain(`id="system-${endSystem}"`)
    expect(page.body).toContain('FAILED')
    expect(page.body).toContain('the end system refused the request')
    expect(page.body).toContain('HTTP 400: {&quot;error&quot;:&quot;invalid branch&quot;}')
    expect((await browser.request('GET', '/console/customers/10000000001')).statusCode).toBe(400)
  })

  it('show the end systems as loaded, with no secret', async () => {
    const browser = await signedIn('auditor')
    const page = await browser.request('GET', '/console/end-systems')
    expect(page.statusCode).toBe(200)
    expect(page.body).toContain('id="es-core-banking"')
    expect(page.body).toContain('header authorization: value (hidden)')
    expect(page.body).not.toContain(CORE_BANKING_TOKEN)
    expect(page.body).not.toContain('crm-password')
  })

  it('show the overview with counts by state, the circuit and the intake', async () => {
    const { endSystem } = await failedDeliveries(2)
    const browser = await signedIn('auditor')
    const page = await browser.request('GET', '/console/overview')
    expect(page.statusCode).toBe(200)
    const row = new RegExp(`<tr data-end-system="${endSystem}">([\\s\\S]*?)</tr>`).exec(page.body)![1]!
    expect(row).toMatch(/data-state="FAILED"><a [^>]+>2<\/a>/)
    expect(page.body).toMatch(/data-end-system="crm">[\s\S]*?data-circuit>open</)
    expect(page.body).toContain('lag 3 events')
    // The page's own script and styles only: the API's Content-Security-Policy stands.
    expect(page.headers['content-security-policy']).toContain("script-src 'self'")
    expect(page.body).toContain('<script src="/console/assets/htmx.min.js" defer></script>')
    const htmx = await browser.request('GET', '/console/assets/htmx.min.js')
    expect(htmx.statusCode).toBe(200)
  })
})
