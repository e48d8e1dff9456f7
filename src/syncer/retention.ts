import { sql } from 'kysely'
import { inBatches } from '../platform/periodic.ts'
import { stateList } from './delivery/delivery-store.ts'
import { settledStates } from './delivery/states.ts'
import type { SyncerDb } from './tables.ts'

// What the syncer keeps of a customer's personal data, and for how long. An event's payload (the
// customer's record) is what a delivery sends: it is kept while any delivery of the event may still be
// sent (waiting, in flight, FAILED and redrivable, BLOCKED), and dropped `retentionHours` after the last
// one settled (SUCCESS or SKIPPED, from which no move leads back). An unreadable message's content is
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
