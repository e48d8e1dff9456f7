import { type Kysely, sql } from 'kysely'

/** Maker-checker: skips and bulk redrives wait, as requests, for a second person (delivery/four-eyes.ts). */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table action_request (
      id               bigint generated always as identity primary key,
      kind             text not null check (kind in ('SKIP', 'BULK_REDRIVE')),
      state            text not null default 'PENDING' check (state in ('PENDING', 'APPROVED', 'REJECTED', 'EXPIRED')),
      requested_by     text not null,
      reason           text not null,
      -- The filter a bulk redrive was asked with, as given, for the record (its deliveries are listed below).
      filter           jsonb,
      requested_at     timestamptz not null default now(),
      expires_at       timestamptz not null,
      decided_by       text,
      decided_at       timestamptz,
      -- Why it was rejected.
      decision_reason  text,
      -- Four eyes, held by the database too: whoever answers is not whoever asked.
      check (decided_by is distinct from requested_by),
      check ((state = 'PENDING') = (decided_at is null)),
      check ((state in ('APPROVED', 'REJECTED')) = (decided_by is not null)),
      check ((state = 'REJECTED') = (decision_reason is not null))
    );
    create index action_request_pending on action_request (expires_at) where state = 'PENDING';
    create index action_request_state on action_request (state, id);

    -- The deliveries a request selected when it was made; an approval applies to those that still qualify.
    create table action_request_delivery (
      request_id   bigint not null references action_request (id),
      delivery_id  bigint not null references delivery (id),
      primary key (request_id, delivery_id)
    );

    -- An action taken on approval names the request, and so who approved it.
    alter table operator_action
      add column request_id bigint references action_request (id),
      add column approved_by text,
      add check ((request_id is null) = (approved_by is null)),
      add check (approved_by is distinct from operator);
    create index operator_action_request on operator_action (request_id) where request_id is not null;
  `.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table operator_action drop column approved_by, drop column request_id;
    drop table action_request_delivery;
    drop table action_request;
  `.execute(db)
}
