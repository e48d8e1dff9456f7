import { type RawBuilder, sql } from 'kysely'
import { stateList } from '../delivery/delivery-store.ts'
import { openStates } from '../delivery/states.ts'
import type { SyncerDb } from '../tables.ts'
import { recordStatuses } from './sync-status.ts'

/**
 * The in-sync deadline (SYNCER_IN_SYNC_DEADLINE_MS): a customer version should be held by every end system
 * within this long of its creation by the CIF service. A version past it with a delivery still open (waiting,
 * in flight, FAILED or BLOCKED) is overdue. One whose deliveries all settled otherwise (skipped, superseded by
 * a newer version, retired with its system) has nothing left to wait for and is not.
 */

/**
 * Open deliveries (`delivery d`) of versions created more than `deadlineMs` ago. Each open delivery carries its
 * event's time (migration 0019, which checks it), held with the event id in the index of the open deliveries,
 * so that counting them reads that index alone, however many are open.
 */
const overdueDeliveries = (deadlineMs: number): RawBuilder<unknown> => sql`
  d.state in (${stateList(openStates)}) and d.event_time < now() - make_interval(secs => ${deadlineMs} / 1000.0)`

export interface Overdue {
  /** Customer versions past the deadline and not yet in every end system. */
  count: number
  /** When the oldest of them was made; null when none is overdue. */
  oldestCreatedAt: string | null
}

/** The count of overdue versions and the oldest one's time (exported for the schema test of its plan). */
export const overdueStatement = (deadlineMs: number) => sql<{ count: string; oldest: Date | null }>`
  select count(distinct d.event_id) as count, min(d.event_time) as oldest from delivery d where ${overdueDeliveries(deadlineMs)}`

/** How many customer versions are overdue now, and the oldest: for the admin summary and the metrics. */
export async function overdueVersions(db: SyncerDb, deadlineMs: number): Promise<Overdue> {
  const { rows } = await overdueStatement(deadlineMs).execute(db)
  const row = rows[0]
  return { count: Number(row?.count ?? 0), oldestCreatedAt: row?.oldest?.toISOString() ?? null }
}

/**
 * Tells each newly overdue version's owner once (`cif.sync.customer.overdue`), naming the end systems it still
 * waits for, up to `batchSize` versions a call. The mark on the event and the status commit together; a
 * syncer that finds the mark set by another meanwhile tells nothing. Returns how many it told.
 */
export async function tellOverdue(db: SyncerDb, deadlineMs: number, batchSize = 1000): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{
      event_id: string
      cif_id: string
      customer_version: number
      owner_source_system: string
      event_time: Date
      waiting_for: string[]
    }>`
      with late as (
        select d.event_id, array_agg(d.end_system order by d.end_system) as waiting_for
        from delivery d join sync_event e on e.event_id = d.event_id
        where ${overdueDeliveries(deadlineMs)} and e.overdue_at is null
        group by d.event_id
        limit ${batchSize})
      update sync_event e set overdue_at = now()
      from late where e.event_id = late.event_id and e.overdue_at is null
      returning e.event_id, e.cif_id, e.customer_version, e.owner_source_system, e.event_time, late.waiting_for`.execute(trx)
    await recordStatuses(
      trx,
      rows.map((row) => ({
        owner: row.owner_source_system,
        kind: 'OVERDUE' as const,
        status: {
          cifId: row.cif_id,
          customerVersion: row.customer_version,
          eventId: row.event_id,
          createdAt: row.event_time.toISOString(),
          deadlineMs,
          waitingFor: row.waiting_for
        }
      }))
    )
    return rows.length
  })
}
