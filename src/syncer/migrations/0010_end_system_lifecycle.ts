import { type Kysely, sql } from 'kysely'

/**
 * Pausing, retiring and coalescing (issue 11): two terminal delivery states, SUPERSEDED and RETIRED; pauses
 * of whole end systems, kept here so that every syncer instance sees them and they outlast a restart; the
 * operator action log taking actions on an end system as well as on a delivery; and the mark that a
 * customer version was told overdue (the in-sync deadline), so it is told once.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table delivery drop constraint delivery_state_check;
    alter table delivery add constraint delivery_state_check check (state in
      ('PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'SUCCESS', 'FAILED', 'BLOCKED', 'SKIPPED', 'SUPERSEDED', 'RETIRED'));

    -- The open deliveries: the new terminal states leave it as SUCCESS and SKIPPED do. Its predicate is the
    -- one the claim and the overdue check write (settledStates in delivery/states.ts), so both use it.
    drop index delivery_open_by_customer;
    create index delivery_open_by_customer on delivery (cif_id, end_system, customer_version)
      where state not in ('SUCCESS', 'SKIPPED', 'SUPERSEDED', 'RETIRED');

    -- A paused end system: its deliveries wait unattempted until an operator resumes it (the row is deleted).
    create table end_system_pause (
      end_system  text primary key,
      paused_by   text not null,
      reason      text not null,
      paused_at   timestamptz not null default now()
    );

    -- The log names a delivery (redrive, skip) or an end system (pause, resume), never both.
    alter table operator_action
      alter column delivery_id drop not null,
      alter column from_state drop not null,
      add column end_system text;
    alter table operator_action drop constraint operator_action_action_check;
    alter table operator_action add constraint operator_action_action_check check (action in ('REDRIVE', 'SKIP', 'PAUSE', 'RESUME'));
    alter table operator_action add constraint operator_action_names_one check ((delivery_id is null) <> (end_system is null));
    create index operator_action_end_system on operator_action (end_system, id) where end_system is not null;

    -- When the version's owner was told it missed the in-sync deadline (status/overdue.ts); null until then.
    alter table sync_event add column overdue_at timestamptz;
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // Refused (a check violation) while any delivery is SUPERSEDED or RETIRED or an end system action is logged:
  // the older code knows neither.
  await sql`
    alter table sync_event drop column overdue_at;
    drop index operator_action_end_system;
    alter table operator_action drop constraint operator_action_names_one;
    alter table operator_action drop constraint operator_action_action_check;
    alter table operator_action add constraint operator_action_action_check check (action in ('REDRIVE', 'SKIP'));
    alter table operator_action drop column end_system, alter column delivery_id set not null, alter column from_state set not null;
    drop table end_system_pause;
    drop index delivery_open_by_customer;
    create index delivery_open_by_customer on delivery (cif_id, end_system, customer_version) where state not in ('SUCCESS', 'SKIPPED');
    alter table delivery drop constraint delivery_state_check;
    alter table delivery add constraint delivery_state_check check (state in
      ('PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'SUCCESS', 'FAILED', 'BLOCKED', 'SKIPPED'));
  `.execute(db)
}
