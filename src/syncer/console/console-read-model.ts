import { sql } from 'kysely'
import { toDelivery } from '../api/read-model.ts'
import type { Delivery } from '../api/schemas.ts'
import { type OperatorAction, settledStates } from '../delivery/states.ts'
import type { SyncerDb } from '../tables.ts'

/**
 * What the console shows beyond what the admin API already reads (api/read-model.ts): activity over the last
 * minutes, the oldest undelivered version, a customer's versions, cross-references and status messages, and the
 * operator action log. The console's routes call these and never touch SQL.
 */

export async function deliveryById(db: SyncerDb, id: string): Promise<Delivery | undefined> {
  const row = await db.selectFrom('delivery').selectAll().where('id', '=', id).executeTakeFirst()
  return row && toDelivery(row)
}

/** Attempts and failed attempts per end system since `minutes` ago (the attempts' index by system and start). */
export async function recentAttempts(db: SyncerDb, minutes: number): Promise<Map<string, { attempts: number; errors: number }>> {
  const rows = await db
    .selectFrom('delivery_attempt')
    .select([
      'end_system',
      (eb) => eb.fn.countAll<string>().as('attempts'),
      (eb) => eb.fn.countAll<string>().filterWhere('status', '=', 'ERROR').as('errors')
    ])
    .where('started_at', '>=', sql<Date>`now() - make_interval(mins => ${minutes})`)
    .groupBy('end_system')
    .execute()
  return new Map(rows.map((row) => [row.end_system, { attempts: Number(row.attempts), errors: Number(row.errors) }]))
}

/** Per end system, when its oldest delivery not yet settled (SUCCESS or SKIPPED) was made. */
export async function oldestUndelivered(db: SyncerDb): Promise<Map<string, Date>> {
  const rows = await db
    .selectFrom('delivery')
    .select(['end_system', (eb) => eb.fn.min('created_at').as('oldest')])
    .where('state', 'not in', settledStates)
    .groupBy('end_system')
    .execute()
  return new Map(rows.map((row) => [row.end_system, row.oldest]))
}

export interface CustomerVersion {
  eventId: string
  version: number
  eventType: string
  ownerSourceSystem: string
  actingSourceSystem: string
  /** The names of the fields that changed (never their values); null once the payload is past retention. */
  changedFields: string[] | null
  eventTime: Date
  receivedAt: Date
}

/** Every version of a customer the syncer received, oldest first. */
export async function customerVersions(db: SyncerDb, cifId: string): Promise<CustomerVersion[]> {
  const rows = await db
    .selectFrom('sync_event')
    .select([
      'event_id',
      'customer_version',
      'event_type',
      'owner_source_system',
      'acting_source_system',
      'event_time',
      'received_at',
      sql<string | null>`event->>'changedfields'`.as('changed_fields'),
      sql<boolean>`event is not null`.as('payload_kept')
    ])
    .where('cif_id', '=', cifId)
    .orderBy('customer_version')
    .execute()
  return rows.map((row) => ({
    eventId: row.event_id,
    version: row.customer_version,
    eventType: row.event_type,
    ownerSourceSystem: row.owner_source_system,
    actingSourceSystem: row.acting_source_system,
    // A create names no changed fields: the whole customer is new.
    changedFields: row.payload_kept ? (row.changed_fields?.split(',').filter(Boolean) ?? []) : null,
    eventTime: row.event_time,
    receivedAt: row.received_at
  }))
}

/** Each end system's own record id for the customer, from its create's answer. */
export async function externalIds(db: SyncerDb, cifId: string): Promise<Map<string, string>> {
  const rows = await db.selectFrom('customer_xref').select(['end_system', 'external_id']).where('cif_id', '=', cifId).execute()
  return new Map(rows.map((row) => [row.end_system, row.external_id]))
}

export interface StatusMessage {
  kind: string
  createdAt: Date
  publishedAt: Date | null
  feedPosition: string | null
  endSystem: string | null
  customerVersion: number | null
}

/** The status messages written for a customer (the callback feed and cif.sync.status), oldest first. */
export async function statusMessages(db: SyncerDb, cifId: string): Promise<StatusMessage[]> {
  const rows = await db
    .selectFrom('sync_status_update')
    .select(['kind', 'created_at', 'published_at', 'seq', 'status'])
    .where('cif_id', '=', cifId)
    .orderBy('id')
    .execute()
  return rows.map((row) => ({
    kind: row.kind,
    createdAt: row.created_at,
    publishedAt: row.published_at,
    feedPosition: row.seq,
    endSystem: typeof row.status.endSystem === 'string' ? row.status.endSystem : null,
    customerVersion: typeof row.status.customerVersion === 'number' ? row.status.customerVersion : null
  }))
}

export interface ActionLogFilters {
  operator?: string | undefined
  cifId?: string | undefined
  action?: OperatorAction | undefined
  /** The id of the last entry of the previous page: the log is read newest first. */
  before?: string | undefined
}

export interface ActionLogEntry {
  id: string
  at: Date
  action: string
  operator: string
  approvedBy: string | null
  requestId: string | null
  reason: string
  /** Null for an action on a whole end system (pause, resume), which names no delivery. */
  fromState: string | null
  deliveryId: string | null
  cifId: string | null
  endSystem: string
  customerVersion: number | null
}

/**
 * Who did what to which delivery or end system, when and why: the operator action log, newest first, a page at a
 * time.
 */
export async function operatorActionLog(db: SyncerDb, q: ActionLogFilters, limit: number): Promise<ActionLogEntry[]> {
  let query = db
    .selectFrom('operator_action')
    .leftJoin('delivery', 'delivery.id', 'operator_action.delivery_id')
    .select([
      'operator_action.id',
      'operator_action.created_at',
      'operator_action.action',
      'operator_action.operator',
      'operator_action.approved_by',
      'operator_action.request_id',
      'operator_action.reason',
      'operator_action.from_state',
      'operator_action.delivery_id',
      'delivery.cif_id',
      (eb) => eb.fn.coalesce('operator_action.end_system', 'delivery.end_system').$notNull().as('end_system'),
      'delivery.customer_version'
    ])
    .orderBy('operator_action.id', 'desc')
    .limit(limit)
  if (q.operator)
    query = query.where((eb) => eb.or([eb('operator_action.operator', '=', q.operator!), eb('operator_action.approved_by', '=', q.operator!)]))
  if (q.cifId) query = query.where('delivery.cif_id', '=', q.cifId)
  if (q.action) query = query.where('operator_action.action', '=', q.action)
  if (q.before) query = query.where('operator_action.id', '<', q.before)
  return (await query.execute()).map((row) => ({
    id: row.id,
    at: row.created_at,
    action: row.action,
    operator: row.operator,
    approvedBy: row.approved_by,
    requestId: row.request_id,
    reason: row.reason,
    fromState: row.from_state,
    deliveryId: row.delivery_id,
    cifId: row.cif_id,
    endSystem: row.end_system,
    customerVersion: row.customer_version
  }))
}
