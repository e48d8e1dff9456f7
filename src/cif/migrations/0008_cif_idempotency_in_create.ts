import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- A key is now written in the create's own transaction, with its answer: a concurrent retry waits on the
    -- uncommitted row instead of finding it IN_FLIGHT, so there is no state, lease or owner left to keep. A
    -- key still IN_FLIGHT belonged to a request of the previous version that never finished: freed, as its
    -- lease would have freed it.
    delete from idempotency_key where state = 'IN_FLIGHT';
    alter table idempotency_key
      drop column state,
      drop column locked_until,
      drop column owner_token,
      alter column response_status set not null,
      alter column response_body set not null,
      alter column response_headers set not null;
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table idempotency_key
      alter column response_status drop not null,
      alter column response_body drop not null,
      alter column response_headers drop not null,
      add column state text not null default 'COMPLETED' check (state in ('IN_FLIGHT', 'COMPLETED')),
      add column locked_until timestamptz,
      add column owner_token uuid;
    alter table idempotency_key alter column state drop default;
  `.execute(db)
}
