import { Type } from 'typebox'
import type { OperatorRight, OperatorRole } from '../../contracts/access.ts'
import { isValidCifId, requireValidCifId } from '../../contracts/cif-id.ts'
import { Refusal, syncerProblems } from '../../contracts/problems.ts'
import { type ApiKey, requireApiKey } from '../../platform/http/api-key-auth.ts'
import { apiKeySecurity, type HttpServer, problemResponses } from '../../platform/http/server.ts'
import { countDeliveries } from '../delivery/delivery-counts.ts'
import { pausedEndSystems, pauseEndSystem, resumeEndSystem } from '../delivery/end-system-store.ts'
import type { EndSystemConfig } from '../delivery/end-systems-config.ts'
import { redrive } from '../delivery/operator-actions.ts'
import { overdueVersions } from '../status/overdue.ts'
import type { SyncerDb } from '../tables.ts'
import { decideRequest, findRequests, requestBulkRedrive, requestById, requestSkip } from './action-request-store.ts'
import { requireOperatorRight } from './operator-rights.ts'
import { findAttempts, findDeliveries, findUnreadableMessages, toDelivery } from './read-model.ts'
import {
  ActionRequest,
  Attempt,
  AttemptFilters,
  BulkRedrive,
  Delivery,
  DeliveryCounts,
  DeliveryFilters,
  EndSystem,
  EndSystemParams,
  IdParams,
  NoQuery,
  Reason,
  RequestFilters,
  UnreadableMessage,
  UnreadableMessageFilters
} from './schemas.ts'

const security = apiKeySecurity('operatorKey')

export interface AdminApiOptions {
  db: SyncerDb
  operatorKeyHashes: ReadonlyMap<string, readonly ApiKey[]>
  operatorRoles: ReadonlyMap<string, OperatorRole>
  /** How long a skip or bulk redrive request waits for an approver (SYNCER_ACTION_REQUEST_EXPIRY_MS). */
  actionRequestExpiryMs: number
  /** The most deliveries one bulk redrive may select (SYNCER_BULK_REDRIVE_LIMIT). */
  bulkRedriveLimit: number
  /** The end systems this syncer delivers to: those an operator may pause and resume. */
  endSystems: readonly Pick<EndSystemConfig, 'name' | 'coalesce'>[]
  /** SYNCER_IN_SYNC_DEADLINE_MS, for the summary's count of overdue versions. */
  inSyncDeadlineMs: number
}

/**
 * A mistyped CIF ID is said to be one, as the callback API and the CIF API say it, rather than answered with
 * an empty page an operator would read as "no deliveries".
 */
function checkCifId(filters: { cifId?: string | undefined }): void {
  if (filters.cifId) requireValidCifId(filters.cifId)
}

/**
 * What operators need: find deliveries and attempts, redrive what failed, skip what must not go. A skip or a
 * bulk redrive is a request another person approves (delivery/four-eyes.ts).
 */
