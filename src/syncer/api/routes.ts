import { Type, type Static } from 'typebox'
import { CIF_ID_PATTERN, isValidCifId } from '../../contracts/cif-id.ts'
import type { Db } from '../../platform/database/index.ts'
import type { DeliveryRow } from '../../platform/database/tables.ts'
import { requireApiKey } from '../../platform/http/api-key-auth.ts'
import { syncerProblems } from '../../contracts/problems.ts'
import { ProblemError } from '../../platform/http/problem.ts'
import { PROBLEM_JSON, type HttpServer } from '../../platform/http/server.ts'
import { redrive, skip } from '../delivery/delivery-store.ts'

const problems = Object.fromEntries(
  ['400', '401', '404', '409'].map((status) => [
    status,
    { description: 'Problem details (RFC 9457)', content: { [PROBLEM_JSON]: { schema: Type.Ref('Problem') } } }
  ])
)
const security = [{ apiKey: [] }]
const states = ['PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'SUCCESS', 'FAILED', 'BLOCKED', 'SKIPPED'] as const
const nullableString = Type.Union([Type.String(), Type.Null()])

const Delivery = Type.Object({
  deliveryId: Type.String(),
  eventId: Type.String(),
  cifId: Type.String(),
  endSystem: Type.String(),
  operation: Type.Enum(['create', 'update']),
  customerVersion: Type.Integer(),
  state: Type.Enum([...states]),
  attempts: Type.Integer(),
  externalId: nullableString,
  lastError: nullableString,
  remarks: nullableString,
  nextAttemptAt: nullableString,
  createdAt: Type.String(),
  updatedAt: Type.String(),
  completedAt: nullableString
})
type Delivery = Static<typeof Delivery>

function toDelivery(row: DeliveryRow): Delivery {
  const waiting = row.state === 'PENDING' || row.state === 'RETRY_SCHEDULED'
  return {
    deliveryId: row.id,
    eventId: row.event_id,
    cifId: row.cif_id,
    endSystem: row.end_system,
    operation: row.operation,
    customerVersion: row.customer_version,
    state: row.state,
    attempts: row.attempts,
    externalId: row.external_id,
    lastError: row.last_error,
    remarks: row.remarks,
    nextAttemptAt: waiting ? row.next_attempt_at.toISOString() : null,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    completedAt: row.completed_at?.toISOString() ?? null
  }
}

const Attempt = Type.Object({
  attemptId: Type.String(),
  deliveryId: Type.String(),
  eventId: Type.String(),
  cifId: Type.String(),
  eventType: Type.String(),
  customerVersion: Type.Integer(),
  endSystem: Type.String(),
  attemptNumber: Type.Integer(),
  status: Type.Enum(['SUCCESS', 'ERROR']),
  httpStatus: Type.Union([Type.Integer(), Type.Null()]),
  message: nullableString,
  remarks: nullableString,
  timeoutMs: Type.Integer(),
  durationMs: Type.Integer(),
  startedAt: Type.String(),
  finishedAt: Type.String()
})

const CustomerSync = Type.Object({
  cifId: Type.String(),
  latestVersion: Type.Integer(),
  state: Type.Enum(['IN_SYNC', 'IN_PROGRESS', 'NEEDS_ATTENTION', 'PARTIAL'], {
    description:
      'IN_SYNC: every end system holds the latest version; NEEDS_ATTENTION: a delivery FAILED or is BLOCKED; PARTIAL: done, but an operator skipped some'
  }),
  endSystems: Type.Array(Delivery, { description: 'Per end system, its delivery of the latest version it has one for' })
})

/** Per end system its latest delivery: all SUCCESS at the latest version is in sync; a FAILED or BLOCKED one needs a person. */
export function overallState(latest: Pick<DeliveryRow, 'state' | 'customer_version'>[], latestVersion: number): Static<typeof CustomerSync>['state'] {
  if (latest.some((d) => d.state === 'FAILED' || d.state === 'BLOCKED')) return 'NEEDS_ATTENTION'
  if (latest.some((d) => d.customer_version !== latestVersion || (d.state !== 'SUCCESS' && d.state !== 'SKIPPED'))) return 'IN_PROGRESS'
  return latest.every((d) => d.state === 'SUCCESS') ? 'IN_SYNC' : 'PARTIAL'
}

const CifIdParams = Type.Object({ cifId: Type.String({ pattern: CIF_ID_PATTERN }) })

function checkCifId(cifId: string): void {
  if (!isValidCifId(cifId)) throw ProblemError.invalid([{ parameter: 'cifId', detail: 'has a wrong check digit' }], 'The CIF ID is malformed.')
}


export interface CallbackApiOptions {
  db: Db
  sourceSystemKeyHashes: Map<string, string>
}

/** What source systems ask: how is my customer doing in every end system, and what changed since I last asked. */
export async function callbackApi(app: HttpServer, { db, sourceSystemKeyHashes }: CallbackApiOptions): Promise<void> {
  requireApiKey(app, sourceSystemKeyHashes)

  app.get(
    '/customers/:cifId',
    {
      schema: {
        tags: ['callback'],
        summary: "A customer's sync state, per end system",
        security,
        params: CifIdParams,
        response: { 200: CustomerSync, ...problems }
      }
    },
    async (request) => {
      const { cifId } = request.params
      checkCifId(cifId)
      const owner = await db.selectFrom('sync_event').select('owner_source_system').where('cif_id', '=', cifId).limit(1).executeTakeFirst()
      // Another source system's customer is as unknown as a customer that does not exist.
      if (!owner || owner.owner_source_system !== request.caller) {
        throw new ProblemError(syncerProblems.customerNotFound, `The syncer has no customer ${cifId} of your source system.`)
      }
      const latest = await db
        .selectFrom('delivery')
        .selectAll()
        .distinctOn('end_system')
        .where('cif_id', '=', cifId)
        .orderBy('end_system')
        .orderBy('customer_version', 'desc')
        .execute()
      const latestVersion = Math.max(...latest.map((d) => d.customer_version))
      return { cifId, latestVersion, state: overallState(latest, latestVersion), endSystems: latest.map(toDelivery) }
    }
  )

  app.get(
    '/updates',
    {
      schema: {
        tags: ['callback'],
        summary: "Status changes of your customers since a cursor, in order",
        description:
          'Start without `after`; pass the `next` of each answer as `after` of the following call. Positions follow commit order, so none is ever skipped and a customer\'s IN_SYNC comes after its deliveries.',
        security,
        querystring: Type.Object(
          {
            after: Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$', description: 'The `next` of the previous answer' })),
            limit: Type.Optional(Type.String({ pattern: '^(?:[1-9]|[1-9][0-9]|[1-4][0-9]{2}|500)$', description: '1-500, default 100' }))
          },
          { additionalProperties: false }
        ),
        response: {
          200: Type.Object({ updates: Type.Array(Type.Record(Type.String(), Type.Unknown())), next: Type.String() }),
          ...problems
        }
      }
    },
    async (request) => {
      const after = request.query.after ?? '0'
      const rows = await db
        .selectFrom('sync_status_update')
        .select(['seq', 'status'])
        .where('owner_source_system', '=', request.caller)
        .where('seq', 'is not', null)
        .where('seq', '>', after)
        .orderBy('seq')
        .limit(Number(request.query.limit ?? 100))
        .execute()
      return { updates: rows.map((row) => row.status), next: rows.at(-1)?.seq ?? after }
    }
  )
}

export interface AdminApiOptions {
  db: Db
  operatorKeyHashes: Map<string, string>
}

const Reason = Type.Object({ reason: Type.String({ minLength: 3, maxLength: 500, description: 'Why, for the record' }) }, { additionalProperties: false })
const IdParams = Type.Object({ id: Type.String({ pattern: '^[1-9][0-9]{0,17}$' }) })
const isoTime = Type.String({ format: 'date-time' })

/** What operators need: find deliveries and attempts, redrive what failed, skip what must not go. */
export async function adminApi(app: HttpServer, { db, operatorKeyHashes }: AdminApiOptions): Promise<void> {
  requireApiKey(app, operatorKeyHashes)

  const filterFields = {
    cifId: Type.Optional(Type.String({ pattern: CIF_ID_PATTERN })),
    endSystem: Type.Optional(Type.String({ maxLength: 50 })),
    from: Type.Optional(isoTime),
    to: Type.Optional(isoTime),
    after: Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$', description: 'The last id of the previous page' })),
    limit: Type.Optional(Type.String({ pattern: '^(?:[1-9]|[1-9][0-9]|[1-4][0-9]{2}|500)$' }))
  }
  const filters = Type.Object(filterFields, { additionalProperties: false })

  app.get(
    '/deliveries',
    {
      schema: {
        tags: ['admin'],
        summary: 'Deliveries by CIF ID, end system, state and creation time',
        security,
        querystring: Type.Object({ ...filterFields, state: Type.Optional(Type.Enum([...states])) }, { additionalProperties: false }),
        response: { 200: Type.Object({ deliveries: Type.Array(Delivery) }), ...problems }
      }
    },
    async (request) => {
      const q = request.query as Static<typeof filters> & { state?: (typeof states)[number] }
      let query = db.selectFrom('delivery').selectAll().orderBy('id').limit(Number(q.limit ?? 100))
      if (q.cifId) query = query.where('cif_id', '=', q.cifId)
      if (q.endSystem) query = query.where('end_system', '=', q.endSystem)
      if (q.state) query = query.where('state', '=', q.state)
      if (q.from) query = query.where('created_at', '>=', new Date(q.from))
      if (q.to) query = query.where('created_at', '<', new Date(q.to))
      if (q.after) query = query.where('id', '>', q.after)
      return { deliveries: (await query.execute()).map(toDelivery) }
    }
  )

  app.get(
    '/attempts',
    {
      schema: {
        tags: ['admin'],
        summary: 'The transaction table: attempts by CIF ID, end system, status and start time',
        security,
        querystring: Type.Object(
          { ...filterFields, status: Type.Optional(Type.Enum(['SUCCESS', 'ERROR'])), deliveryId: Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$' })) },
          { additionalProperties: false }
        ),
        response: { 200: Type.Object({ attempts: Type.Array(Attempt) }), ...problems }
      }
    },
    async (request) => {
      const q = request.query as Static<typeof filters> & { status?: 'SUCCESS' | 'ERROR'; deliveryId?: string }
      let query = db.selectFrom('delivery_attempt').selectAll().orderBy('id').limit(Number(q.limit ?? 100))
      if (q.cifId) query = query.where('cif_id', '=', q.cifId)
      if (q.endSystem) query = query.where('end_system', '=', q.endSystem)
      if (q.status) query = query.where('status', '=', q.status)
      if (q.deliveryId) query = query.where('delivery_id', '=', q.deliveryId)
      if (q.from) query = query.where('started_at', '>=', new Date(q.from))
      if (q.to) query = query.where('started_at', '<', new Date(q.to))
      if (q.after) query = query.where('id', '>', q.after)
      const rows = await query.execute()
      return {
        attempts: rows.map((a) => ({
          attemptId: a.id,
          deliveryId: a.delivery_id,
          eventId: a.event_id,
          cifId: a.cif_id,
          eventType: a.event_type,
          customerVersion: a.customer_version,
          endSystem: a.end_system,
          attemptNumber: a.attempt_number,
          status: a.status,
          httpStatus: a.http_status,
          message: a.response_message,
          remarks: a.remarks,
          timeoutMs: a.timeout_ms,
          durationMs: a.duration_ms,
          startedAt: a.started_at.toISOString(),
          finishedAt: a.finished_at.toISOString()
        }))
      }
    }
  )

  app.get(
    '/summary',
    {
      schema: {
        tags: ['admin'],
        summary: 'Deliveries counted by end system and state',
        security,
        response: { 200: Type.Object({ counts: Type.Array(Type.Object({ endSystem: Type.String(), state: Type.String(), count: Type.Integer() })) }) }
      }
    },
    async () => {
      const rows = await db
        .selectFrom('delivery')
        .select(['end_system', 'state', (eb) => eb.fn.countAll<string>().as('n')])
        .groupBy(['end_system', 'state'])
        .orderBy('end_system')
        .orderBy('state')
        .execute()
      return { counts: rows.map((r) => ({ endSystem: r.end_system, state: r.state, count: Number(r.n) })) }
    }
  )

  for (const [action, run] of [['redrive', redrive], ['skip', skip]] as const) {
    app.post(
      `/deliveries/:id/${action}`,
      {
        schema: {
          tags: ['admin'],
          summary: action === 'redrive' ? 'Send a FAILED delivery again, with a fresh retry budget' : 'Give up on a FAILED or BLOCKED delivery',
          security,
          params: IdParams,
          body: Reason,
          response: { 200: Delivery, ...problems }
        }
      },
      async (request) => toDelivery(await run(db, { deliveryId: request.params.id, operator: request.caller, reason: request.body.reason }))
    )
  }
}
