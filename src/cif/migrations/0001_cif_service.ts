import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- Ten digits plus a Luhn check digit; a sequence never hands a value out twice, even on rollback.
    create sequence cif_number_seq as bigint start 1000000000 minvalue 1000000000 maxvalue 9999999999 no cycle;

    create table customer (
      cif_id        text primary key check (cif_id ~ '^[0-9]{11}$'),
      version       integer not null check (version >= 1),
      legal_form    text not null check (legal_form in ('PERSON', 'ENTITY')),
      source_system text not null,
      external_id   text,
      record        jsonb not null,
      created_at    timestamptz not null default now(),
      updated_at    timestamptz not null default now()
    );
    create unique index customer_source_external_id on customer (source_system, external_id)
      where external_id is not null;

    create table customer_identifier (
      type             text not null,
      issuing_country  char(2) not null,
      normalized_value text not null,
      cif_id           text not null references customer (cif_id) on delete cascade,
      primary key (type, issuing_country, normalized_value)
    );
    create index customer_identifier_cif_id on customer_identifier (cif_id);

    create table idempotency_key (
      source_system    text not null,
      key              text not null,
      request_hash     text not null,
      state            text not null check (state in ('IN_FLIGHT', 'COMPLETED')),
      response_status  integer,
      response_body    jsonb,
      response_headers jsonb,
      locked_until     timestamptz,
      -- Which attempt holds the key: a request that lost its lease to a retry can no longer finish it.
      owner_token      uuid,
      created_at       timestamptz not null default now(),
      primary key (source_system, key)
    );
    create index idempotency_key_created_at on idempotency_key (created_at);

    create table outbox_message (
      id               bigint generated always as identity primary key,
      event_id         uuid not null unique,
      topic            text not null,
      message_key      text not null,
      payload          text not null,
      headers          jsonb not null default '{}',
      status           text not null default 'PENDING' check (status in ('PENDING', 'SENT')),
      publish_attempts integer not null default 0,
      last_error       text,
      created_at       timestamptz not null default now(),
      sent_at          timestamptz
    );
    -- Each relay reads its own topics, in id order; a key's earlier pending row is found by the second index.
    create index outbox_message_pending on outbox_message (topic, id) where status = 'PENDING';
    create index outbox_message_pending_key on outbox_message (topic, message_key, id) where status = 'PENDING';
    create index outbox_message_sent_at on outbox_message (sent_at) where status = 'SENT';

    -- Wakes the relay as soon as a transaction that wrote events commits (NOTIFY is sent at commit).
    create function notify_outbox_message() returns trigger language plpgsql as $$
    begin
      perform pg_notify('outbox_message', '');
      return null;
    end $$;
    create trigger outbox_message_inserted after insert on outbox_message
      for each statement execute function notify_outbox_message();
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table outbox_message;
    drop function notify_outbox_message;
    drop table idempotency_key;
    drop table customer_identifier;
    drop table customer;
    drop sequence cif_number_seq;
  `.execute(db)
}
