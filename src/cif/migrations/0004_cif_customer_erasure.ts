import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- An erased customer keeps its row (its CIF ID is never given out again, and the audit trail names it)
    -- with its record emptied; who erased it, when and why are kept beside it, all three or none.
    alter table customer
      add column erased_at      timestamptz,
      add column erased_by      text,
      add column erasure_reason text,
      add constraint customer_erasure_recorded check (
        (erased_at is null) = (erased_by is null) and (erased_at is null) = (erasure_reason is null));
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table customer drop constraint customer_erasure_recorded,
      drop column erased_at, drop column erased_by, drop column erasure_reason;
  `.execute(db)
}
