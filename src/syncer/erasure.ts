import { sql } from 'kysely'
import { topics } from '../contracts/topics.ts'
import { deliveryStatus, stateList } from './delivery/delivery-store.ts'
import { remark, transitions } from './delivery/states.ts'
import { recordStatuses } from './status/sync-status.ts'
import type { SyncerDb, SyncerTx } from './tables.ts'

/** Who asks for a customer's personal data to be erased, and why: kept in `customer_erasure` for good. */
export interface ErasureRequest {
  cifId: string
  by: string
  reason: string
}

/** What the syncer erased, in rows: so the person who ran it can see it did something. */
export interface SyncerErasure {
  deliveriesSkipped: number
  /** How many of the end systems' ids for the customer were dropped, and replaced where texts quote them. */
  endSystemIds: number
  eventPayloads: number
  unreadableMessages: number
}

/** Any fixed number: the advisory lock that keeps the intake and erasures apart. */
const ERASURE_LOCK = 7_270_002

/**
 * Of `cifIds`, those erased. The intake holds the lock shared until its transaction ends, an erasure holds
 * it alone: an erasure waits for the batches being stored, and a batch for an erasure under way, so an
 * event stored now is either seen by the erasure or stored knowing of it. One lock, not one per customer:
 * erasures are rare, and a batch of hundreds of customers would otherwise fill PostgreSQL's lock table.
 */
export async function erasedAmong(trx: SyncerTx, cifIds: string[]): Promise<Set<string>> {
  if (cifIds.length === 0) return new Set()
  await sql`select pg_advisory_xact_lock_shared(${ERASURE_LOCK})`.execute(trx)
  const rows = await trx
    .selectFrom('customer_erasure')
    .select('cif_id')
    .where('cif_id', 'in', [...new Set(cifIds)])
    .execute()
  return new Set(rows.map((row) => row.cif_id))
}

/** What replaces an end system's id for an erased customer in the texts that quote it. */
const ERASED_ID = '***'

/**
 * A PostgreSQL regular expression that finds `text` as a whole word: not inside a longer run of letters
 * and digits, so that an id "42" leaves "HTTP 422" alone. ASCII punctuation is escaped; the first group is
 * the character before, kept by the replacement.
 */
