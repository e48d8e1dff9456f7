import { randomUUID } from 'node:crypto'
import { sql, type Transaction } from 'kysely'
import type { Database, Db } from '../../platform/database/index.ts'
import { topics } from '../../platform/kafka.ts'

export const statusKinds = {
  DELIVERED: 'cif.sync.delivery.succeeded',
  RETRYING: 'cif.sync.delivery.retrying',
  FAILED: 'cif.sync.delivery.failed',
  SKIPPED: 'cif.sync.delivery.skipped',
  IN_SYNC: 'cif.sync.customer.in-sync'
} as const
export type StatusKind = keyof typeof statusKinds

export const STATUS_SOURCE = 'urn:cif-syncer:syncer'

export interface DeliveryStatus {
  cifId: string
  customerVersion: number
  eventId: string
  endSystem: string
  deliveryId: string
  state: string
  attempts: number
  externalId: string | null
  lastError: string | null
  remarks: string | null
  nextAttemptAt?: string | null
}

export interface InSyncStatus {
  cifId: string
  customerVersion: number
  eventId: string
  endSystems: string[]
}

export interface StatusChange {
  owner: string
  kind: StatusKind
  status: DeliveryStatus | InSyncStatus
}

/**
 * Records status changes twice, in the same transaction as the changes themselves: in the feed that the
 * callback API serves, and in the outbox that publishes `cif.sync.status` (key = CIF ID). So no status is
 * lost, and none is told that did not happen.
 */
export async function recordStatuses(trx: Transaction<Database>, changes: StatusChange[]): Promise<void> {
  if (changes.length === 0) return
  const time = new Date().toISOString()
  const rows = changes.map(({ owner, kind, status }) => {
    const body = { kind, ...status, at: time }
    const event = {
      specversion: '1.0',
      id: randomUUID(),
      source: STATUS_SOURCE,
      type: statusKinds[kind],
      subject: status.cifId,
      time,
      datacontenttype: 'application/json',
      sourcesystem: owner,
      data: body
    }
    return { owner, kind, body, event }
  })
  await trx
    .insertInto('sync_status_update')
    .values(rows.map(({ owner, kind, body }) => ({ owner_source_system: owner, cif_id: body.cifId, kind, status: JSON.stringify(body) })))
    .execute()
  await trx
    .insertInto('outbox_message')
    .values(
      rows.map(({ event }) => ({
        event_id: event.id,
        topic: topics.syncStatus,
        message_key: event.subject,
        payload: JSON.stringify(event),
        headers: JSON.stringify({ 'content-type': 'application/cloudevents+json; charset=utf-8', ce_type: event.type, ce_id: event.id })
      }))
    )
    .execute()
}

/** Any fixed number: the advisory lock that makes one sequencer at a time, across syncer instances. */
const SEQUENCER_LOCK = 7_270_001

/**
 * Gives committed status updates their feed positions, in id order, one sequencer at a time. What a
 * transaction sees committed was committed before it, so positions follow commit order: a customer's
 * "in sync" comes after every delivery it sums up.
 */
export async function sequenceStatusUpdates(db: Db, batch = 1000): Promise<number> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${SEQUENCER_LOCK})`.execute(trx)
    const waiting = await trx.selectFrom('sync_status_update').select('id').where('seq', 'is', null).orderBy('id').limit(batch).execute()
    if (waiting.length === 0) return 0
    const ids = waiting.map((row) => row.id)
    const { rows: seqs } = await sql<{ seq: string }>`select nextval('sync_status_seq')::text as seq from generate_series(1, ${ids.length})`.execute(trx)
    await sql`
      update sync_status_update u set seq = v.seq
      from unnest(${ids}::bigint[], ${seqs.map((r) => r.seq)}::bigint[]) as v(id, seq)
      where u.id = v.id and u.id = any(${ids}::bigint[])`.execute(trx)
    return ids.length
  })
}
