import { sql } from 'kysely'
import { cifProblems, Refusal } from '../contracts/problems.ts'
import { topics } from '../contracts/topics.ts'
import { problemOf } from '../platform/http/problem.ts'
import { PROBLEM_JSON } from '../platform/http/server.ts'
import type { CifDb, CustomerRow } from './tables.ts'

/** Who asks for a customer's personal data to be erased, and why: kept with the customer for good. */
export interface ErasureRequest {
  cifId: string
  by: string
  reason: string
}

/** What the CIF service erased: counts of rows, so the person who ran it can see it did something. */
export interface CifErasure {
  /** True when the customer had been erased before: this run only cleared what might have come since. */
  alreadyErased: boolean
  identifiers: number
  idempotentAnswers: number
  outboxMessages: number
}

/** The refusal for an erased customer, to whoever may know of it. */
export function erasedRefusal(row: Pick<CustomerRow, 'cif_id' | 'erased_at'>): Refusal {
  const erasedAt = row.erased_at!.toISOString()
  return new Refusal(cifProblems.customerErased, `Customer ${row.cif_id} was erased at ${erasedAt}.`, { erasedAt })
}

/**
 * Erases a customer's personal data from everything the CIF service keeps, in one transaction, keeping
 * the CIF ID (never given out again), legal form, owner, version and timestamps, and who erased it, when
 * and why. The record is emptied and the external id dropped; the identifiers are released (the person
 * may come back as a new customer); a stored answer to an idempotent create of it becomes the
 * `customer-erased` problem (the key stays taken, so a retry creates nothing); its customer events still
 * in the outbox, sent or not, are deleted (a pending one need not reach anyone now). Running it again is
 * harmless. Kafka's copy of the events already published is not the CIF service's to change (docs/security.md).
 */
export async function eraseCustomer(db: CifDb, request: ErasureRequest): Promise<CifErasure> {
  const { cifId, by, reason } = request
  return db.transaction().execute(async (trx) => {
    // The row lock waits out a change under way, whose event is then in the outbox to delete.
    const before = await trx.selectFrom('customer').select(['cif_id', 'erased_at']).where('cif_id', '=', cifId).forUpdate().executeTakeFirst()
    if (!before) throw new Refusal(cifProblems.customerNotFound, `No customer has CIF ID ${cifId}.`)
    const erased = await trx
      .updateTable('customer')
      .set({
        record: '{}',
        external_id: null,
        // A second run keeps the first erasure's who, when and why.
        erased_at: sql<Date>`coalesce(erased_at, now())`,
        erased_by: sql<string>`coalesce(erased_by, ${by})`,
        erasure_reason: sql<string>`coalesce(erasure_reason, ${reason})`,
        updated_at: sql<Date>`now()`
      })
      .where('cif_id', '=', cifId)
      .returning(['cif_id', 'erased_at'])
      .executeTakeFirstOrThrow()
    const identifiers = await trx.deleteFrom('customer_identifier').where('cif_id', '=', cifId).executeTakeFirst()
    const answer = { ...problemOf(erasedRefusal(erased)), instance: '/v1/customers' }
    const idempotentAnswers = await trx
      .updateTable('idempotency_key')
      .set({
        response_status: cifProblems.customerErased.status,
        response_body: JSON.stringify(answer),
        response_headers: JSON.stringify({ 'content-type': PROBLEM_JSON })
      })
      .where(sql<string>`response_body ->> 'cifId'`, '=', cifId)
      .executeTakeFirst()
    const outboxMessages = await trx
      .deleteFrom('outbox_message')
      .where('topic', '=', topics.customerEvents)
      .where('message_key', '=', cifId)
      .executeTakeFirst()
    return {
      alreadyErased: before.erased_at !== null,
      identifiers: Number(identifiers.numDeletedRows),
      idempotentAnswers: Number(idempotentAnswers.numUpdatedRows),
      outboxMessages: Number(outboxMessages.numDeletedRows)
    }
  })
}
