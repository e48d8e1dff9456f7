import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { mayAccess, type SourceSystemGrant } from '../contracts/access.ts'
import { requireValidCifId } from '../contracts/cif-id.ts'
import { CifIdParams, Customer, CustomerInput, CustomerPatch, immutableFields } from '../contracts/customer.ts'
import type { EventSigningKey } from '../contracts/event-signature.ts'
import { cifProblems, Refusal } from '../contracts/problems.ts'
import { type ApiKey, requireApiKey } from '../platform/http/api-key-auth.ts'
import { problemOf } from '../platform/http/problem.ts'
import { apiKeySecurity, type HttpServer, PROBLEM_JSON, problemResponses } from '../platform/http/server.ts'
import { seconds } from '../platform/metrics.ts'
import { endSpan, SpanKind, TRACEPARENT, traceparentOf } from '../platform/tracing.ts'
import { customerRuleErrors, reviewFlagsOf, todayUtc } from './customer-rules.ts'
import { type Caller, type CreateOutcome, CustomerCreator, findCustomer, updateCustomer } from './customer-store.ts'
import { requestHash, storeRefusal } from './idempotency.ts'
import { type CifTelemetry, createOutcome } from './metrics.ts'
import type { CifDb } from './tables.ts'

export interface CifApiOptions {
  db: CifDb
  sourceSystemKeyHashes: ReadonlyMap<string, readonly ApiKey[]>
  sourceSystemGrants: ReadonlyMap<string, ReadonlySet<SourceSystemGrant>>
  /** Signs every customer event, so that the syncer can tell the CIF service's events from forged ones. */
  eventSigningKey: EventSigningKey
  telemetry: CifTelemetry
}

const problems = problemResponses(400, 401, 404, 409, 410, 412, 413, 415, 422, 428)
const security = apiKeySecurity('sourceSystemKey')
const etag = (version: number) => `"${version}"`

/** `If-Match: "<version>"`, as the ETag of the last read gave it. */
function expectedVersion(ifMatch: string | undefined): number {
  if (ifMatch === undefined) {
    throw new Refusal(cifProblems.ifMatchRequired, 'Send If-Match with the ETag of the version you read, so no concurrent change is overwritten.', {
      errors: [{ header: 'if-match', detail: 'is required' }]
    })
  }
  const match = /^"([1-9][0-9]{0,8})"$/.exec(ifMatch.trim())
  if (!match) throw Refusal.invalid([{ header: 'if-match', detail: 'must be an ETag such as "3"' }])
  return Number(match[1])
}

