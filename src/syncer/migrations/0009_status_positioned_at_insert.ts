import { type Kysely, sql } from 'kysely'

/**
 * The attempt recorder gives its statuses their feed positions as it writes them (recordStatuses), so the
 * relay is woken by their insert as well as by the sequencer's update.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create trigger sync_status_update_inserted after insert on sync_status_update
      for each statement execute function notify_sync_status_update();
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger sync_status_update_inserted on sync_status_update`.execute(db)
}
