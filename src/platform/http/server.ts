import { createHash, randomUUID } from 'node:crypto'
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http'
import helmet from '@fastify/helmet'
import rateLimit from '@fastify/rate-limit'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
  type RawServerDefault
} from 'fastify'
import { Type } from 'typebox'
import { httpProblems, type ProblemType, problemTypeUri, Refusal } from '../../contracts/problems.ts'
import { isDatabaseUnreachable } from '../database/index.ts'
import type { Logger } from '../logger.ts'
import { FailedAuthentications } from './lockout.ts'
import { fieldErrorsFromAjv, type Problem, problemDocument, problemOf } from './problem.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Shared by every API of the server (api-key-auth.ts): a lockout counts all of them. */
    failedAuthentications: FailedAuthentications
  }
}

export type HttpServer = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>

/** What a client may take of a server, so that no client (slow, flooding or guessing keys) takes it all. */
export interface HttpLimits {
  /** The whole request, body included, must have arrived within this; a slow body is cut (408). */
  requestTimeoutMs: number
  /** An idle kept-alive connection is closed after this. */
  keepAliveTimeoutMs: number
  /** Connections beyond this are refused at once. */
  maxConnections: number
  /** Requests per minute per API key presented (or, without one, per address); then 429 with Retry-After. */
  rateLimitPerMinute: number
  /** Failed authentications from one address within a lockout period before it is locked out (429). */
  authFailuresBeforeLockout: number
  lockoutMs: number
}

/** The limits when none are configured (HTTP_* and AUTH_* settings, platform/config.ts). */
export const defaultHttpLimits: HttpLimits = {
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 10_000,
  maxConnections: 2048,
  rateLimitPerMinute: 60_000,
  authFailuresBeforeLockout: 20,
  lockoutMs: 60_000
}

export interface HttpServerOptions {
  logger: Logger
  bodyLimitBytes: number
  limits?: HttpLimits | undefined
  /** Serve `/docs` and `/openapi.json` (Config.publicApiDocs); the routes are documented either way. */
  publicApiDocs?: boolean | undefined
  /**
   * PEM certificate and key: HTTPS instead of HTTP. With `ca`, every client is asked for a certificate of
   * those authorities; one without it still connects (health probes, callers with keys alone), and
   * api-key-auth.ts decides what a verified certificate is worth.
   */
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer } | undefined
  title: string
  description: string
  /**
   * Each named check answers whether that part works, as a boolean or with details an operator can act
   * on (an intake's state and lag, a relay's backlog); `/health/ready` is 200 only when all are up.
   */
  readinessChecks: Record<string, () => Promise<boolean | ReadinessDetail>>
  /** The service's own problem types, documented in its OpenAPI beside the ones every API has. */
  problemTypes?: Record<string, ProblemType>
  /**
   * Every request in the access log at info (default: a bank's audit reads it, docs/security.md), or only
   * refusals and failures, the rest at debug (a person reading the local stack's log).
   */
  logEveryRequest?: boolean | undefined
  /** The API keys its routes take (apiKeySecurity); none: a documentation page with no Authorize. */
  apiKeySchemes?: ApiKeyScheme[]
}

/** A check's answer with details: `up`, and whatever else an operator should see. */
export interface ReadinessDetail {
  up: boolean
}

export const PROBLEM_JSON = 'application/problem+json'

/** The OpenAPI responses of a route's problems, one per status it can refuse with. */
export function problemResponses(...statuses: number[]): Record<string, unknown> {
  return Object.fromEntries(
    statuses.map((status) => [
      String(status),
      { description: 'Problem details (RFC 9457)', content: { [PROBLEM_JSON]: { schema: Type.Ref('Problem') } } }
    ])
  )
}

/**
 * The API keys a route may ask for (api-key-auth.ts), as OpenAPI security schemes: each API declares the
 * ones its routes take, so its documentation page offers exactly those (and no Authorize at all for none).
 */
export const apiKeySchemes = {
  sourceSystemKey: "A source system's API key (CIF_SOURCE_SYSTEMS)",
  operatorKey: "An operator's API key (SYNCER_OPERATORS), for the admin API"
} as const
export type ApiKeyScheme = keyof typeof apiKeySchemes

/** The OpenAPI security requirement of a route behind that kind of key. */
export const apiKeySecurity = (scheme: ApiKeyScheme): Partial<Record<ApiKeyScheme, string[]>>[] => [{ [scheme]: [] }]

