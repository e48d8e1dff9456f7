import { mayAccess, type SourceSystemGrant } from '../../contracts/access.ts'
import { requireValidCifId } from '../../contracts/cif-id.ts'
import { CifIdParams } from '../../contracts/customer.ts'
import { Refusal, syncerProblems } from '../../contracts/problems.ts'
import { type ApiKey, requireApiKey } from '../../platform/http/api-key-auth.ts'
import { apiKeySecurity, type HttpServer, problemResponses } from '../../platform/http/server.ts'
import type { SyncerDb } from '../tables.ts'
import { customerSync, statusUpdates } from './read-model.ts'
import { CustomerSync, Updates, UpdatesQuery } from './schemas.ts'

const security = apiKeySecurity('sourceSystemKey')

export interface CallbackApiOptions {
  db: SyncerDb
  sourceSystemKeyHashes: ReadonlyMap<string, readonly ApiKey[]>
  sourceSystemGrants: ReadonlyMap<string, ReadonlySet<SourceSystemGrant>>
}

/** What source systems ask: how is my customer doing in every end system, and what changed since I last asked. */
export async function callbackApi(app: HttpServer, { db, sourceSystemKeyHashes, sourceSystemGrants }: CallbackApiOptions): Promise<void> {
  requireApiKey(app, sourceSystemKeyHashes)

  app.get(
    '/customers/:cifId',
    {
      schema: {
        tags: ['callback'],
        summary: "A customer's sync state, per end system",
        security,
        params: CifIdParams,
        response: { 200: CustomerSync, ...problemResponses(400, 401, 404) }
      }
    },
    async (request) => {
      const { cifId } = request.params
      requireValidCifId(cifId)
      const sync = await customerSync(db, cifId, (owner) => mayAccess(sourceSystemGrants, request.caller, owner, 'read'))
      if (!sync) throw new Refusal(syncerProblems.customerNotFound, `The syncer has no customer ${cifId} of your source system.`)
      return sync
    }
  )

  app.get(
    '/updates',
    {
      schema: {
        tags: ['callback'],
        summary: 'Status changes of your customers since a cursor, in order',
        description:
          "Start without `after`; pass the `next` of each answer as `after` of the following call. Positions follow commit order, so none is ever skipped and a customer's IN_SYNC comes after its deliveries.",
        security,
        querystring: UpdatesQuery,
        response: { 200: Updates, ...problemResponses(400, 401) }
      }
    },
    async (request) => statusUpdates(db, request.caller, request.query.after ?? '0', Number(request.query.limit ?? 100))
  )
}
