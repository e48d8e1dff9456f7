import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import cookie from '@fastify/cookie'
import csrfProtection from '@fastify/csrf-protection'
import formbody from '@fastify/formbody'
import fastifyStatic from '@fastify/static'
import { Eta } from 'eta'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { mayDo, type OperatorRight, type OperatorRole } from '../../contracts/access.ts'
import { requireValidCifId } from '../../contracts/cif-id.ts'
import { httpProblems, Refusal, syncerProblems } from '../../contracts/problems.ts'
import { type ApiKey, signIn } from '../../platform/http/api-key-auth.ts'
import { problemDocument } from '../../platform/http/problem.ts'
import { type HttpServer, problemFor } from '../../platform/http/server.ts'
import { decideRequest, findRequests, requestBulkRedrive, requestById, requestSkip } from '../api/action-request-store.ts'
import { requireOperatorRight } from '../api/operator-rights.ts'
import { findAttempts, findDeliveries, toDelivery } from '../api/read-model.ts'
import { EndSystemParams } from '../api/schemas.ts'
import { countDeliveries } from '../delivery/delivery-counts.ts'
import { pausedEndSystems, pauseEndSystem, resumeEndSystem } from '../delivery/end-system-store.ts'
import type { EndSystemConfig } from '../delivery/end-systems-config.ts'
import { requestStates } from '../delivery/four-eyes.ts'
import { redrive } from '../delivery/operator-actions.ts'
import { deliveryStates, operatorActions, stateMeanings, transitions } from '../delivery/states.ts'
import { overdueVersions } from '../status/overdue.ts'
import type { SyncerDb } from '../tables.ts'
import {
  customerVersions,
  deliveryById,
  externalIds,
  oldestUndelivered,
  operatorActionLog,
  recentAttempts,
  statusMessages
} from './console-read-model.ts'
import { endSystemView } from './end-systems-view.ts'
import { format } from './format.ts'
import {
  ActionsQuery,
  BulkForm,
  CifIdParams,
  CsrfOnly,
  CustomerQuery,
  DeliveriesQuery,
  IdParams,
  ReasonForm,
  SignInForm,
  SignInQuery
} from './schemas.ts'
import { checkSession, sessionCookieValue, sessionExpiry } from './session.ts'

/** What the syncer knows of itself right now, beyond the database: shown on the overview. */
export interface LiveState {
  /** Each end system's circuit breaker: closed, open, half-open or isolated. */
  circuits: ReadonlyMap<string, string>
  intake: { state: string; lag: number | null } | null
  statusRelay: { state: string; oldestUnsentAgeMs: number | null } | null
}

export interface ConsoleOptions {
  db: SyncerDb
  operatorKeyHashes: ReadonlyMap<string, readonly ApiKey[]>
  operatorRoles: ReadonlyMap<string, OperatorRole>
  actionRequestExpiryMs: number
  bulkRedriveLimit: number
  /** SYNCER_IN_SYNC_DEADLINE_MS: the overview counts the customer versions past it. */
  inSyncDeadlineMs: number
  endSystems: readonly EndSystemConfig[]
  live: () => LiveState
  /** Signs the session and CSRF cookies; unset, the process makes its own (config: SYNCER_CONSOLE_SESSION_SECRET). */
  sessionSecret: string | undefined
  /** Over HTTPS the cookies are marked Secure, so that a browser never sends them in clear. */
  secureCookies: boolean
}

export const CONSOLE_PREFIX = '/console'
const SESSION_COOKIE = 'cif_console_session'
/** The window the overview's throughput and error rate cover. */
export const ACTIVITY_MINUTES = 5
const PAGE_SIZE = '50'
const TIMELINE_LIMIT = '500'
const ACTION_LOG_PAGE = 50

const here = dirname(fileURLToPath(import.meta.url))
const htmxFolder = dirname(createRequire(import.meta.url).resolve('htmx.org/dist/htmx.min.js'))

const nav = [
  { path: '/overview', label: 'Overview' },
  { path: '/deliveries', label: 'Deliveries' },
  { path: '/customers', label: 'Customer timeline' },
  { path: '/actions', label: 'Actions' },
  { path: '/end-systems', label: 'End systems' }
] as const

