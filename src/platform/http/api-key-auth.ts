import { createHash } from 'node:crypto'
import { httpProblems, Refusal } from '../../contracts/problems.ts'
import type { HttpServer } from './server.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Who presented the API key: a source system, or an operator on the admin API. */
    caller: string
  }
}

export function apiKeyHash(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex')
}

/**
 * Requires `Authorization: Bearer <key>` on every route of `scope` (and only there: Fastify scopes hooks to
 * the plugin that adds them). Keys are known only by their SHA-256, looked up in one step.
 */
export function requireApiKey(scope: HttpServer, keyHashes: Map<string, string>): void {
  const callerByHash = new Map([...keyHashes].map(([caller, hash]) => [hash, caller]))
  scope.decorateRequest('caller', '')
  scope.addHook('onRequest', async (request, reply) => {
    const match = /^Bearer ([\x21-\x7e]{8,200})$/.exec(request.headers.authorization ?? '')
    const caller = match ? callerByHash.get(apiKeyHash(match[1]!)) : undefined
    if (!caller) {
      reply.header('www-authenticate', 'Bearer')
      throw new Refusal(httpProblems.unauthorized, match ? 'The API key is not known.' : 'Send your API key as "Authorization: Bearer <key>".')
    }
    request.caller = caller
  })
}
