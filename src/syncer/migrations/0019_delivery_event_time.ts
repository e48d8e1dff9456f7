import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- The count of overdue customer versions (the admin summary, the console's overview, every metrics scrape)
    -- asks of each open delivery when its customer version was made: the event's time, in sync_event. With the
    -- history benchmark's 5,100 open deliveries (FAILED ones never redriven) that was a visit to each delivery
    -- and a probe of its event, 40,000 buffers and about 150 ms a count. Each delivery now carries its event's
    -- time, and the index of the open deliveries holds it with the event id, so the count reads that index
    -- alone. The settled deliveries never need it (no move leaves a settled state): their history is left
    -- without (null); the open ones get it here, and every delivery made from now on gets it when it is made.
    -- The check makes a delivery that would be open without it an error, not a version the count misses.
    alter table delivery add column event_time timestamptz;
    update delivery d set event_time = e.event_time from sync_event e
      where e.event_id = d.event_id and d.state in ('PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'FAILED', 'BLOCKED');
    alter table delivery add constraint delivery_open_has_event_time
      check (event_time is not null or state in ('SUCCESS', 'SKIPPED', 'SUPERSEDED', 'RETIRED'));
    drop index delivery_open_counts;
    create index delivery_open_counts on delivery (state, end_system) include (event_id, event_time)
      where state in ('PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'FAILED', 'BLOCKED');
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop index delivery_open_counts;
    create index delivery_open_counts on delivery (state, end_system)
      where state in ('PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'FAILED', 'BLOCKED');
    alter table delivery drop constraint delivery_open_has_event_time;
    alter table delivery drop column event_time;
  `.execute(db)
}
