import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- The claim takes a system's due deliveries in (next_attempt_at, id) order. The index held the first two
    -- columns only, and the intake stores a batch of up to 250 events in one transaction, so their deliveries
    -- share one next_attempt_at (now()): to find the first 15 of such a batch by id, every claim read, sorted
    -- and checked all of it (214 rows and 450 buffers for 15 in the drain benchmark, half of the claim's
    -- reads). With id in the index the scan stops at the claim's limit.
    drop index delivery_due;
    create index delivery_due on delivery (end_system, next_attempt_at, id) where state in ('PENDING', 'RETRY_SCHEDULED');
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop index delivery_due;
    create index delivery_due on delivery (end_system, next_attempt_at) where state in ('PENDING', 'RETRY_SCHEDULED');
  `.execute(db)
}
