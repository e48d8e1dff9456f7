import { createHash } from 'node:crypto'
import { sql } from 'kysely'
import { canonicalJson } from '../contracts/canonical-json.ts'
import { cifProblems, Refusal } from '../contracts/problems.ts'
import type { CifDb } from './tables.ts'

export interface StoredResponse {
  status: number
  body: unknown
  headers: Record<string, string>
}

/**
 * An idempotent create (as Fineract and Stripe do it): the key's row is written in the create's own
 * transaction, with its answer. A concurrent retry with the key waits on the uncommitted row's unique
 * index, then replays the answer once the first commits, or runs itself if the first rolled back.
 */
export interface IdempotentRequest {
  key: string
  requestHash: string
}

/** Key order does not make two bodies different requests. */
export function requestHash(body: unknown): string {
  return createHash('sha256').update(canonicalJson(body)).digest('hex')
}

/** The answer the key stands for, if it was used before; the same key with another body is refused (422). */
export async function storedResponse(db: CifDb, sourceSystem: string, request: IdempotentRequest): Promise<StoredResponse | undefined> {
  const stored = await db
    .selectFrom('idempotency_key')
    .select(['request_hash', 'response_status', 'response_body', 'response_headers'])
    .where('source_system', '=', sourceSystem)
    .where('key', '=', request.key)
    .executeTakeFirst()
  if (!stored) return undefined
  if (stored.request_hash !== request.requestHash) {
    throw new Refusal(
      cifProblems.idempotencyKeyReused,
      'This Idempotency-Key was used for a different request body; use a new key for a new request.',
      {
        errors: [{ header: 'idempotency-key', detail: 'was used with another body' }]
      }
    )
  }
  return { status: stored.response_status, body: stored.response_body, headers: stored.response_headers }
}

/**
 * Stores a refusal as the key's answer, after the create's transaction rolled back. A retry that ran in
 * between may have stored its own answer first: that one is the key's, and is returned to be replayed.
 */
export async function storeRefusal(
  db: CifDb,
  sourceSystem: string,
  request: IdempotentRequest,
  response: StoredResponse
): Promise<StoredResponse | undefined> {
  const stored = await db
    .insertInto('idempotency_key')
    .values({
      source_system: sourceSystem,
      key: request.key,
      request_hash: request.requestHash,
      response_status: response.status,
      response_body: JSON.stringify(response.body),
      response_headers: JSON.stringify(response.headers)
    })
    .onConflict((oc) => oc.doNothing())
    .returning('key')
    .executeTakeFirst()
  if (stored) return undefined
  return storedResponse(db, sourceSystem, request)
}

/**
 * Deletes up to `limit` keys older than `olderThanHours` (one batch; see inBatches): a stored answer holds
 * the customer as created, personal data included, and is needed only while a client may still retry.
 */
export async function purgeIdempotencyKeys(db: CifDb, olderThanHours: number, limit: number): Promise<number> {
  const result = await db
    .deleteFrom('idempotency_key')
    .where(({ eb, refTuple, selectFrom }) =>
      eb(
        refTuple('source_system', 'key'),
        'in',
        selectFrom('idempotency_key')
          .select(['source_system', 'key'])
          .where('created_at', '<', sql<Date>`now() - make_interval(hours => ${olderThanHours})`)
          .limit(limit)
          .forUpdate()
          .skipLocked()
          .$asTuple('source_system', 'key')
      )
    )
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}
