import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- An event's payload (the customer's data) goes once no delivery needs it, or when the customer is
    -- erased; the row stays, as the fact that the event arrived. The index finds payloads still kept.
    alter table sync_event alter column event drop not null;
    create index sync_event_payload_kept on sync_event (received_at) where event is not null;

    -- Likewise an unreadable message's content, past the retention; why it was unreadable stays.
    alter table unreadable_message alter column message_value drop not null;
    create index unreadable_message_value_kept on unreadable_message (received_at) where message_value is not null;

    -- Customers whose personal data was erased: who, when and why. The intake keeps no payload of a later
    -- event of theirs and makes no delivery of it.
    create table customer_erasure (
      cif_id     text primary key,
      erased_by  text not null,
      reason     text not null,
      erased_at  timestamptz not null default now()
    );
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table customer_erasure;
    drop index unreadable_message_value_kept;
    drop index sync_event_payload_kept;
  `.execute(db)
}
