import { createHash, randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { canonicalJson } from '../contracts/canonical-json.ts'
import { cifProblems, Refusal } from '../contracts/problems.ts'

/** How long a request may hold its key before a retry may take over (its owner is presumed dead). */
const LEASE_SECONDS = 60

import type { CifDb } from './tables.ts'

export interface StoredResponse {
  status: number
  body: unknown
  headers: Record<string, string>
}

/** `first`: this request runs, holding the key with `token`; `replay`: answer what the first one was answered. */
export type IdempotencyStart = { kind: 'first'; token: string } | { kind: 'replay'; response: StoredResponse }

/** Key order does not make two bodies different requests. */
export function requestHash(body: unknown): string {
  return createHash('sha256').update(canonicalJson(body)).digest('hex')
}

/**
 * Idempotent create (as Fineract and Stripe do it): the key is claimed in its own committed row, so a
 * concurrent retry sees it at once (409), and the response is stored in the create's transaction.
 */
export async function startIdempotentRequest(db: CifDb, sourceSystem: string, key: string, hash: string): Promise<IdempotencyStart> {
  const token = randomUUID()
  const claimed = await db
    .insertInto('idempotency_key')
    .values({
      source_system: sourceSystem,
      key,
      request_hash: hash,
      state: 'IN_FLIGHT',
      response_status: null,
      response_body: null,
      response_headers: null,
      locked_until: sql<Date>`now() + make_interval(secs => ${LEASE_SECONDS})`,
      owner_token: token
    })
    .onConflict((oc) => oc.doNothing())
    .returning('key')
    .executeTakeFirst()
  if (claimed) return { kind: 'first', token }

  const existing = await db
    .selectFrom('idempotency_key')
    .select(['request_hash', 'state', 'response_status', 'response_body', 'response_headers'])
    .where('source_system', '=', sourceSystem)
    .where('key', '=', key)
    .executeTakeFirst()
  if (!existing) return startIdempotentRequest(db, sourceSystem, key, hash) // purged in between
  if (existing.request_hash !== hash) {
    throw new Refusal(
      cifProblems.idempotencyKeyReused,
      'This Idempotency-Key was used for a different request body; use a new key for a new request.',
      {
        errors: [{ header: 'idempotency-key', detail: 'was used with another body' }]
      }
    )
  }
  if (existing.state === 'COMPLETED') {
    return {
      kind: 'replay',
      response: { status: existing.response_status!, body: existing.response_body, headers: existing.response_headers ?? {} }
    }
  }
  const takenOver = await db
    .updateTable('idempotency_key')
    .set({ locked_until: sql<Date>`now() + make_interval(secs => ${LEASE_SECONDS})`, owner_token: token })
    .where('source_system', '=', sourceSystem)
    .where('key', '=', key)
    .where('state', '=', 'IN_FLIGHT')
    .where('locked_until', '<', sql<Date>`now()`)
    .returning('key')
    .executeTakeFirst()
  if (takenOver) return { kind: 'first', token }
  throw new Refusal(cifProblems.idempotencyKeyInUse, 'A request with this Idempotency-Key is still being processed; retry after it completes.', {
    errors: [{ header: 'idempotency-key', detail: 'is in use by a request in progress' }]
  })
}

/**
 * Stores the answer under the key, if this request still holds it; false when a retry took it over (the
 * create's transaction must then roll back, or the key would stand for two customers).
 */
export async function completeIdempotentRequest(
  db: CifDb,
  sourceSystem: string,
  key: string,
  token: string,
  response: StoredResponse
): Promise<boolean> {
  const result = await db
    .updateTable('idempotency_key')
    .set({
      state: 'COMPLETED',
      response_status: response.status,
      response_body: JSON.stringify(response.body),
      response_headers: JSON.stringify(response.headers),
      locked_until: null
    })
    .where('source_system', '=', sourceSystem)
    .where('key', '=', key)
    .where('owner_token', '=', token)
    .where('state', '=', 'IN_FLIGHT')
    .executeTakeFirst()
  return Number(result.numUpdatedRows) === 1
}

/** The request failed in a way a retry may fix (not the caller's fault): free the key, if still ours. */
export async function releaseIdempotencyKey(db: CifDb, sourceSystem: string, key: string, token: string): Promise<void> {
  await db
    .deleteFrom('idempotency_key')
    .where('source_system', '=', sourceSystem)
    .where('key', '=', key)
    .where('owner_token', '=', token)
    .where('state', '=', 'IN_FLIGHT')
    .execute()
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
