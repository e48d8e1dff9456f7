import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- Every CIF event the syncer took from Kafka, once (a redelivered message finds its id here).
    create table sync_event (
      event_id               uuid primary key,
      cif_id                 text not null,
      event_type             text not null,
      customer_version       integer not null,
      -- The source system that owns the customer (created it): whose callbacks see this event.
      owner_source_system    text not null,
      acting_source_system   text not null,
      event                  jsonb not null,
      event_time             timestamptz not null,
      received_at            timestamptz not null default now(),
      kafka_partition        integer not null,
      kafka_offset           bigint not null
    );
    create index sync_event_cif_id on sync_event (cif_id, customer_version);

    -- A message on the topic that is not a CIF event the syncer understands: kept, never silently dropped.
    create table unreadable_message (
      id              bigint generated always as identity primary key,
      topic           text not null,
      kafka_partition integer not null,
      kafka_offset    bigint not null,
      message_key     text,
      message_value   text not null,
      reason          text not null,
      received_at     timestamptz not null default now(),
      unique (topic, kafka_partition, kafka_offset)
    );

    -- One per (event, end system): what must reach that system, and where it stands.
    create table delivery (
      id                 bigint generated always as identity primary key,
      event_id           uuid not null references sync_event (event_id),
      cif_id             text not null,
      end_system         text not null,
      operation          text not null check (operation in ('create', 'update')),
      customer_version   integer not null,
      state              text not null check (state in
                           ('PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'SUCCESS', 'FAILED', 'BLOCKED', 'SKIPPED')),
      attempts           integer not null default 0,
      -- Attempts since the last redrive: the retry budget counts these.
      round_attempts     integer not null default 0,
      next_attempt_at    timestamptz not null default now(),
      lease_until        timestamptz,
      external_id        text,
      last_error         text,
      remarks            text,
      created_at         timestamptz not null default now(),
      updated_at         timestamptz not null default now(),
      completed_at       timestamptz,
      unique (event_id, end_system)
    );
    create index delivery_due on delivery (end_system, next_attempt_at)
      where state in ('PENDING', 'RETRY_SCHEDULED');
    create index delivery_open_by_customer on delivery (cif_id, end_system, customer_version)
      where state not in ('SUCCESS', 'SKIPPED');
    create index delivery_lease on delivery (lease_until) where state = 'IN_FLIGHT';
    create index delivery_cif_id on delivery (cif_id, end_system);
    create index delivery_state_updated on delivery (state, updated_at);

    -- The transaction table: one row per attempt to call an end system.
    create table delivery_attempt (
      id                bigint generated always as identity primary key,
      delivery_id       bigint not null references delivery (id),
      event_id          uuid not null,
      cif_id            text not null,
      event_type        text not null,
      customer_version  integer not null,
      end_system        text not null,
      attempt_number    integer not null,
      status            text not null check (status in ('SUCCESS', 'ERROR')),
      http_status       integer,
      response_message  text,
      remarks           text,
      timeout_ms        integer not null,
      duration_ms       integer not null,
      started_at        timestamptz not null,
      finished_at       timestamptz not null,
      unique (delivery_id, attempt_number)
    );
    create index delivery_attempt_cif_id on delivery_attempt (cif_id, started_at);
    create index delivery_attempt_end_system on delivery_attempt (end_system, started_at);

    -- Which record in each end system is this customer (filled from successful creates).
    create table customer_xref (
      cif_id       text not null,
      end_system   text not null,
      external_id  text not null,
      created_at   timestamptz not null default now(),
      primary key (cif_id, end_system)
    );

    -- The feed behind GET /v1/sync/updates. Rows get their feed position (seq) only once committed, from
    -- one sequencer at a time, so positions follow commit order and a poller's cursor never skips a row
    -- that committed late (ids are handed out before commit and cannot serve as a cursor).
    create sequence sync_status_seq;
    create table sync_status_update (
      id                   bigint generated always as identity primary key,
      seq                  bigint unique,
      owner_source_system  text not null,
      cif_id               text not null,
      kind                 text not null,
      status               jsonb not null,
      created_at           timestamptz not null default now()
    );
    create index sync_status_update_feed on sync_status_update (owner_source_system, seq) where seq is not null;
    create index sync_status_update_unsequenced on sync_status_update (id) where seq is null;

    -- Who redrove or skipped what, when and why.
    create table operator_action (
      id           bigint generated always as identity primary key,
      delivery_id  bigint not null references delivery (id),
      action       text not null check (action in ('REDRIVE', 'SKIP')),
      operator     text not null,
      reason       text not null,
      from_state   text not null,
      created_at   timestamptz not null default now()
    );
    create index operator_action_delivery on operator_action (delivery_id);
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table operator_action;
    drop table sync_status_update;
    drop sequence sync_status_seq;
    drop table customer_xref;
    drop table delivery_attempt;
    drop table delivery;
    drop table unreadable_message;
    drop table sync_event;
  `.execute(db)
}
