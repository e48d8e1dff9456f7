import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- The W3C traceparent of the intake's span for the event (a child of the create's trace), so that every
    -- attempt, retries and redrives days later included, continues the create's trace; and each attempt's
    -- own, which the end system received. Null for rows stored before, and for events published untraced.
    -- Adding a nullable column without a default rewrites nothing, on the partitioned table too.
    alter table sync_event add column traceparent text;
    alter table delivery_attempt add column traceparent text;
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table delivery_attempt drop column traceparent;
    alter table sync_event drop column traceparent;
  `.execute(db)
}
