import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- Since 0011 the only index leading with event_id is partial (the intake's deliveries, not a run's), so
    -- a lookup by event alone cannot use it: the foreign key's check when an event row goes, retention's
    -- "does any delivery of this event still need its payload", the late-events report. Each scanned the
    -- whole delivery table: 1.4 s per event with 3 million deliveries, found by the history benchmark.
    create index delivery_event_id on delivery (event_id);
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index delivery_event_id;`.execute(db)
}
