import { type Kysely, sql } from 'kysely'

// The transaction table, partitioned by month so that a bank's years of attempts can be retired a month at a
// time (dropping or detaching a partition, never a DELETE of millions of rows), while what the syncer and the
// APIs read stays an index probe into the months concerned.
//
// The partition key is the month (UTC) the attempt's delivery was created in, carried on each attempt as
// `delivery_month`: a unique index of a partitioned table must hold its key, and the attempt's own key
// (delivery, attempt number) is what both of its writers upsert on (lease recovery writes a placeholder that
// the real answer replaces, delivery/delivery-store.ts). Both know when the delivery was created, whereas the
// attempt's start differs between the placeholder and the answer; the month, not the instant, because the
// syncer holds the instant to the millisecond and PostgreSQL to the microsecond. It also keeps a delivery's
// whole history in one partition, so a month can be retired once every delivery of it has settled.
//
// The data already in the table is converted, not left behind: each attempt goes to its delivery's month.
// Partition names follow attemptPartitionName (syncer/retention.ts), which makes the months after these.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table delivery_attempt rename to delivery_attempt_unpartitioned;

    create table delivery_attempt (
      id                   bigint generated always as identity,
      delivery_id          bigint not null references delivery (id),
      delivery_month       date not null,
      event_id             uuid not null,
      cif_id               text not null,
      event_type           text not null,
      customer_version     integer not null,
      end_system           text not null,
      attempt_number       integer not null,
      status               text not null check (status in ('SUCCESS', 'ERROR')),
      http_status          integer,
      response_message     text,
      remarks              text,
      timeout_ms           integer not null,
      duration_ms          integer not null,
      started_at           timestamptz not null,
      finished_at          timestamptz not null
    ) partition by range (delivery_month);

    -- Catches an attempt of a month nobody made a partition for (the syncer makes them ahead), so that
    -- recording an attempt never fails for want of one.
    create table delivery_attempt_default partition of delivery_attempt default;

    do $$
    declare
      month date;
    begin
      for month in
        select generate_series(
          date_trunc('month', least(coalesce((select min(created_at) from delivery), now()), now()) at time zone 'UTC'),
          date_trunc('month', now() at time zone 'UTC') + interval '2 months',
          interval '1 month')::date
      loop
        execute format('create table %I partition of delivery_attempt for values from (%L) to (%L)',
          'delivery_attempt_' || to_char(month, 'YYYY_MM'), month, (month + interval '1 month')::date);
      end loop;
    end $$;

    insert into delivery_attempt (id, delivery_id, delivery_month, event_id, cif_id, event_type, customer_version,
      end_system, attempt_number, status, http_status, response_message, remarks, timeout_ms, duration_ms, started_at, finished_at)
    overriding system value
    select a.id, a.delivery_id, date_trunc('month', d.created_at at time zone 'UTC')::date, a.event_id, a.cif_id, a.event_type, a.customer_version,
      a.end_system, a.attempt_number, a.status, a.http_status, a.response_message, a.remarks, a.timeout_ms, a.duration_ms,
      a.started_at, a.finished_at
    from delivery_attempt_unpartitioned a join delivery d on d.id = a.delivery_id;

    -- New attempts number on from the converted ones.
    select setval(pg_get_serial_sequence('delivery_attempt', 'id'), coalesce((select max(id) from delivery_attempt), 0) + 1, false);

    drop table delivery_attempt_unpartitioned;

    -- Built after the copy: faster than keeping them up row by row, and the old table's names are free now.
    alter table delivery_attempt
      add primary key (id, delivery_month),
      add unique (delivery_id, attempt_number, delivery_month);
    create index delivery_attempt_cif_id on delivery_attempt (cif_id, started_at);
    create index delivery_attempt_end_system on delivery_attempt (end_system, started_at);

    -- The admin API's from/to filter on deliveries: without it, a scan of every delivery ever made.
    create index delivery_created_at on delivery (created_at);
    -- The operators' list of FAILED deliveries (and a bulk redrive's selection), in id order: a page of it reads
    -- that page, not every open delivery.
    create index delivery_failed on delivery (id) where state = 'FAILED';
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop index delivery_failed;
    drop index delivery_created_at;
    alter table delivery_attempt rename to delivery_attempt_partitioned;
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
      finished_at       timestamptz not null
    );
    insert into delivery_attempt (id, delivery_id, event_id, cif_id, event_type, customer_version, end_system, attempt_number,
      status, http_status, response_message, remarks, timeout_ms, duration_ms, started_at, finished_at)
    overriding system value
    select id, delivery_id, event_id, cif_id, event_type, customer_version, end_system, attempt_number,
      status, http_status, response_message, remarks, timeout_ms, duration_ms, started_at, finished_at
    from delivery_attempt_partitioned;
    select setval(pg_get_serial_sequence('delivery_attempt', 'id'), coalesce((select max(id) from delivery_attempt), 0) + 1, false);
    drop table delivery_attempt_partitioned;
    alter table delivery_attempt add unique (delivery_id, attempt_number);
    create index delivery_attempt_cif_id on delivery_attempt (cif_id, started_at);
    create index delivery_attempt_end_system on delivery_attempt (end_system, started_at);
  `.execute(db)
}
