import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- The CIF service makes one event per customer version. A second event of a version already stored (another
    -- id: replayed from elsewhere, or not the CIF service's doing) is kept as unreadable by the intake, never
    -- delivered: the index makes the database the judge, so two syncers storing at once cannot both take one.
    -- It replaces the plain index on the same columns, which served the same lookups.
    create unique index sync_event_one_per_version on sync_event (cif_id, customer_version);
    drop index sync_event_cif_id;
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    create index sync_event_cif_id on sync_event (cif_id, customer_version);
    drop index sync_event_one_per_version;
  `.execute(db)
}
