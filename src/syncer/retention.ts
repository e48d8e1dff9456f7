import { sql } from 'kysely'
import type { AttemptRetentionAction } from '../platform/config.ts'
import { inBatches } from '../platform/periodic.ts'
import { stateList } from './delivery/delivery-store.ts'
import { settledStates } from './delivery/states.ts'
import { deliveryMonth, deliveryMonthSql, type SyncerDb, type SyncerTx } from './tables.ts'

// What the syncer keeps of a customer's personal data, and for how long. An event's payload (the
// customer's record) is what a delivery sends: it is kept while any delivery of the event may still be
// sent (waiting, in flight, FAILED and redrivable, BLOCKED), and dropped `retentionHours` after the last
// one settled (SUCCESS or SKIPPED, from which no move leads back), unless it is the customer's latest
// version: that one stays (reconciliation and backfill need it; docs/integrity.md). An unreadable message's content is
// dropped `retentionHours` after it arrived. The facts stay: events' ids, versions and offsets,
// deliveries, attempts (masked), status updates, operator actions.

/** Clears up to `limit` event payloads no delivery needs any more (one batch; see inBatches). */
export async function purgeEventPayloads(db: SyncerDb, retentionHours: number, limit: number): Promise<number> {
  const cutoff = sql<Date>`now() - make_interval(hours => ${retentionHours})`
  const { rows } = await sql<{ event_id: string }>`
    update sync_event e set event = null
    where e.event_id in (
      select k.event_id from sync_event k
      where k.event is not null and k.received_at < ${cutoff}
        -- Each customer's latest version stays: it is what the CIF published last, which reconciliation
        -- compares end systems with and a backfill delivers (an erasure clears it, as any other).
        and exists (select 1 from sync_event newer where newer.cif_id = k.cif_id and newer.customer_version > k.customer_version)
        and not exists (
          select 1 from delivery d
          where d.event_id = k.event_id and (d.state not in (${stateList(settledStates)}) or d.completed_at >= ${cutoff}))
      order by k.received_at
      limit ${limit}
      for update of k skip locked)
    returning e.event_id`.execute(db)
  return rows.length
}

/** Clears the content of up to `limit` unreadable messages past the retention (one batch). */
export async function purgeUnreadableMessages(db: SyncerDb, retentionHours: number, limit: number): Promise<number> {
  const { rows } = await sql<{ id: string }>`
    update unreadable_message u set message_value = null
    where u.id in (
      select k.id from unreadable_message k
      where k.message_value is not null and k.received_at < now() - make_interval(hours => ${retentionHours})
      order by k.received_at
      limit ${limit}
      for update skip locked)
    returning u.id`.execute(db)
  return rows.length
}

/** One round of the syncer's retention job: each kind in bounded batches. */
export async function applyRetention(
  db: SyncerDb,
  retentionHours: number,
  batchSize: number
): Promise<{ eventPayloads: number; unreadableMessages: number }> {
  return {
    eventPayloads: await inBatches(() => purgeEventPayloads(db, retentionHours, batchSize), batchSize),
    unreadableMessages: await inBatches(() => purgeUnreadableMessages(db, retentionHours, batchSize), batchSize)
  }
}

// The transaction table is partitioned by the month (UTC) its attempts' deliveries were created in
// (`delivery_month`, migration 0006). Each round makes the partitions of this month and the next ones before
// they are needed, and retires months past the retention as whole partitions: no DELETE of millions of rows.

/** Months made ahead of the current one, so that attempts never land in the default partition in passing. */
const ATTEMPT_MONTHS_AHEAD = 2
/** Any fixed number: one syncer at a time changes the transaction table's partitions. */
const PARTITIONS_LOCK = 7_270_006
/**
 * Changing partitions needs strong locks (ATTACH locks the default partition, DETACH and DROP the whole
 * table), and a statement waiting for one makes everything after it wait too: give up soon, the next round
 * tries again.
 */
const PARTITION_LOCK_TIMEOUT = '5s'

const utcMonth = (date: Date, offset = 0): Date => new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + offset, 1))

/** The partition holding the attempts of deliveries created in `month` (its first instant, UTC); as migration 0006 names them. */
export function attemptPartitionName(month: Date): string {
  return `delivery_attempt_${month.getUTCFullYear()}_${String(month.getUTCMonth() + 1).padStart(2, '0')}`
}

