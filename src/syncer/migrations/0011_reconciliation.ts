import { type Kysely, sql } from 'kysely'

/**
 * Reconciliation and backfill (issue 11): runs, what they found, and the deliveries they asked for. A repair
 * is a normal delivery of a version the system was already sent, so (event, end system) is unique only among
 * the intake's deliveries now.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table reconciliation_run (
      id              bigint generated always as identity primary key,
      kind            text not null check (kind in ('RECONCILE', 'BACKFILL')),
      state           text not null default 'RUNNING' check (state in ('RUNNING', 'DONE')),
      end_systems     text[] not null,
      -- What the run covers: these customers only, and/or customers whose latest version arrived since then.
      cif_ids         text[],
      since           timestamptz,
      -- Situations repaired as soon as found (a BACKFILL delivers what it finds).
      repair          text[] not null default '{}',
      requested_by    text not null,
      -- Where the run resumes after a crash: the customers up to this CIF ID are done; then each system's
      -- list (ORPHAN), from its cursor, until listed_systems holds it.
      after_cif_id    text,
      listing         jsonb not null default '{}',
      total           integer,
      done            integer not null default 0,
      errors          integer not null default 0,
      counts          jsonb not null default '{}',
      -- The process working on it; another may take it over once the lease runs out.
      lease_until     timestamptz,
      started_at      timestamptz not null default now(),
      updated_at      timestamptz not null default now(),
      finished_at     timestamptz
    );
    create index reconciliation_run_running on reconciliation_run (id) where state = 'RUNNING';
    create index reconciliation_run_latest on reconciliation_run (kind, started_at);

    create table reconciliation_finding (
      id                 bigint generated always as identity primary key,
      run_id             bigint not null references reconciliation_run (id),
      cif_id             text not null,
      end_system         text not null,
      situation          text not null check (situation in ('IN_SYNC', 'MISSING', 'ALTERED', 'STALE', 'UNLINKED', 'ORPHAN')),
      -- The version compared against (null for an ORPHAN), and the one the system held when it said.
      customer_version   integer,
      held_version       integer,
      external_id        text,
      -- ALTERED and STALE: each differing field with both values, personal data masked.
      differences        jsonb,
      repair_delivery_id bigint,
      found_at           timestamptz not null default now(),
      -- A page done again after a crash finds nothing twice.
      unique (run_id, end_system, cif_id)
    );
    create index reconciliation_finding_cif on reconciliation_finding (cif_id, end_system);

    alter table delivery add column reconciliation_run_id bigint references reconciliation_run (id);
    alter table delivery drop constraint delivery_event_id_end_system_key;
    create unique index delivery_event_end_system on delivery (event_id, end_system) where reconciliation_run_id is null;
    create index delivery_of_run on delivery (reconciliation_run_id, state) where reconciliation_run_id is not null;
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    -- Refused (a unique violation) while repairs share an event and system with the intake's deliveries: they
    -- are the transaction table's history, not to be dropped.
    drop index delivery_of_run;
    drop index delivery_event_end_system;
    alter table delivery add constraint delivery_event_id_end_system_key unique (event_id, end_system);
    alter table delivery drop column reconciliation_run_id;
    drop table reconciliation_finding;
    drop table reconciliation_run;
  `.execute(db)
}