/** A place to return to after signing in: a console page of this server, never another site. */
const isConsolePath = (path: string): boolean => /^\/console\/[A-Za-z0-9._~%!$&'()*+,;=:@/?-]*$/.test(path) && !path.startsWith('/console//')

/**
 * The operators' web console at /console: pages rendered on the server (Eta templates, views/), htmx from the
 * project's own packages for the live parts, no CDN. Operators sign in with their operator key, exchanged for
 * a signed, HTTP-only, SameSite=Strict session cookie; every form carries a CSRF token. It reads through the
 * admin API's read model and acts through the same stores, with the same roles and the same maker-checker rule.
 */
export async function operatorConsole(app: HttpServer, options: ConsoleOptions): Promise<void> {
  const { db, operatorKeyHashes, operatorRoles } = options
  const eta = new Eta({ views: `${here}/views`, cache: true })
  const cookieOptions = { path: CONSOLE_PREFIX, httpOnly: true, sameSite: 'strict', secure: options.secureCookies } as const

  await app.register(cookie, { secret: options.sessionSecret ?? randomBytes(32).toString('base64url') })
  await app.register(formbody, { bodyLimit: 16 * 1024 })
  await app.register(csrfProtection, { cookieKey: 'cif_console_csrf', cookieOpts: { ...cookieOptions, signed: true } })
  // Empty fields of a GET form are filters not set, not values to check.
  app.addHook('preValidation', async (request) => {
    if (request.method !== 'GET' || !request.query || typeof request.query !== 'object') return
    const query = request.query as Record<string, unknown>
    for (const [name, value] of Object.entries(query)) if (value === '') delete query[name]
  })
  // A refusal is a page a person can read, with every field at fault, and the status it would have had.
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const problem = error.code?.startsWith('FST_CSRF_')
      ? problemDocument(httpProblems.forbidden, 'The form did not come from this console, or has expired: open the page again and resend it.')
      : problemFor(error)
    if (problem.status >= 500) request.log.error({ err: error }, 'request failed')
    else request.log.info({ status: problem.status, code: error.code }, problem.title)
    return reply
      .status(problem.status)
      .type('text/html; charset=utf-8')
      .send(eta.render('error', { title: problem.title, problem, nav, format }))
  })

  const page = (reply: FastifyReply, view: string, data: Record<string, unknown>): FastifyReply =>
    reply.type('text/html; charset=utf-8').send(eta.render(view, { nav, format, ...data }))

  await app.register(fastifyStatic, { root: [`${here}/assets`, htmxFolder], prefix: '/assets/', index: false, list: false })
  app.get('/', (_request, reply) => reply.redirect(`${CONSOLE_PREFIX}/overview`, 303))

  app.get('/sign-in', { schema: { querystring: SignInQuery } }, (request, reply) => {
    const { next } = request.query
    return page(reply, 'sign-in', {
      title: 'Sign in',
      csrfToken: reply.generateCsrf(),
      next: next && isConsolePath(next) ? next : undefined,
      refused: undefined
    })
  })

  app.post('/sign-in', { schema: { querystring: SignInQuery, body: SignInForm }, preValidation: app.csrfProtection }, (request, reply) => {
    const outcome = signIn(app, operatorKeyHashes, request.body.key, request)
    const next = request.query.next && isConsolePath(request.query.next) ? request.query.next : undefined
    if ('refused' in outcome) {
      request.log.info({ ip: request.ip }, 'console sign-in refused')
      return page(reply.status(401), 'sign-in', { title: 'Sign in', csrfToken: reply.generateCsrf(), next, refused: outcome.refused })
    }
    const expiresAt = sessionExpiry(new Date(), outcome.expiresAt)
    reply.setCookie(SESSION_COOKIE, sessionCookieValue({ operator: outcome.caller, expiresAt }), {
      ...cookieOptions,
      signed: true,
      expires: expiresAt
    })
    request.log.info({ caller: outcome.caller }, 'operator signed in to the console')
    return reply.redirect(next ?? `${CONSOLE_PREFIX}/overview`, 303)
  })

  await app.register(async (pages: HttpServer) => {
    pages.decorateRequest('caller', '')
    pages.addHook('onRequest', async (request, reply) => {
      const signed = request.cookies[SESSION_COOKIE]
      const unsigned = signed ? request.unsignCookie(signed) : undefined
      const check =
        unsigned?.valid && unsigned.value !== null
          ? checkSession(unsigned.value, new Date(), (name) => operatorKeyHashes.has(name))
          : ({ refused: 'malformed' } as const)
      if ('refused' in check) {
        if (signed) reply.clearCookie(SESSION_COOKIE, cookieOptions)
        if (request.method === 'GET') return reply.redirect(`${CONSOLE_PREFIX}/sign-in?next=${encodeURIComponent(request.url)}`, 303)
        throw new Refusal(httpProblems.unauthorized, 'You are not signed in to the console, or your session has ended: sign in again.')
      }
      request.caller = check.session.operator
      request.log = request.log.child({ caller: request.caller })
      reply.log = request.log
    })
    // Every change is a POST with the form's token; a GET changes nothing.
    pages.addHook('preValidation', (request, reply, done) => (request.method === 'POST' ? pages.csrfProtection(request, reply, done) : done()))

    const roleOf = (request: FastifyRequest) => operatorRoles.get(request.caller)
    const requireRight = (request: FastifyRequest, right: OperatorRight, what: string): void =>
      requireOperatorRight(operatorRoles, request.caller, right, what)
    /** What every page's frame needs: who is signed in, what they may do, the form token. */
    const frame = (request: FastifyRequest, reply: FastifyReply, current: string, title: string) => ({
      title,
      current,
      operator: request.caller,
      role: roleOf(request) ?? 'none',
      mayAct: mayDo(roleOf(request), 'act'),
      mayDecide: mayDo(roleOf(request), 'decide'),
      csrfToken: reply.generateCsrf()
    })

    pages.post('/sign-out', { schema: { body: CsrfOnly } }, (request, reply) => {
      reply.clearCookie(SESSION_COOKIE, cookieOptions)
      request.log.info('operator signed out of the console')
      return reply.redirect(`${CONSOLE_PREFIX}/sign-in`, 303)
    })

    pages.get('/overview', async (request, reply) => {
      const [counts, activity, oldest, overdue, paused] = await Promise.all([
        countDeliveries(db),
        recentAttempts(db, ACTIVITY_MINUTES),
        oldestUndelivered(db),
        overdueVersions(db, options.inSyncDeadlineMs),
        pausedEndSystems(db)
      ])
      const pauses = new Map(paused.map((p) => [p.endSystem, p]))
      const live = options.live()
      const now = Date.now()
      const names = [...new Set([...options.endSystems.map((s) => s.name), ...counts.map((c) => c.endSystem)])]
      const systems = names.map((name) => {
        const recent = activity.get(name) ?? { attempts: 0, errors: 0 }
        const oldestAt = oldest.get(name)
        return {
          name,
          byState: Object.fromEntries(
            deliveryStates.map((state) => [state, counts.find((c) => c.endSystem === name && c.state === state)?.count ?? 0])
          ),
          circuit: live.circuits.get(name) ?? 'not configured here',
          paused: pauses.get(name) ?? null,
          attemptsPerMinute: recent.attempts / ACTIVITY_MINUTES,
          errorRate: recent.attempts ? recent.errors / recent.attempts : null,
          oldestUndeliveredAgeMs: oldestAt ? now - oldestAt.getTime() : null
        }
      })
      return page(reply, 'overview', {
        ...frame(request, reply, '/overview', 'Overview'),
        systems,
        states: deliveryStates,
        stateMeanings,
        live,
        overdue,
        inSyncDeadlineMs: options.inSyncDeadlineMs,
        activityMinutes: ACTIVITY_MINUTES,
        at: new Date()
      })
    })

    pages.get('/deliveries', { schema: { querystring: DeliveriesQuery } }, async (request, reply) => {
      const filters = { ...request.query, limit: request.query.limit ?? PAGE_SIZE }
      if (filters.cifId) requireValidCifId(filters.cifId)
      const deliveries = await findDeliveries(db, filters)
      const { after: _after, ...kept } = request.query
      const nextPage =
        deliveries.length === Number(filters.limit)
          ? `${CONSOLE_PREFIX}/deliveries?${new URLSearchParams({ ...kept, after: deliveries.at(-1)!.deliveryId } as Record<string, string>)}`
          : undefined
      return page(reply, 'deliveries', {
        ...frame(request, reply, '/deliveries', 'Deliveries'),
        deliveries,
        filters: request.query,
        states: deliveryStates,
        endSystems: options.endSystems.map((s) => s.name),
        selectable: [...new Set([...transitions.redrive.from, ...transitions.skip.from])],
        nextPage,
        bulkRedriveLimit: options.bulkRedriveLimit
      })
    })

    pages.post('/deliveries/bulk', { schema: { body: BulkForm } }, async (request, reply) => {
      const deliveryIds = [request.body.deliveryIds].flat()
      const { reason } = request.body
      const expiresInMs = options.actionRequestExpiryMs
      if (request.body.action === 'redrive') {
        requireRight(request, 'act', 'request a bulk redrive')
        const bulk = await requestBulkRedrive(db, { reason, deliveryIds, operator: request.caller, expiresInMs, limit: options.bulkRedriveLimit })
        return reply.redirect(`${CONSOLE_PREFIX}/actions#request-${bulk.requestId}`, 303)
      }
      requireRight(request, 'act', 'request a skip')
      // A skip is a request per delivery, each approved on its own (the admin API's skip); should one be refused
      // (it is no longer FAILED or BLOCKED), those before it stay asked for, as they would through the API.
      for (const deliveryId of deliveryIds) await requestSkip(db, { deliveryId, reason, operator: request.caller, expiresInMs })
      return reply.redirect(`${CONSOLE_PREFIX}/actions?requestState=PENDING`, 303)
    })

    pages.get('/deliveries/:id', { schema: { params: IdParams } }, async (request, reply) => {
      const delivery = await deliveryById(db, request.params.id)
      if (!delivery) throw new Refusal(syncerProblems.deliveryNotFound, `No delivery has id ${request.params.id}.`)
      const attempts = await findAttempts(db, { deliveryId: delivery.deliveryId, cifId: delivery.cifId, limit: TIMELINE_LIMIT })
      return page(reply, 'delivery', {
        ...frame(request, reply, '/deliveries', `Delivery ${delivery.deliveryId}`),
        delivery,
        attempts,
        redrivable: (transitions.redrive.from as readonly string[]).includes(delivery.state),
        skippable: (transitions.skip.from as readonly string[]).includes(delivery.state)
      })
    })

    pages.post('/deliveries/:id/redrive', { schema: { params: IdParams, body: ReasonForm } }, async (request, reply) => {
      requireRight(request, 'act', 'redrive')
      const row = await redrive(db, { deliveryId: request.params.id, operator: request.caller, reason: request.body.reason })
      return reply.redirect(`${CONSOLE_PREFIX}/customers/${toDelivery(row).cifId}`, 303)
    })

    pages.post('/deliveries/:id/skip', { schema: { params: IdParams, body: ReasonForm } }, async (request, reply) => {
      requireRight(request, 'act', 'request a skip')
      const skip = await requestSkip(db, {
        deliveryId: request.params.id,
        operator: request.caller,
        reason: request.body.reason,
        expiresInMs: options.actionRequestExpiryMs
      })
      return reply.redirect(`${CONSOLE_PREFIX}/actions#request-${skip.requestId}`, 303)
    })

    pages.get('/customers', { schema: { querystring: CustomerQuery } }, (request, reply) => {
      if (request.query.cifId) {
        requireValidCifId(request.query.cifId)
        return reply.redirect(`${CONSOLE_PREFIX}/customers/${request.query.cifId}`, 303)
      }
      return page(reply, 'customer-search', frame(request, reply, '/customers', 'Customer timeline'))
    })

    pages.get('/customers/:cifId', { schema: { params: CifIdParams } }, async (request, reply) => {
      const { cifId } = request.params
      requireValidCifId(cifId)
      const [versions, deliveries, attempts, xrefs, statuses] = await Promise.all([
        customerVersions(db, cifId),
        findDeliveries(db, { cifId, limit: TIMELINE_LIMIT }),
        findAttempts(db, { cifId, limit: TIMELINE_LIMIT }),
        externalIds(db, cifId),
        statusMessages(db, cifId)
      ])
      if (versions.length === 0 && deliveries.length === 0)
        throw new Refusal(syncerProblems.customerNotFound, `The syncer knows no customer ${cifId}.`)
      const names = [...new Set([...options.endSystems.map((s) => s.name), ...deliveries.map((d) => d.endSystem)])]
      const systems = names.map((name) => ({
        name,
        externalId: xrefs.get(name) ?? null,
        deliveries: deliveries
          .filter((d) => d.endSystem === name)
          .map((delivery) => ({ delivery, attempts: attempts.filter((a) => a.deliveryId === delivery.deliveryId) }))
      }))
      return page(reply, 'customer', {
        ...frame(request, reply, '/customers', `Customer ${cifId}`),
        cifId,
        versions,
        systems,
        statuses,
        at: new Date()
      })
    })

    pages.get('/actions', { schema: { querystring: ActionsQuery } }, async (request, reply) => {
      const q = request.query
      if (q.cifId) requireValidCifId(q.cifId)
      const [log, requests] = await Promise.all([
        operatorActionLog(db, q, ACTION_LOG_PAGE),
        findRequests(db, { state: q.requestState ?? 'PENDING', limit: '100' })
      ])
      const { before: _before, ...kept } = q
      const olderPage =
        log.length === ACTION_LOG_PAGE
          ? `${CONSOLE_PREFIX}/actions?${new URLSearchParams({ ...kept, before: log.at(-1)!.id } as Record<string, string>)}`
          : undefined
      return page(reply, 'actions', {
        ...frame(request, reply, '/actions', 'Actions'),
        log,
        requests,
        filters: q,
        actions: Object.values(operatorActions),
        requestStates,
        requestState: q.requestState ?? 'PENDING',
        olderPage
      })
    })

    pages.post('/requests/:id/approve', { schema: { params: IdParams, body: CsrfOnly } }, async (request, reply) => {
      requireRight(request, 'decide', 'approve a request')
      await decideRequest(db, { requestId: request.params.id, decider: request.caller, verdict: 'approve' })
      return reply.redirect(`${CONSOLE_PREFIX}/actions?requestState=APPROVED#request-${request.params.id}`, 303)
    })

    pages.post('/requests/:id/reject', { schema: { params: IdParams, body: ReasonForm } }, async (request, reply) => {
      requireRight(request, 'decide', 'reject a request')
      await decideRequest(db, { requestId: request.params.id, decider: request.caller, verdict: 'reject', reason: request.body.reason })
      return reply.redirect(`${CONSOLE_PREFIX}/actions?requestState=REJECTED#request-${request.params.id}`, 303)
    })

    pages.get('/requests/:id', { schema: { params: IdParams } }, async (request, reply) => {
      const actionRequest = await requestById(db, request.params.id)
      return page(reply, 'request', { ...frame(request, reply, '/actions', `Request ${actionRequest.requestId}`), actionRequest })
    })

    pages.get('/end-systems', async (request, reply) => {
      const live = options.live()
      const paused = new Map((await pausedEndSystems(db)).map((p) => [p.endSystem, p]))
      return page(reply, 'end-systems', {
        ...frame(request, reply, '/end-systems', 'End systems'),
        systems: options.endSystems.map((system) => ({
          ...endSystemView(system),
          circuit: live.circuits.get(system.name) ?? 'unknown',
          paused: paused.get(system.name) ?? null
        }))
      })
    })

    // The admin API's pause and resume (end-system-store.ts), for a maintenance window: recorded with who and why.
    for (const [action, run] of [
      ['pause', pauseEndSystem],
      ['resume', resumeEndSystem]
    ] as const) {
      pages.post(`/end-systems/:name/${action}`, { schema: { params: EndSystemParams, body: ReasonForm } }, async (request, reply) => {
        requireRight(request, 'act', `${action} an end system`)
        const { name } = request.params
        if (!options.endSystems.some((system) => system.name === name))
          throw new Refusal(syncerProblems.endSystemNotFound, `No end system named ${name} is in this syncer's end systems file.`)
        await run(db, { endSystem: name, operator: request.caller, reason: request.body.reason })
        return reply.redirect(`${CONSOLE_PREFIX}/end-systems#es-${name}`, 303)
      })
    }
  })
}