/** The month a partition holds, from its name; undefined for the default partition. */
function partitionMonth(name: string): Date | undefined {
  const match = /^delivery_attempt_(\d{4})_(\d{2})$/.exec(name)
  return match ? new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, 1)) : undefined
}

async function attemptPartitions(db: SyncerDb | SyncerTx): Promise<Set<string>> {
  const { rows } = await sql<{ name: string }>`
    select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'delivery_attempt'::regclass`.execute(db)
  return new Set(rows.map((row) => row.name))
}

/** One syncer at a time, and none waiting long for the locks that partition changes take. */
async function changingPartitions<T>(db: SyncerDb, change: (trx: SyncerTx) => Promise<T>): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${PARTITIONS_LOCK})`.execute(trx)
    await sql`select set_config('lock_timeout', ${PARTITION_LOCK_TIMEOUT}, true)`.execute(trx)
    return change(trx)
  })
}

/**
 * Makes the partitions of this month and the `ahead` next ones, and of any month whose attempts wait in the
 * default partition (moved into it: PostgreSQL refuses a new partition while the default holds rows of its
 * range). A month retired by detaching keeps its name as the archive's: its late attempts, if any, stay in the
 * default partition. Idempotent, and safe with several syncers. Returns the partitions made.
 */
export async function prepareAttemptMonths(db: SyncerDb, ahead = ATTEMPT_MONTHS_AHEAD): Promise<string[]> {
  return changingPartitions(db, async (trx) => {
    const { rows } = await sql<{ month: string }>`
      select generate_series(${deliveryMonthSql(sql`now()`)}, ${deliveryMonthSql(sql`now()`)} + make_interval(months => ${ahead}), interval '1 month')::date::text
        as month
      union
      select delivery_month::text from delivery_attempt_default
      order by month`.execute(trx)
    const existing = await attemptPartitions(trx)
    const made: string[] = []
    for (const row of rows) {
      const month = new Date(`${row.month}T00:00:00Z`)
      const name = attemptPartitionName(month)
      if (existing.has(name)) continue
      const { rows: taken } = await sql<{ taken: boolean }>`select to_regclass(${name}) is not null as taken`.execute(trx)
      if (taken[0]!.taken) continue
      const [from, to] = [month, utcMonth(month, 1)]
      // Made apart and attached: CREATE ... PARTITION OF would lock the whole table against inserts, ATTACH only
      // the default partition.
      await sql`create table ${sql.id(name)} (like delivery_attempt including defaults including constraints)`.execute(trx)
      await sql`
        with moved as (
          delete from delivery_attempt_default where delivery_month >= ${deliveryMonth(from)} and delivery_month < ${deliveryMonth(to)} returning *)
        insert into ${sql.id(name)} select * from moved`.execute(trx)
      await sql`
        alter table delivery_attempt attach partition ${sql.id(name)}
        for values from (${sql.lit(deliveryMonth(from))}) to (${sql.lit(deliveryMonth(to))})`.execute(trx)
      made.push(name)
    }
    return made
  })
}

/**
 * Detaches or drops the months of the transaction table older than the `months` whole months before this
 * one, each only once every delivery created in it has settled (SUCCESS or SKIPPED, from which no move leads
 * back): the history of a delivery that may still be sent, redriven or skipped stays. `months` 0 keeps all.
 * Returns the partitions retired.
 */
export async function retireAttemptMonths(db: SyncerDb, retention: { months: number; action: AttemptRetentionAction }): Promise<string[]> {
  if (retention.months === 0) return []
  const { rows } = await sql<{ now: Date }>`select now() as now`.execute(db)
  const cutoff = utcMonth(rows[0]!.now, -retention.months)
  const retired: string[] = []
  for (const name of [...(await attemptPartitions(db))].sort()) {
    const month = partitionMonth(name)
    if (!month || utcMonth(month, 1) > cutoff) continue
    const done = await changingPartitions(db, async (trx) => {
      const { rows: open } = await sql<{ open: boolean }>`
        select exists (
          select 1 from delivery d
          where d.state not in (${stateList(settledStates)}) and d.created_at >= ${month} and d.created_at < ${utcMonth(month, 1)}) as open`.execute(
        trx
      )
      if (open[0]!.open || !(await attemptPartitions(trx)).has(name)) return false
      await (retention.action === 'drop'
        ? sql`drop table ${sql.id(name)}`
        : sql`alter table delivery_attempt detach partition ${sql.id(name)}`
      ).execute(trx)
      return true
    })
    if (done) retired.push(name)
  }
  return retired
}