/** RFC 9457 problem details, with the problem types the service answers with listed for its callers. */
function problemSchema(types: ProblemType[]) {
  const catalogue = types.map((t) => `- \`${problemTypeUri(t.code)}\` (${t.status}) ${t.title}: ${t.description}`).join('\n')
  return Type.Object(
    {
      type: Type.String({ description: `What kind of problem this is; tell problems apart by it, not by \`detail\`:\n${catalogue}` }),
      title: Type.String(),
      status: Type.Integer(),
      detail: Type.Optional(Type.String()),
      instance: Type.Optional(Type.String()),
      errors: Type.Optional(
        Type.Array(
          Type.Object({
            pointer: Type.Optional(Type.String({ description: 'JSON Pointer into the request body' })),
            parameter: Type.Optional(Type.String()),
            header: Type.Optional(Type.String()),
            detail: Type.String()
          })
        )
      )
    },
    { $id: 'Problem', description: 'RFC 9457 problem details', additionalProperties: true }
  )
}

/** What a 503 for an unreachable database tells a caller to wait: a PostgreSQL restart or failover takes seconds. */
const DATABASE_RETRY_AFTER_SECONDS = 5

/**
 * Maps Fastify's own errors (parsing, limits, validation), and the database out of reach, to the problem types
 * and words a caller can act on.
 */
export function problemFor(error: FastifyError): Problem {
  if (error instanceof Refusal) return problemOf(error)
  if (isDatabaseUnreachable(error)) {
    return problemDocument(httpProblems.serviceUnavailable, 'The database cannot be reached right now; nothing was stored or changed. Retry shortly.')
  }
  if (error.validation) {
    return problemOf(Refusal.invalid(fieldErrorsFromAjv(error.validation as never, error.validationContext ?? 'body')))
  }
  const byCode: Record<string, [ProblemType, string]> = {
    FST_ERR_CTP_BODY_TOO_LARGE: [httpProblems.bodyTooLarge, 'The request body is larger than this API accepts.'],
    FST_ERR_CTP_INVALID_MEDIA_TYPE: [httpProblems.unsupportedMediaType, 'Send the body as application/json.'],
    FST_ERR_CTP_EMPTY_JSON_BODY: [httpProblems.malformedBody, 'The request body is empty; a JSON document is expected.'],
    FST_ERR_CTP_INVALID_CONTENT_LENGTH: [httpProblems.malformedBody, 'The Content-Length header does not match the body.'],
    FST_ERR_CTP_INVALID_JSON_BODY: [httpProblems.malformedBody, 'The request body is not valid JSON.']
  }
  const known = error.code ? byCode[error.code] : undefined
  if (known) return problemDocument(known[0], known[1])
  const status = error.statusCode ?? 500
  if (status === 400 && (error instanceof SyntaxError || /JSON|__proto__|constructor/.test(error.message))) {
    return problemDocument(httpProblems.malformedBody, 'The request body is not valid JSON.')
  }
  // Any other refusal the framework makes says all there is to say with its status.
  if (status >= 400 && status < 500) return { type: 'about:blank', title: STATUS_CODES[status] ?? 'Error', status, detail: error.message }
  return problemDocument(httpProblems.internalError, 'An unexpected error occurred.')
}

/**
 * The access log: one line per request once answered, with the request and the answer, instead of
 * Fastify's two ("incoming request" as well). Successful requests at debug unless `everyRequest`.
 */
class AccessLog extends LogController {
  readonly #everyRequest: boolean

  constructor(everyRequest: boolean) {
    super()
    this.#everyRequest = everyRequest
  }

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const line = { req: request, res: reply, responseTime: reply.elapsedTime }
    if (error) reply.log.error({ ...line, err: error }, 'request errored')
    else reply.log[this.#everyRequest || reply.statusCode >= 400 ? 'info' : 'debug'](line, 'request completed')
  }
}

