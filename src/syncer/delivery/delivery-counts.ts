import { sql } from 'kysely'
import type { SyncerDb } from '../tables.ts'
import { stateList } from './delivery-store.ts'
import { type DeliveryState, openStates, settledStates } from './states.ts'

// The admin summary and the console's overview count deliveries by end system and state. Counting the table
// grows with every delivery ever made (2.6 s with 3 million, docs/performance.md "History"). A settled delivery
// never moves again, so its count can be kept: the retention round adds the deliveries that settled before a
// mark to running totals (delivery_settled_count) and moves the mark, and a count is those totals, plus what
// settled since the mark (the index delivery_settled_since, migration 0013), plus the open states, live (the
// index delivery_open_counts, migration 0016, which holds only them). Each part follows recent or open work, not the history.

/**
 * Where the mark may move to. A delivery settles with `completed_at = now()`, the start of its transaction, and
 * is seen by others only when that commits: a mark past the start of a transaction still open could pass a
 * delivery it settles, which would then be in neither part. So the mark stops short of the oldest transaction
 * running in this database, however long it runs. Until session 11 it trailed by a fixed fifteen minutes, and
 * every summary counted fifteen minutes of settled deliveries live (720,000 at 800 deliveries/s).
 * PostgreSQL hides the start of another role's transactions from a role without pg_read_all_stats: a delivery
 * settled by hand as another role is counted right if its transaction lasts less than `MARK_MARGIN`.
 */
const MARK_MARGIN = sql.lit('1 minute')

export interface DeliveryCount {
  endSystem: string
  state: DeliveryState
  count: number
}

/**
 * The count, given the mark (`delivery_settled_count_mark`) read in the same snapshot; the history benchmark
 * reads its plan. The mark is a value here, not a subquery: planned without it, the settled part was estimated
 * at a third of the table (PostgreSQL's guess for a range it cannot see) and, on a large table, read by parallel
 * workers whose start cost more than the few thousand entries they counted (docs/performance.md, "History").
 */
export const countStatement = (countedBefore: Date) => sql<{ end_system: string; state: DeliveryState; n: string }>`
  with parts as (
    select end_system, state, deliveries as n from delivery_settled_count
    union all
    select end_system, state, count(*) from delivery
    where state in (${stateList(settledStates)}) and completed_at >= ${countedBefore}::timestamptz
    group by end_system, state
    union all
    select end_system, state, count(*) from delivery where state in (${stateList(openStates)}) group by end_system, state)
  select end_system, state, sum(n) as n from parts group by end_system, state order by end_system, state`

/** The mark the totals were counted before (the count's first statement). */
export const countedBefore = async (db: SyncerDb): Promise<Date> =>
  (await db.selectFrom('delivery_settled_count_mark').select('counted_before').executeTakeFirstOrThrow()).counted_before

/**
 * Deliveries counted by end system and state. The mark and the count share one snapshot (repeatable read): a
 * roll-up committed between them would otherwise be counted twice, in the totals and since the old mark.
 */
export async function countDeliveries(db: SyncerDb): Promise<DeliveryCount[]> {
  const rows = await db
    .transaction()
    .setIsolationLevel('repeatable read')
    .setAccessMode('read only')
    .execute(async (trx) => (await countStatement(await countedBefore(trx)).execute(trx)).rows)
  return rows.map((row) => ({ endSystem: row.end_system, state: row.state, count: Number(row.n) }))
}

/**
 * Adds the deliveries that settled since the mark to the totals, up to `MARK_MARGIN` before the oldest
 * transaction running, and moves the mark there; the number of deliveries added. Several syncers may run it at
 * once: the mark's row lock takes them one at a time, and the second finds nothing left to add.
 */
export async function rollUpSettledCounts(db: SyncerDb): Promise<number> {
  // Read before the roll-up's statement, and so before its snapshot: a transaction not running now has
  // committed or rolled back (PostgreSQL clears a transaction's start after its commit becomes visible), and
  // one that starts later settles after this one's start, which the oldest includes.
  const { rows: running } = await sql<{ oldest: Date }>`
    select min(xact_start) as oldest from pg_stat_activity
    where datname = current_database() and backend_type = 'client backend'`.execute(db)
  const { rows } = await sql<{ added: string }>`
    with mark as (
      select counted_before as counted_from,
        date_trunc('second', ${running[0]!.oldest}::timestamptz - interval ${MARK_MARGIN}) as counted_until
      from delivery_settled_count_mark for update),
    settled as (
      select d.end_system, d.state, count(*) as deliveries from delivery d, mark
      where d.state in (${stateList(settledStates)}) and d.completed_at >= mark.counted_from and d.completed_at < mark.counted_until
      group by d.end_system, d.state),
    added as (
      insert into delivery_settled_count as total (end_system, state, deliveries) select * from settled
      on conflict (end_system, state) do update set deliveries = total.deliveries + excluded.deliveries),
    moved as (
      update delivery_settled_count_mark set counted_before = mark.counted_until from mark
      where mark.counted_until > mark.counted_from)
    select coalesce(sum(deliveries), 0) as added from settled`.execute(db)
  return Number(rows[0]!.added)
}
