import { type Kysely, sql } from 'kysely'
import { topics } from '../../contracts/topics.ts'

/**
 * One row per status: the feed row is also the message on `cif.sync.status`, published by the status relay
 * from this table, so the outbox no longer holds a copy of each.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- Rows from before this migration were published from the outbox: now() is evaluated once, so they are
    -- marked published without rewriting the table. New rows start unpublished.
    alter table sync_status_update
      add column published_at timestamptz default now(),
      add column publish_attempts integer not null default 0,
      add column last_error text,
      -- The CloudEvent id, kept so that a message published again after a crash carries the same id.
      -- Rows published from the outbox keep theirs there.
      add column event_id uuid unique;
    alter table sync_status_update alter column published_at drop default;
    alter table sync_status_update alter column event_id set default gen_random_uuid();
    alter table sync_status_update add constraint sync_status_update_unpublished_has_id
      check (published_at is not null or event_id is not null);

    -- The relay reads in id order; a CIF ID's earlier unpublished row is found by the second index.
    create index sync_status_update_unpublished on sync_status_update (id) where published_at is null;
    create index sync_status_update_unpublished_cif on sync_status_update (cif_id, id) where published_at is null;

    -- The relay takes rows once they have their feed position: the sequencer's commit wakes it.
    create function notify_sync_status_update() returns trigger language plpgsql as $$
    begin
      perform pg_notify('sync_status_update', '');
      return null;
    end $$;
    create trigger sync_status_update_sequenced after update of seq on sync_status_update
      for each statement execute function notify_sync_status_update();
  `.execute(db)

  // Statuses still waiting in the outbox are handed to their feed rows, which were written in the same
  // transaction with the same data, owner and CIF ID, and the outbox copy deleted; the outbox's event id is
  // kept, as the message may have gone out just before the upgrade. Rows alike in all of that are paired
  // one to one from the newest: a key's copies went out in id order, so the ones sent are the oldest.
  await sql`
    with pending as (
      select id, event_id, publish_attempts, last_error, message_key as cif_id,
        payload::jsonb ->> 'sourcesystem' as owner, payload::jsonb -> 'data' as status,
        row_number() over (partition by message_key, payload::jsonb ->> 'sourcesystem', payload::jsonb -> 'data' order by id desc) as nth
      from outbox_message where topic = ${topics.syncStatus} and status = 'PENDING'
    ), feed as (
      select id, cif_id, owner_source_system as owner, status,
        row_number() over (partition by cif_id, owner_source_system, status order by id desc) as nth
      from sync_status_update where cif_id in (select cif_id from pending)
    ), paired as (
      select feed.id as feed_id, pending.id as outbox_id, pending.event_id, pending.publish_attempts, pending.last_error
      from pending join feed using (cif_id, owner, status, nth)
    ), handed as (
      update sync_status_update u
      set published_at = null, event_id = paired.event_id, publish_attempts = paired.publish_attempts, last_error = paired.last_error
      from paired where u.id = paired.feed_id
      returning paired.outbox_id
    )
    delete from outbox_message where id in (select outbox_id from handed)
  `.execute(db)

  const { rows } = await sql<{ left: string }>`
    select count(*)::text as left from outbox_message where topic = ${topics.syncStatus} and status = 'PENDING'`.execute(db)
  if (rows[0]?.left !== '0') {
    // Rolled back with the whole migration: nothing is lost, the previous version keeps publishing them.
    throw new Error(
      `${rows[0]?.left} pending status messages in outbox_message match no feed row: not upgraded, the previous version still publishes them`
    )
  }
}

/** Refused while statuses wait: the previous version would never publish them from here. */
export async function down(db: Kysely<unknown>): Promise<void> {
  const { rows } = await sql<{ waiting: string }>`
    select count(*)::text as waiting from sync_status_update where published_at is null`.execute(db)
  if (rows[0]?.waiting !== '0') throw new Error(`${rows[0]?.waiting} status updates are not yet published; let the status relay send them first`)
  await sql`
    drop trigger sync_status_update_sequenced on sync_status_update;
    drop function notify_sync_status_update;
    drop index sync_status_update_unpublished_cif;
    drop index sync_status_update_unpublished;
    alter table sync_status_update
      drop constraint sync_status_update_unpublished_has_id,
      drop column event_id,
      drop column last_error,
      drop column publish_attempts,
      drop column published_at;
  `.execute(db)
}
