import { type Kysely, sql } from 'kysely'

// Migrations are frozen once released: they take Kysely<unknown>, not today's table types, and name the
// settled states as they were when this was written (SUCCESS, SKIPPED, SUPERSEDED, RETIRED: no move leaves them).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- The admin summary counted every delivery ever made (2.6 s with 3 million). A settled delivery never
    -- changes again, so a syncer's retention round adds those that settled before a mark to running totals
    -- and moves the mark; the summary is the totals, plus a live count of what settled since the mark (this
    -- index, read without the table), plus the open states live. Its cost follows the recent work, not the history.
    create index delivery_settled_since on delivery (completed_at) include (end_system, state)
      where state in ('SUCCESS', 'SKIPPED', 'SUPERSEDED', 'RETIRED');
    create table delivery_settled_count (
      end_system  text not null,
      state       text not null,
      deliveries  bigint not null,
      primary key (end_system, state)
    );
    -- One row: deliveries that settled before counted_before are in the totals, the others are not.
    create table delivery_settled_count_mark (
      only_row        boolean primary key default true check (only_row),
      counted_before  timestamptz not null
    );
    insert into delivery_settled_count_mark (counted_before) values ('-infinity');
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop table delivery_settled_count_mark;
    drop table delivery_settled_count;
    drop index delivery_settled_since;
  `.execute(db)
}
