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
 * `MARK_MARGIN` covers what the activity view does not show: the instant between a transaction taking its
 * start time and publishing it, and transactions of another role (PostgreSQL hides their start from a role
 * without pg_read_all_stats): a delivery settled by hand as another role is counted right if its transaction
 * lasts less than the margin.
 */
const MARK_MARGIN = sql.lit('1 minute')

/**
 * A transaction open longer than this holds the mark back (correct, and the summary counts ever more live):
 * reported, so that a person can end it (it holds back PostgreSQL's vacuum as well).
 */
export const MARK_HELD_TOO_LONG_MS = 15 * 60_000

export interface DeliveryCount {
  endSystem: string
  state: DeliveryState
  count: number
}

/**
 * The count, given the mark (`delivery_settled_count_mark`, as `markedCount` reads it) in the same snapshot; the
 * history benchmark reads its plan. The mark is a value here, not a subquery: planned without it, the settled
 * part was estimated at a third of the table (PostgreSQL's guess for a range it cannot see) and, on a large
 * table, read by parallel workers whose start cost more than the few thousand entries they counted
 * (docs/performance.md, "History").
 */
export const countStatement = (mark: string) => sql<{ end_system: string; state: DeliveryState; n: string }>`
  with parts as (
    select end_system, state, deliveries as n from delivery_settled_count
    union all
    select end_system, state, count(*) from delivery
    where state in (${stateList(settledStates)}) and completed_at >= ${mark}::timestamptz
    group by end_system, state
    union all
    select end_system, state, count(*) from delivery where state in (${stateList(openStates)}) group by end_system, state)
  select end_system, state, sum(n) as n from parts group by end_system, state order by end_system, state`

/**
 * Runs `count` with the mark, both in one snapshot (repeatable read): a roll-up committed between reading the
 * mark and counting would otherwise be counted twice, in the totals and since the old mark. The mark as
 * PostgreSQL's text (exact, and `-infinity` before the first roll-up).
 */
export const markedCount = <T>(db: SyncerDb, count: (trx: SyncerDb, mark: string) => Promise<T>): Promise<T> =>
  db
    .transaction()
    .setIsolationLevel('repeatable read')
    .setAccessMode('read only')
    .execute(async (trx) => {
      const { rows } = await sql<{ mark: string }>`select counted_before::text as mark from delivery_settled_count_mark`.execute(trx)
      return count(trx, rows[0]!.mark)
    })

/** Deliveries counted by end system and state. */
export async function countDeliveries(db: SyncerDb): Promise<DeliveryCount[]> {
  const rows = await markedCount(db, async (trx, mark) => (await countStatement(mark).execute(trx)).rows)
  return rows.map((row) => ({ endSystem: row.end_system, state: row.state, count: Number(row.n) }))
}

export interface RollUp {
  /** Deliveries added to the totals. */
  added: number
  /** The transaction holding the mark back, when it has been open longer than `heldTooLongMs`. */
  heldBy: { pid: number; applicationName: string; openSince: string } | null
}

/**
 * Adds the deliveries that settled since the mark to the totals, up to `MARK_MARGIN` before the oldest
 * transaction running, and moves the mark there. Several syncers may run it at once: the mark's row lock takes
 * them one at a time, and the second finds nothing left to add.
 */
export async function rollUpSettledCounts(db: SyncerDb, heldTooLongMs = MARK_HELD_TOO_LONG_MS): Promise<RollUp> {
  // Read before the roll-up's statement, and so before its snapshot: a transaction not running now has
  // committed or rolled back (PostgreSQL clears a transaction's start after its commit becomes visible), and
  // one that starts later settles after this statement's own start, which the activity view holds too.
  const { rows: oldest } = await sql<{ pid: number; application_name: string; open_since: string; too_long: boolean }>`
    select pid, application_name, xact_start::text as open_since, now() - xact_start > make_interval(secs => ${heldTooLongMs} / 1000.0) as too_long
    from pg_stat_activity where datname = current_database() and backend_type = 'client backend' and xact_start is not null
    order by xact_start limit 1`.execute(db)
  const { pid, application_name, open_since, too_long } = oldest[0]!
  const { rows } = await sql<{ added: string }>`
    with mark as (
      select counted_before as counted_from,
        date_trunc('second', ${open_since}::timestamptz - interval ${MARK_MARGIN}) as counted_until
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
  return {
    added: Number(rows[0]!.added),
    heldBy: too_long ? { pid, applicationName: application_name, openSince: open_since } : null
  }
}
