import { Type } from 'typebox'
import type { OperatorRole } from '../../contracts/access.ts'
import { requireValidCifId } from '../../contracts/cif-id.ts'
import { httpProblems, Refusal } from '../../contracts/problems.ts'
import { type ApiKey, requireApiKey } from '../../platform/http/api-key-auth.ts'
import { type HttpServer, problemResponses, apiKeySecurity as security } from '../../platform/http/server.ts'
import { redrive, skip } from '../delivery/operator-actions.ts'
import type { SyncerDb } from '../tables.ts'
import { deliveryCounts, findAttempts, findDeliveries, toDelivery } from './read-model.ts'
import { Attempt, AttemptFilters, Delivery, DeliveryCounts, DeliveryFilters, IdParams, NoQuery, Reason } from './schemas.ts'

export interface AdminApiOptions {
  db: SyncerDb
  operatorKeyHashes: ReadonlyMap<string, readonly ApiKey[]>
  operatorRoles: ReadonlyMap<string, OperatorRole>
}

/**
 * A mistyped CIF ID is said to be one, as the callback API and the CIF API say it, rather than answered with
 * an empty page an operator would read as "no deliveries".
 */
function checkCifId(filters: { cifId?: string | undefined }): void {
  if (filters.cifId) requireValidCifId(filters.cifId)
}

/** What operators need: find deliveries and attempts, redrive what failed, skip what must not go. */
export async function adminApi(app: HttpServer, { db, operatorKeyHashes, operatorRoles }: AdminApiOptions): Promise<void> {
  requireApiKey(app, operatorKeyHashes)

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
    '/summary',
    {
      schema: {
        tags: ['admin'],
        summary: 'Deliveries counted by end system and state',
        security,
        querystring: NoQuery,
        response: { 200: DeliveryCounts, ...problemResponses(400, 401) }
      }
    },
    async () => deliveryCounts(db)
  )

  for (const [action, run] of [
    ['redrive', redrive],
    ['skip', skip]
  ] as const) {
    app.post(
      `/deliveries/:id/${action}`,
      {
        schema: {
          tags: ['admin'],
          summary: action === 'redrive' ? 'Send a FAILED delivery again, with a fresh retry budget' : 'Give up on a FAILED or BLOCKED delivery',
          security,
          params: IdParams,
          body: Reason,
          response: { 200: Delivery, ...problemResponses(400, 401, 403, 404, 409) }
        }
      },
      async (request) => {
        if (operatorRoles.get(request.caller) !== 'operator') {
          throw new Refusal(httpProblems.forbidden, `Operator ${request.caller} may look, not ${action}: that needs the role operator.`)
        }
        return toDelivery(await run(db, { deliveryId: request.params.id, operator: request.caller, reason: request.body.reason }))
      }
    )
  }
}
