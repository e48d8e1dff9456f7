import { createHash } from 'node:crypto'
import { httpProblems, Refusal } from '../../contracts/problems.ts'
import type { HttpServer } from './server.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Who presented the API key: a source system, or an operator on the admin API. */
    caller: string
  }
}

/** A configured key: its SHA-256 (hex), and when it stops being accepted, if ever. */
export interface ApiKey {
  hash: string
  expiresAt?: Date
}

export function apiKeyHash(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex')
}

/**
 * Requires `Authorization: Bearer <key>` (the scheme in any case, RFC 9110) on every route of `scope` (and
 * only there: Fastify scopes hooks to the plugin that adds them). Keys are known only by their SHA-256,
 * looked up in one step; an address that fails too often is locked out for a while (lockout.ts). The caller's name goes into every log line of the request, the access log
 * included: each read of personal data is attributable.
 */
export function requireApiKey(scope: HttpServer, keyHashes: ReadonlyMap<string, readonly ApiKey[]>): void {
  const failures = scope.failedAuthentications
  const callerByHash = new Map(
    [...keyHashes].flatMap(([caller, keys]) => keys.map((key) => [key.hash, { caller, expiresAt: key.expiresAt }] as const))
  )
  scope.decorateRequest('caller', '')
  scope.addHook('onRequest', async (request, reply) => {
    const locked = failures.lockedFor(request.ip)
    if (locked > 0) {
      reply.header('retry-after', String(Math.ceil(locked / 1000)))
      throw new Refusal(httpProblems.tooManyRequests, 'Too many failed authentications from your address; wait before trying again.')
    }
    const match = /^bearer ([\x21-\x7e]{8,200})$/i.exec(request.headers.authorization ?? '')
    const known = match ? callerByHash.get(apiKeyHash(match[1]!)) : undefined
    const expired = known?.expiresAt !== undefined && known.expiresAt.getTime() <= Date.now()
    const caller = expired ? undefined : known?.caller
    if (!caller) {
      failures.failed(request.ip)
      reply.header('www-authenticate', 'Bearer')
      const why = expired
        ? `The API key expired at ${known.expiresAt!.toISOString()}; use your new one.`
        : match
          ? 'The API key is not known.'
          : 'Send your API key as "Authorization: Bearer <key>".'
      throw new Refusal(httpProblems.unauthorized, why)
    }
    request.caller = caller
    request.log = request.log.child({ caller })
    reply.log = request.log
  })
}
