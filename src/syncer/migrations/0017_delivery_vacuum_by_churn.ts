import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- PostgreSQL vacuums a table once a fifth of it is dead rows (autovacuum_vacuum_scale_factor 0.2). The
    -- delivery table only grows, and its recent rows churn: each delivery is updated two to four times, each
    -- update a new row version and a new entry in every index. With 3 million deliveries kept, a vacuum would
    -- wait for 600,000 dead versions; until then the index of the open deliveries (0016) and the one of
    -- delivery times keep an entry for each, and every count or window over recent work visits them all
    -- (the history benchmark, session 9: the summary read 19,710 rows' pages for 5,000 open deliveries, and the
    -- last hour's deliveries of a system 19,396 buffers for 6,000). Vacuumed by what changed instead, the dead
    -- entries stay a bounded number whatever the history holds; the same for new rows, so that their pages are
    -- marked all-visible and an index-only count need not visit them.
    alter table delivery set (
      autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
      autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000);
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table delivery reset (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
      autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold);
  `.execute(db)
}
