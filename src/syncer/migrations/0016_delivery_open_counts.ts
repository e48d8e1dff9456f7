import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- The summary counts the open deliveries live (0013 keeps totals of the settled ones only). With 3 million
    -- deliveries in the history benchmark, that count read 29,823 of the summary's 30,134 buffers: it went
    -- through delivery_open_by_customer and visited each open delivery's row. This index holds exactly the
    -- open deliveries and both columns the count groups by, so the count is an index-only scan over the open
    -- work: its size follows what is still moving, not the history. The predicate is the open states as
    -- states.ts lists them, written out, as the summary's query writes them.
    create index delivery_open_counts on delivery (state, end_system)
      where state in ('PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'FAILED', 'BLOCKED');
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop index delivery_open_counts;`.execute(db)
}
