import { createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { ProblemError } from './problem.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller: the source system whose API key was presented. */
    sourceSystem: string
  }
}

export function apiKeyHash(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex')
}

/**
 * Requires `Authorization: Bearer <key>` on every route of `scope` (and only there: Fastify scopes hooks to
 * the plugin that adds them). Keys are known only by their SHA-256, looked up in one step.
 */
export function requireApiKey(scope: FastifyInstance<any, any, any, any, any>, keyHashes: Map<string, string>): void {
  const systemByHash = new Map([...keyHashes].map(([system, hash]) => [hash, system]))
  scope.decorateRequest('sourceSystem', '')
  scope.addHook('onRequest', async (request, reply) => {
    const match = /^Bearer ([\x21-\x7e]{8,200})$/.exec(request.headers.authorization ?? '')
    const system = match ? systemByHash.get(apiKeyHash(match[1]!)) : undefined
    if (!system) {
      reply.header('www-authenticate', 'Bearer')
      throw new ProblemError(401, match ? 'The API key is not known.' : 'Send your API key as "Authorization: Bearer <key>".')
    }
    request.sourceSystem = system
  })
}
