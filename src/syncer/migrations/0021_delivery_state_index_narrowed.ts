import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- delivery_state_updated held every delivery under (state, updated_at), and no query reads updated_at
    -- through it: each of a delivery's three writes (stored, claimed, settled) put a new entry in it (none of
    -- them is a HOT update). Its one use was the admin list filtered by a state. The open states have
    -- delivery_open_counts, FAILED has delivery_failed, SUCCESS is most of the table (the primary key in id
    -- order finds a page of it at once); what remains are the settled states a delivery rarely ends in, which
    -- this index keeps in the list's order. A delivery that succeeds never enters it.
    drop index delivery_state_updated;
    create index delivery_settled_undelivered on delivery (state, id) where state in ('SKIPPED', 'SUPERSEDED', 'RETIRED');
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop index delivery_settled_undelivered;
    create index delivery_state_updated on delivery (state, updated_at);
  `.execute(db)
}
