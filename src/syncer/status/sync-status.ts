import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { type StatusData, type StatusKind, statusEvent } from '../../contracts/sync-status-events.ts'
import { topics } from '../../contracts/topics.ts'
import { outboxMessage } from '../../outbox/messages.ts'
import type { SyncerDb, SyncerTx } from '../tables.ts'

/** One status to tell: of what kind, to which source system (the customer's owner), and what. */
export type StatusChange = {
  [K in StatusKind]: { owner: string; kind: K; status: Omit<StatusData<K>, 'kind' | 'at'> }
}[StatusKind]

/**
 * Records status changes twice, in the same transaction as the changes themselves: in the feed that the
 * callback API serves, and in the outbox that publishes `cif.sync.status` (key = CIF ID). So no status is
 * lost, and none is told that did not happen.
 */
export async function recordStatuses(trx: SyncerTx, changes: StatusChange[]): Promise<void> {
  if (changes.length === 0) return
  const at = new Date().toISOString()
  const rows = changes.map(({ owner, kind, status }) => {
    const data = { kind, ...status, at } as StatusData
    return { owner, kind, data, event: statusEvent(kind, randomUUID(), owner, data as never) }
  })
  await trx
    .insertInto('sync_status_update')
    .values(rows.map(({ owner, kind, data }) => ({ owner_source_system: owner, cif_id: data.cifId, kind, status: JSON.stringify(data) })))
    .execute()
  await trx
    .insertInto('outbox_message')
    .values(rows.map(({ event }) => outboxMessage(topics.syncStatus, event)))
    .execute()
}

/** Any fixed number: the advisory lock that makes one sequencer at a time, across syncer instances. */
const SEQUENCER_LOCK = 7_270_001

/**
 * Gives committed status updates their feed positions, in id order, one sequencer at a time. What a
 * transaction sees committed was committed before it, so positions follow commit order: a customer's
 * "in sync" comes after every delivery it sums up.
 */
export async function sequenceStatusUpdates(db: SyncerDb, batch = 1000): Promise<number> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${SEQUENCER_LOCK})`.execute(trx)
    const waiting = await trx.selectFrom('sync_status_update').select('id').where('seq', 'is', null).orderBy('id').limit(batch).execute()
    if (waiting.length === 0) return 0
    const ids = waiting.map((row) => row.id)
    const { rows: seqs } = await sql<{ seq: string }>`select nextval('sync_status_seq')::text as seq from generate_series(1, ${ids.length})`.execute(
      trx
    )
    await sql`
      update sync_status_update u set seq = v.seq
      from unnest(${ids}::bigint[], ${seqs.map((r) => r.seq)}::bigint[]) as v(id, seq)
      where u.id = v.id and u.id = any(${ids}::bigint[])`.execute(trx)
    return ids.length
  })
}