function wholeWord(text: string): string {
  return `(^|[^[:alnum:]])${text.replace(/[!-/:-@[-`{-~]/g, '\\$&')}(?![[:alnum:]])`
}

/**
 * The end systems' ids for the customer are quoted in texts the syncer keeps: a success answer's excerpt
 * (`HTTP 201: {"id":"CB-1234"}`), a later error, the status messages that repeat them. Masking cannot
 * know them before the end system gives them, so the erasure replaces each, where it stands as a word.
 */
async function scrubEndSystemIds(trx: SyncerTx, cifId: string): Promise<number> {
  const { rows } = await sql<{ id: string }>`
    select external_id as id from delivery where cif_id = ${cifId} and external_id is not null
    union select external_id from customer_xref where cif_id = ${cifId}`.execute(trx)
  const replaced = sql.lit(`\\1${ERASED_ID}`)
  for (const { id } of rows) {
    const word = wholeWord(id)
    // In JSON text the id stands escaped, as JSON writes it.
    const jsonWord = wholeWord(JSON.stringify(id).slice(1, -1))
    await sql`
      update delivery_attempt set response_message = regexp_replace(response_message, ${word}, ${replaced}, 'g'),
        remarks = regexp_replace(remarks, ${word}, ${replaced}, 'g')
      where cif_id = ${cifId} and (response_message ~ ${word} or remarks ~ ${word})`.execute(trx)
    await sql`
      update delivery set last_error = regexp_replace(last_error, ${word}, ${replaced}, 'g'),
        remarks = regexp_replace(remarks, ${word}, ${replaced}, 'g')
      where cif_id = ${cifId} and (last_error ~ ${word} or remarks ~ ${word})`.execute(trx)
    await sql`
      update sync_status_update set status = regexp_replace(status::text, ${jsonWord}, ${replaced}, 'g')::jsonb
      where cif_id = ${cifId} and status::text ~ ${jsonWord}`.execute(trx)
    await sql`
      update outbox_message set payload = regexp_replace(payload, ${jsonWord}, ${replaced}, 'g')
      where topic = ${topics.syncStatus} and message_key = ${cifId} and payload ~ ${jsonWord}`.execute(trx)
  }
  return rows.length
}

/**
 * Erases a customer's personal data from everything the syncer keeps, in one transaction, and keeps the
 * audit trail: events (ids, versions, times, offsets), deliveries, attempts (their messages were masked
 * before they were stored), operator actions and status updates stay. What goes: every event payload and
 * unreadable message of the customer, the end systems' ids for it (personal data, as the source system's
 * `externalId` is) wherever they are kept, status messages included. Deliveries not yet settled are
 * SKIPPED with a remark saying who erased the customer and why, and the owner is told as for any skip; an
 * attempt under way may still reach its end system, but its answer moves nothing. Later events of the
 * customer are not stored (erasedAmong). Running it again is harmless; the first
 * erasure's who and why are kept. Deleting the customer in the end systems is theirs to do (docs/security.md).
 */
export async function eraseCustomerData(db: SyncerDb, request: ErasureRequest): Promise<SyncerErasure> {
  const { cifId, by, reason } = request
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${ERASURE_LOCK})`.execute(trx)
    await trx
      .insertInto('customer_erasure')
      .values({ cif_id: cifId, erased_by: by, reason })
      .onConflict((oc) => oc.column('cif_id').doNothing())
      .execute()
    const { erase } = transitions
    const skipped = await trx
      .updateTable('delivery')
      .set({
        state: erase.to,
        lease_until: null,
        completed_at: sql<Date>`now()`,
        remarks: remark('erased', { operator: by, reason }),
        updated_at: sql<Date>`now()`
      })
      .where('cif_id', '=', cifId)
      .where(sql<boolean>`state in (${stateList(erase.from)})`)
      .returning('id')
      .execute()
    const endSystemIds = await scrubEndSystemIds(trx, cifId)
    await trx.updateTable('delivery').set({ external_id: null }).where('cif_id', '=', cifId).where('external_id', 'is not', null).execute()
    await trx.deleteFrom('customer_xref').where('cif_id', '=', cifId).execute()
    await sql`
      update sync_status_update set status = jsonb_set(status, '{externalId}', 'null')
      where cif_id = ${cifId} and status ->> 'externalId' is not null`.execute(trx)
    await sql`
      update outbox_message set payload = jsonb_set(payload::jsonb, '{data,externalId}', 'null')::text
      where topic = ${topics.syncStatus} and message_key = ${cifId} and payload::jsonb #>> '{data,externalId}' is not null`.execute(trx)
    const eventPayloads = await trx
      .updateTable('sync_event')
      .set({ event: null })
      .where('cif_id', '=', cifId)
      .where('event', 'is not', null)
      .executeTakeFirst()
    const unreadableMessages = await trx
      .updateTable('unreadable_message')
      .set({ message_value: null })
      .where('message_key', '=', cifId)
      .where('message_value', 'is not', null)
      .executeTakeFirst()
    if (skipped.length) {
      const rows = await trx
        .selectFrom('delivery')
        .innerJoin('sync_event', 'sync_event.event_id', 'delivery.event_id')
        .selectAll('delivery')
        .select('sync_event.owner_source_system as owner')
        .where(
          'delivery.id',
          'in',
          skipped.map((row) => row.id)
        )
        .orderBy('delivery.id')
        .execute()
      await recordStatuses(
        trx,
        rows.map(({ owner, ...row }) => deliveryStatus('SKIPPED', owner, row))
      )
    }
    return {
      deliveriesSkipped: skipped.length,
      eventPayloads: Number(eventPayloads.numUpdatedRows),
      unreadableMessages: Number(unreadableMessages.numUpdatedRows),
      endSystemIds
    }
  })
}