export async function adminApi(
  app: HttpServer,
  { db, operatorKeyHashes, operatorRoles, actionRequestExpiryMs, bulkRedriveLimit, endSystems, inSyncDeadlineMs }: AdminApiOptions
): Promise<void> {
  requireApiKey(app, operatorKeyHashes)

  const requireRight = (caller: string, right: OperatorRight, what: string): void => requireOperatorRight(operatorRoles, caller, right, what)

  app.get(
    '/deliveries',
    {
      schema: {
        tags: ['admin'],
        summary: 'Deliveries by CIF ID, end system, state and creation time',
        security,
        querystring: DeliveryFilters,
        response: { 200: Type.Object({ deliveries: Type.Array(Delivery) }), ...problemResponses(400, 401) }
      }
    },
    async (request) => {
      checkCifId(request.query)
      return { deliveries: await findDeliveries(db, request.query) }
    }
  )

  app.get(
    '/attempts',
    {
      schema: {
        tags: ['admin'],
        summary: 'The transaction table: attempts by CIF ID, end system, status and start time',
        security,
        querystring: AttemptFilters,
        response: { 200: Type.Object({ attempts: Type.Array(Attempt) }), ...problemResponses(400, 401) }
      }
    },
    async (request) => {
      checkCifId(request.query)
      return { attempts: await findAttempts(db, request.query) }
    }
  )

  app.get(
    '/unreadable-messages',
    {
      schema: {
        tags: ['admin'],
        summary: 'Messages on the events topic kept instead of delivered (not signed, not a customer event, a second event of a version), with why',
        security,
        querystring: UnreadableMessageFilters,
        response: { 200: Type.Object({ messages: Type.Array(UnreadableMessage) }), ...problemResponses(400, 401) }
      }
    },
    async (request) => ({ messages: await findUnreadableMessages(db, request.query) })
  )

  app.get(
    '/summary',
    {
      schema: {
        tags: ['admin'],
        summary: 'Deliveries counted by end system and state, the paused end systems, and the versions past the in-sync deadline',
        security,
        querystring: NoQuery,
        response: { 200: DeliveryCounts, ...problemResponses(400, 401) }
      }
    },
    async () => ({
      counts: await countDeliveries(db),
      paused: await pausedEndSystems(db),
      overdue: { ...(await overdueVersions(db, inSyncDeadlineMs)), deadlineMs: inSyncDeadlineMs }
    })
  )

  /** The configured end system of this name, as the API shows it, with its pause if any. */
  const endSystemNamed = async (name: string): Promise<EndSystem> => {
    const system = endSystems.find((s) => s.name === name)
    if (!system) throw new Refusal(syncerProblems.endSystemNotFound, `No end system named ${name} is in this syncer's end systems file.`)
    const paused = (await pausedEndSystems(db)).find((p) => p.endSystem === name) ?? null
    return { name, coalesce: system.coalesce, paused }
  }

  app.get(
    '/end-systems',
    {
      schema: {
        tags: ['admin'],
        summary: 'The end systems this syncer delivers to, and which are paused',
        security,
        querystring: NoQuery,
        response: { 200: Type.Object({ endSystems: Type.Array(EndSystem) }), ...problemResponses(400, 401) }
      }
    },
    async () => {
      const paused = new Map((await pausedEndSystems(db)).map((p) => [p.endSystem, p]))
      return { endSystems: endSystems.map(({ name, coalesce }) => ({ name, coalesce, paused: paused.get(name) ?? null })) }
    }
  )

  for (const [action, summary, run] of [
    [
      'pause',
      'Pause an end system (a maintenance window): its deliveries wait unattempted, spending no retries, until it is resumed',
      pauseEndSystem
    ],
    ['resume', 'Resume a paused end system: its deliveries go again, in order, with their retry budgets as they were', resumeEndSystem]
  ] as const) {
    app.post(
      `/end-systems/:name/${action}`,
      {
        schema: {
          tags: ['admin'],
          summary,
          security,
          params: EndSystemParams,
          body: Reason,
          response: { 200: EndSystem, ...problemResponses(400, 401, 403, 404, 409) }
        }
      },
      async (request) => {
        requireRight(request.caller, 'act', `${action} an end system`)
        const { name } = request.params
        await endSystemNamed(name)
        await run(db, { endSystem: name, operator: request.caller, reason: request.body.reason })
        return endSystemNamed(name)
      }
    )
  }

  app.post(
    '/deliveries/:id/redrive',
    {
      schema: {
        tags: ['admin'],
        summary: 'Send a FAILED delivery again, with a fresh retry budget (one person may: it changes no data)',
        security,
        params: IdParams,
        body: Reason,
        response: { 200: Delivery, ...problemResponses(400, 401, 403, 404, 409) }
      }
    },
    async (request) => {
      requireRight(request.caller, 'act', 'redrive')
      return toDelivery(await redrive(db, { deliveryId: request.params.id, operator: request.caller, reason: request.body.reason }))
    }
  )

  app.post(
    '/deliveries/:id/skip',
    {
      schema: {
        tags: ['admin'],
        summary: 'Ask to give up on a FAILED or BLOCKED delivery: another person with the role approver approves it',
        security,
        params: IdParams,
        body: Reason,
        response: { 202: ActionRequest, ...problemResponses(400, 401, 403, 404, 409) }
      }
    },
    async (request, reply) => {
      requireRight(request.caller, 'act', 'request a skip')
      const skip = await requestSkip(db, {
        deliveryId: request.params.id,
        operator: request.caller,
        reason: request.body.reason,
        expiresInMs: actionRequestExpiryMs
      })
      return reply.code(202).send(skip)
    }
  )

  app.post(
    '/deliveries/redrive',
    {
      schema: {
        tags: ['admin'],
        summary: 'Ask to redrive many FAILED deliveries at once, by id and/or filter: another person with the role approver approves it',
        security,
        body: BulkRedrive,
        response: { 202: ActionRequest, ...problemResponses(400, 401, 403) }
      }
    },
    async (request, reply) => {
      requireRight(request.caller, 'act', 'request a bulk redrive')
      const cifId = request.body.filter?.cifId
      if (cifId && !isValidCifId(cifId)) throw Refusal.invalid([{ pointer: '/filter/cifId', detail: 'has a wrong check digit' }])
      const bulk = await requestBulkRedrive(db, {
        ...request.body,
        operator: request.caller,
        expiresInMs: actionRequestExpiryMs,
        limit: bulkRedriveLimit
      })
      return reply.code(202).send(bulk)
    }
  )

  app.get(
    '/requests',
    {
      schema: {
        tags: ['admin'],
        summary: 'Skip and bulk redrive requests, by state (PENDING: waiting for an approver)',
        security,
        querystring: RequestFilters,
        response: { 200: Type.Object({ requests: Type.Array(ActionRequest) }), ...problemResponses(400, 401) }
      }
    },
    async (request) => ({ requests: await findRequests(db, request.query) })
  )

  app.get(
    '/requests/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'One skip or bulk redrive request: who asked, why, which deliveries, and what became of it',
        security,
        params: IdParams,
        querystring: NoQuery,
        response: { 200: ActionRequest, ...problemResponses(400, 401, 404) }
      }
    },
    async (request) => requestById(db, request.params.id)
  )

  app.post(
    '/requests/:id/approve',
    {
      schema: {
        tags: ['admin'],
        summary: "Approve another person's request: its action is applied to those of its deliveries that still qualify",
        security,
        params: IdParams,
        response: { 200: ActionRequest, ...problemResponses(400, 401, 403, 404, 409) }
      }
    },
    async (request) => {
      requireRight(request.caller, 'decide', 'approve a request')
      return decideRequest(db, { requestId: request.params.id, decider: request.caller, verdict: 'approve' })
    }
  )

  app.post(
    '/requests/:id/reject',
    {
      schema: {
        tags: ['admin'],
        summary: "Reject another person's request, saying why: nothing is done",
        security,
        params: IdParams,
        body: Reason,
        response: { 200: ActionRequest, ...problemResponses(400, 401, 403, 404, 409) }
      }
    },
    async (request) => {
      requireRight(request.caller, 'decide', 'reject a request')
      return decideRequest(db, { requestId: request.params.id, decider: request.caller, verdict: 'reject', reason: request.body.reason })
    }
  )
}
