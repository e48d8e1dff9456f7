import { type RawBuilder, sql } from 'kysely'
import { newEventId } from '../../contracts/cloud-events.ts'
import { type StatusData, type StatusKind, statusEvent } from '../../contracts/sync-status-events.ts'
import { topics } from '../../contracts/topics.ts'
import { structuredModeHeaders } from '../../outbox/messages.ts'
import type { ClaimedMessage, RelayQueue } from '../../outbox/relay.ts'
import { executePrepared } from '../../platform/database/index.ts'
import type { SyncerDb, SyncerTables, SyncerTx } from '../tables.ts'

/** One status to tell: of what kind, to which source system (the customer's owner), and what. */
export type StatusChange = {
  [K in StatusKind]: { owner: string; kind: K; status: Omit<StatusData<K>, 'kind' | 'at'> }
}[StatusKind]

/**
 * Records status changes in the same transaction as the changes themselves, one row each: the callback
 * API's feed entry and, through the status relay (see statusQueue), the message on `cif.sync.status`
 * (key = CIF ID). So no status is lost, and none is told that did not happen. Their feed positions are
 * given after commit by the sequencer (sequenceStatusUpdates), or at once with `positioned` (see there).
 */
export async function recordStatuses(trx: SyncerTx, changes: StatusChange[], positioned?: 'positioned now, committed next'): Promise<void> {
  if (changes.length === 0) return
  const at = new Date().toISOString()
  const rows = changes.map(({ owner, kind, status }) => ({
    event_id: newEventId(),
    owner_source_system: owner,
    cif_id: status.cifId,
    kind,
    status: { kind, ...status, at }
  }))
  // The rows as one JSON parameter, so that each statement's text is the same whatever the batch's size and
  // is prepared once per connection.
  const statuses = sql`rows from (jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as (event_id uuid, owner_source_system text, cif_id text, kind text, status jsonb))
    with ordinality as s(event_id, owner_source_system, cif_id, kind, status, n)`
  if (!positioned) {
    await executePrepared(
      trx,
      sql`
        insert into sync_status_update (event_id, owner_source_system, cif_id, kind, status)
        select event_id, owner_source_system, cif_id, kind, status from ${statuses} order by n`.compile(trx)
    )
    return
  }
  // The positions are taken under the sequencer's lock, which the transaction holds until it commits, so
  // they still follow commit order: a later position is only given once this transaction has committed
  // (or rolled back, leaving a gap). This saves the sequencer's write of each row, and a status reaches
  // the relay (woken at commit, migration 0009) without waiting for the sequencer's next round. Only for a
  // transaction whose last statement this is: one that went on to wait for a row lock while holding the
  // sequencer's could deadlock with a recorder holding that row and waiting for the sequencer's lock.
  await executePrepared(
    trx,
    sql`
      with sequencer as materialized (select pg_advisory_xact_lock(${SEQUENCER_LOCK}))
      insert into sync_status_update (event_id, owner_source_system, cif_id, kind, status, seq)
      select event_id, owner_source_system, cif_id, kind, status, nextval('sync_status_seq') from sequencer, ${statuses} order by n`.compile(trx)
  )
}

/**
 * The feed as the status relay's queue: unpublished rows, keyed by CIF ID. The message is built from the
 * row when it is sent, so a row erased before then goes out erased, and one sent again after a crash goes
 * out the same, with the same id. Only rows with their feed position are taken: the relay holds its rows'
 * locks while Kafka answers (up to its send timeout while Kafka is away), and the sequencer, which gives
 * the positions, must never wait for that, or the callback feed would stop with Kafka.
 */
export const statusQueue: RelayQueue<SyncerTables> = {
  channel: 'sync_status_update',
  async claim(trx, limit) {
    const { rows } = await executePrepared(trx, unsentStatuses(limit).compile(trx))
    return rows.map(
      (row): ClaimedMessage => ({
        id: row.id,
        topic: topics.syncStatus,
        message_key: row.cif_id,
        payload: JSON.stringify(statusEvent(row.kind, row.event_id, row.owner_source_system, row.status as never)),
        headers: structuredModeHeaders
      })
    )
  },
  async markSent(trx, ids) {
    await executePrepared(
      trx,
      trx.updateTable('sync_status_update').set({ published_at: sql`now()` }).where('id', '=', sql<string>`any(${ids}::bigint[])`).compile()
    )
  },
  async recordFailure(db, ids, message) {
    await db
      .updateTable('sync_status_update')
      .set((eb) => ({ publish_attempts: eb('publish_attempts', '+', 1), last_error: message }))
      .where('id', 'in', ids)
      .execute()
  },
  async oldestUnsentAt(db) {
    const row = await db
      .selectFrom('sync_status_update')
      .select('created_at')
      .where('published_at', 'is', null)
      .orderBy('id')
      .limit(1)
      .executeTakeFirst()
    return row?.created_at
  },
  async countUnsent(db, cap) {
    const { rows } = await sql<{ waiting: number }>`
      select count(*)::integer as waiting from (select 1 from sync_status_update where published_at is null limit ${cap}) unpublished`.execute(db)
    return rows[0]?.waiting ?? 0
  }
}

/**
 * The status relay's claim (see RelayQueue.claim). "No earlier unsent status of the customer" is a scalar
 * subquery, not NOT EXISTS, for the reason the delivery claim gives (dueDeliveries): prepared, the claim runs
 * a generic plan, and for NOT EXISTS that plan was an anti join against every unsent status, materialized
 * and compared with each candidate: 24 ms for a claim of 218 with about 330 unsent (92,658 rows compared, in
 * the drain benchmark), work that grows with candidates × unsent statuses, largest after a Kafka outage. The
 * scalar subquery is one probe of sync_status_update_unpublished_cif per candidate, whatever the plan.
 */
export function unsentStatuses(limit: number): RawBuilder<UnsentStatus> {
  return sql<UnsentStatus>`
    select id, event_id, owner_source_system, cif_id, kind, status
    from sync_status_update u
    where published_at is null and seq is not null
      and (select true from sync_status_update earlier
           where earlier.published_at is null and earlier.cif_id = u.cif_id and earlier.id < u.id
           limit 1) is null
    order by id
    limit ${limit}
    for update skip locked`
}

interface UnsentStatus {
  id: string
  event_id: string
  owner_source_system: string
  cif_id: string
  kind: StatusKind
  status: StatusData
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
    // Rows another transaction holds (an erasure rewriting a customer's statuses) wait for the next round:
    // waiting for them here, with the lock held, would hold up every transaction that positions its
    // statuses at once (recordStatuses), and some of those may hold what the erasure waits for.
    const waiting = await trx
      .selectFrom('sync_status_update')
      .select('id')
      .where('seq', 'is', null)
      .orderBy('id')
      .limit(batch)
      .forUpdate()
      .skipLocked()
      .execute()
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