export async function createHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const limits = options.limits ?? defaultHttpLimits
  const requestTimeout = { requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: 1000 }
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    bodyLimit: options.bodyLimitBytes,
    logController: new AccessLog(options.logEveryRequest ?? true),
    // Node cuts a request that has not fully arrived (a slow body) only when its server was created with the
    // timeout, checking on this beat (30 s by default): within a second of the timeout, with a 408.
    ...(options.tls
      ? { https: { ...options.tls, ...(options.tls.ca ? { requestCert: true, rejectUnauthorized: false } : {}), ...requestTimeout } }
      : { http: requestTimeout }),
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && /^[\w.-]{1,100}$/.test(given) ? given : randomUUID()
    },
    // What the router refuses before any route (a bad percent-encoding, an overlong path parameter) is a
    // problem too, not Fastify's own JSON.
    frameworkErrors: (error, request, reply: FastifyReply) => {
      reply
        .status(400)
        .type(PROBLEM_JSON)
        .send({ ...problemDocument(httpProblems.validationFailed, `The URL cannot be read: ${error.message}`), instance: request.url })
    },
    ajv: {
      // Reject, never repair: unknown fields and wrong types are errors, and every field at fault is named.
      customOptions: { allErrors: true, coerceTypes: false, removeAdditional: false, useDefaults: false }
    }
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.server.maxConnections = limits.maxConnections
  app.decorate('failedAuthentications', new FailedAuthentications(limits.authFailuresBeforeLockout, limits.lockoutMs))
  app.addSchema(problemSchema([...Object.values(httpProblems), ...Object.values(options.problemTypes ?? {})]))
  // Security headers on every answer; the API documentation page (swagger-ui) needs its own inline styles.
  await app.register(helmet, {
    contentSecurityPolicy: {
      directives: { defaultSrc: ["'self'"], styleSrc: ["'self'", "'unsafe-inline'"], imgSrc: ["'self'", 'data:'], scriptSrc: ["'self'"] }
    },
    hsts: options.tls !== undefined
  })
  // Answers carry customers' personal data: no cache (a browser's, a proxy's) may keep them.
  app.addHook('onSend', async (_request, reply, payload) => {
    reply.header('cache-control', 'no-store')
    return payload
  })
  await app.register(rateLimit, {
    max: limits.rateLimitPerMinute,
    timeWindow: 60_000,
    // A bucket per credential presented (its hash: the key itself is never kept), else per address.
    keyGenerator: (request) => {
      const authorization = request.headers.authorization
      return authorization ? `key:${createHash('sha256').update(authorization).digest('hex')}` : `address:${request.ip}`
    },
    // Probes (a load balancer, an orchestrator) are not callers and must never be turned away.
    allowList: (request) => request.url.startsWith('/health/'),
    errorResponseBuilder: (_request, context) =>
      new Refusal(httpProblems.tooManyRequests, `More than ${context.max} requests a minute; retry after ${context.after}.`)
  })
  // This API speaks JSON only; a text body is the wrong media type, not a malformed document.
  app.removeContentTypeParser('text/plain')

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const problem = problemFor(error)
    // The database away is an outage to watch, not a fault in this request: a warning, and when to try again.
    if (problem.status === httpProblems.serviceUnavailable.status) {
      request.log.warn({ err: error }, 'request failed: the database cannot be reached')
      reply.header('retry-after', String(DATABASE_RETRY_AFTER_SECONDS))
    } else if (problem.status >= 500) request.log.error({ err: error }, 'request failed')
    else request.log.info({ status: problem.status, code: error.code }, problem.title)
    reply
      .status(problem.status)
      .type(PROBLEM_JSON)
      .send({ ...problem, instance: request.url })
  })
  // Which methods each path answers, to tell "no such path" (404) from "not with this method" (405).
  const routes: { pattern: RegExp; method: string }[] = []
  app.addHook('onRoute', (route) => {
    const pattern = new RegExp(`^${route.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:[A-Za-z]+/g, '[^/]+')}/?$`)
    for (const method of [route.method].flat()) routes.push({ pattern, method })
  })
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? ''
    const allowed = [...new Set(routes.filter((route) => route.pattern.test(path)).map((route) => route.method))]
    if (allowed.length) {
      reply
        .status(405)
        .header('allow', allowed.join(', '))
        .type(PROBLEM_JSON)
        .send(problemDocument(httpProblems.methodNotAllowed, `${request.url} answers ${allowed.join(', ')}, not ${request.method}.`))
      return
    }
    reply
      .status(404)
      .type(PROBLEM_JSON)
      .send(problemDocument(httpProblems.notFound, `No route ${request.method} ${request.url}.`))
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: options.title, description: options.description, version: '1' },
      components: {
        securitySchemes: Object.fromEntries(
          (options.apiKeySchemes ?? []).map((scheme) => [scheme, { type: 'http' as const, scheme: 'bearer', description: apiKeySchemes[scheme] }])
        )
      }
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) }
  })
  if (options.publicApiDocs ?? true) {
    await app.register(swaggerUi, { routePrefix: '/docs' })
    app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger())
  }

  app.get('/health/live', { schema: { tags: ['health'], summary: 'The process is up' } }, () => ({ status: 'ok' }))
  app.get('/health/ready', { schema: { tags: ['health'], summary: 'Every dependency answers and the work is moving' } }, async (_request, reply) => {
    const names = Object.keys(options.readinessChecks)
    const results = await Promise.all(names.map((name) => options.readinessChecks[name]!().catch(() => false)))
    const up = results.map((result) => (typeof result === 'boolean' ? result : result.up))
    const checks = Object.fromEntries(names.map((name, i) => [name, up[i] ? 'up' : 'down']))
    const details = Object.fromEntries(
      names.flatMap((name, i) => {
        const result = results[i]
        if (typeof result === 'boolean' || result === undefined) return []
        const { up: _up, ...detail } = result
        return [[name, detail]]
      })
    )
    const ready = up.every(Boolean)
    reply.status(ready ? 200 : 503)
    return Object.keys(details).length
      ? { status: ready ? 'ready' : 'not ready', checks, details }
      : { status: ready ? 'ready' : 'not ready', checks }
  })
  return app
}