export async function cifApi(app: HttpServer, options: CifApiOptions): Promise<void> {
  const { db, sourceSystemGrants, eventSigningKey } = options
  const { metrics, tracing } = options.telemetry
  requireApiKey(app, options.sourceSystemKeyHashes)
  const creator = new CustomerCreator(db, eventSigningKey)
  const callerOf = (request: FastifyRequest): Caller => ({
    sourceSystem: request.caller,
    may: (owner, access) => mayAccess(sourceSystemGrants, request.caller, owner, access)
  })

  app.post(
    '/customers',
    {
      schema: {
        tags: ['customers'],
        summary: 'Create a customer and get its CIF ID',
        security,
        headers: Type.Object({
          'idempotency-key': Type.Optional(
            Type.String({ pattern: '^[\\x21-\\x7e]{1,255}$', description: 'Retries with the same key and body return the first response' })
          )
        }),
        body: CustomerInput,
        response: { 201: Customer, ...problems }
      },
      // Every answer is counted, those Fastify gives before the handler (a body that fails its schema) too.
      onResponse: async (_request, reply) => {
        const outcome = createOutcome(reply.statusCode, reply.getHeader('idempotent-replayed') === 'true')
        metrics.createRequests.inc({ outcome, status: reply.statusCode })
        metrics.createSeconds.observe({ outcome }, seconds(reply.elapsedTime))
      }
    },
    async (request, reply) => {
      // The span of the create: its traceparent goes into the outbox row, and on to every end system.
      const span = tracing.start('create customer', SpanKind.SERVER, request.headers[TRACEPARENT], {
        'http.request.method': 'POST',
        'http.route': '/v1/customers',
        'cif.source_system': request.caller
      })
      try {
        const answer = await create(request, request.body, request.headers['idempotency-key'], reply, traceparentOf(span))
        if (answer.cifId) span.setAttribute('cif.id', answer.cifId)
        span.setAttribute('http.response.status_code', reply.statusCode)
        endSpan(span)
        return answer
      } catch (error) {
        endSpan(span, error instanceof Refusal ? error.type.code : 'internal error')
        throw error
      }
    }
  )

  async function create(
    request: FastifyRequest,
    input: CustomerInput,
    key: string | undefined,
    reply: FastifyReply,
    traceparent: string
  ): Promise<Customer> {
    const ruleErrors = customerRuleErrors(input, todayUtc())
    if (ruleErrors.length) throw Refusal.invalid(ruleErrors)

    const idempotency = key ? { key, requestHash: requestHash(input) } : undefined
    const headersOf = (customer: Customer) => ({ location: `/v1/customers/${customer.cifId}`, etag: etag(customer.version) })
    let outcome: CreateOutcome
    try {
      outcome = await creator.create(
        input,
        callerOf(request),
        idempotency && { ...idempotency, answer: (customer) => ({ status: 201, body: customer, headers: headersOf(customer) }) },
        traceparent
      )
    } catch (error) {
      // A refusal (4xx) is the answer to that request and is replayed; anything else leaves the key free for a retry.
      if (!(idempotency && error instanceof Refusal && error.type.status < 500 && error.type !== cifProblems.idempotencyKeyReused)) throw error
      const response = {
        status: error.type.status,
        body: { ...problemOf(error), instance: request.url },
        headers: { 'content-type': PROBLEM_JSON }
      }
      const first = await storeRefusal(db, request.caller, idempotency, response)
      if (!first) throw error
      outcome = { kind: 'replayed', response: first }
    }
    if (outcome.kind === 'replayed') {
      // A replay answers what the first request was answered: the 201 or a problem.
      const { status, headers, body } = outcome.response
      reply.status(status as 201).headers({ ...headers, 'idempotent-replayed': 'true' })
      return body as Customer
    }
    logReviewFlags(request, outcome.customer)
    reply.status(201).headers(headersOf(outcome.customer))
    return outcome.customer
  }

  app.get(
    '/customers/:cifId',
    {
      schema: { tags: ['customers'], summary: 'Read a customer', security, params: CifIdParams, response: { 200: Customer, ...problems } }
    },
    async (request, reply) => {
      requireValidCifId(request.params.cifId)
      const customer = await findCustomer(db, request.params.cifId, callerOf(request))
      if (!customer) throw new Refusal(cifProblems.customerNotFound, `No customer has CIF ID ${request.params.cifId}.`)
      return reply.header('etag', etag(customer.version)).send(customer)
    }
  )

  // Its own scope, so that only PATCH accepts the merge-patch media type.
  await app.register(async (scope) => {
    const patchScope = scope.withTypeProvider<TypeBoxTypeProvider>()
    patchScope.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, patchScope.getDefaultJsonParser('error', 'error'))
    patchScope.patch(
      '/customers/:cifId',
      {
        schema: {
          tags: ['customers'],
          summary: 'Change a customer (JSON Merge Patch, RFC 7396); If-Match is required',
          description: 'A change that leaves the record as it was creates no new version and no event.',
          security,
          params: CifIdParams,
          headers: Type.Object({ 'if-match': Type.Optional(Type.String({ description: 'The ETag of the version read, e.g. "3"' })) }),
          body: CustomerPatch,
          response: { 200: Customer, ...problems }
        }
      },
      async (request, reply) => {
        requireValidCifId(request.params.cifId)
        const version = expectedVersion(request.headers['if-match'])
        const immutable = immutableFields.filter((field) => field in request.body)
        if (immutable.length) {
          throw Refusal.invalid(immutable.map((field) => ({ pointer: `/${field}`, detail: 'cannot be changed after create' })))
        }
        const span = tracing.start('change customer', SpanKind.SERVER, request.headers[TRACEPARENT], {
          'http.request.method': 'PATCH',
          'http.route': '/v1/customers/{cifId}',
          'cif.id': request.params.cifId,
          'cif.source_system': request.caller
        })
        let customer: Customer
        try {
          customer = await db
            .transaction()
            .execute((trx) =>
              updateCustomer(trx, request.params.cifId, request.body, version, callerOf(request), eventSigningKey, traceparentOf(span))
            )
          endSpan(span)
        } catch (error) {
          endSpan(span, error instanceof Refusal ? error.type.code : 'internal error')
          throw error
        }
        logReviewFlags(request, customer)
        return reply.header('etag', etag(customer.version)).send(customer)
      }
    )
  })
}

/** A record accepted with review flags is told to operations in the log: which flag, which fields, never their values. */
function logReviewFlags(request: FastifyRequest, customer: Customer): void {
  if (!customer.reviewFlags) return
  for (const { flag, fields } of reviewFlagsOf(customer)) {
    request.log.warn({ cifId: customer.cifId, version: customer.version, reviewFlag: flag, fields }, 'customer accepted with a flag for review')
  }
}
