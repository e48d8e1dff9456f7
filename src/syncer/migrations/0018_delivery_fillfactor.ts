import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- Each delivery is inserted, then updated two to four times (IN_FLIGHT, then SUCCESS or a retry); the
    -- state is in its indexes, so no update is HOT, and a new version that does not fit on its own page goes
    -- wherever the free space map says there is room. In a table filled to the brim, that is the few hundred
    -- bytes left at the end of every page of the history: the history benchmark (session 10) found a drain's
    -- 9,000 deliveries scattered over 9,000 pages of two years' rows, one old page dirtied and read per
    -- update, and every index entry of a recent delivery pointing into a different page (the summary's count
    -- of open deliveries read 19,007 buffers, 14,777 of them from disk). Pages filled to 90% keep room for
    -- a delivery's own next versions, and a page of the history no longer counts as having room for a new
    -- row (PostgreSQL then asks for the row's size plus the 10%). Measured on a copy of the generated history:
    -- 9,000 pages touched become about 500, the drain's statements ran 1.2-2 times faster, the count read
    -- 858-1,024 buffers instead of about 18,000. Existing pages are not rewritten: they are full, and new rows
    -- go elsewhere. The price: new pages hold a tenth fewer rows.
    alter table delivery set (fillfactor = 90);
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table delivery reset (fillfactor)`.execute(db)
}
