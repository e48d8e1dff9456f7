import { type Kysely, type RawBuilder, type RootOperationNode, sql } from 'kysely'
import { expect } from 'vitest'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import type { Customer } from '../../src/contracts/customer.ts'
import { customerEvent, customerEventTypes } from '../../src/contracts/customer-events.ts'
import { Refusal } from '../../src/contracts/problems.ts'
import { topics } from '../../src/contracts/topics.ts'
import type { ClaimedMessage } from '../../src/outbox/relay.ts'
import type { OutboxTables } from '../../src/outbox/tables.ts'
import { Registry } from '../../src/platform/metrics.ts'
import { Tracing } from '../../src/platform/tracing.ts'
import { decideRequest, requestSkip } from '../../src/syncer/api/action-request-store.ts'
import type { ActionRequest } from '../../src/syncer/api/schemas.ts'
import { type AttemptRecord, type ClaimedDelivery, claimDue, type FinishedAttempt, recordAttempts } from '../../src/syncer/delivery/delivery-store.ts'
import type { EndSystemClient } from '../../src/syncer/delivery/end-system-client.ts'
import type { Decision } from '../../src/syncer/delivery/states.ts'
import { type StringMessage, storeEvents } from '../../src/syncer/intake/event-store.ts'
import { SyncerMetrics, type SyncerTelemetry } from '../../src/syncer/metrics.ts'
import { sequenceStatusUpdates, statusQueue } from '../../src/syncer/status/sync-status.ts'
import type { DeliveryRow } from '../../src/syncer/tables.ts'
import { asSyncer, type TestDatabase } from '../support/database.ts'
import { devSigningKey, devTrustedKeys } from '../support/event-keys.ts'

/** The source system that owns every customer here: whose status messages they are. */
export const OWNER = 'branch-portal'

// Each test file has a database of its own, so CIF IDs need only differ within the file.
let sequenceNumber = 1_000_000_000
/** A CIF ID no other test in this file uses, with a right Luhn check digit. */
export const newCifId = (): string => cifIdFromNumber(++sequenceNumber)

let endSystemNumber = 0
/** An end system no other test in this file uses, so that a claim sees this test's deliveries only. */
export const newEndSystem = (name = 'crm'): string => `${name}-${++endSystemNumber}`

/** Version `version` of a customer as the CIF service publishes it (the event's `data`). */
export function customerAt(cifId: string, version: number, owner = OWNER): Customer {
  const at = new Date().toISOString()
  return {
    cifId,
    version,
    legalForm: 'PERSON',
    firstName: 'Ada',
    lastName: 'Lovelace',
    dateOfBirth: '1985-12-10',
    email: `v${version}@example.com`,
    branchCode: 'LDN01',
    externalId: `bp-${cifId}`,
    sourceSystem: owner,
    createdAt: at,
    updatedAt: at
  }
}

let offset = 0n
/**
 * The Kafka message that carries version `version` of `owner`'s customer (a create for version 1, else an
 * update), signed with the development key as the CIF service signs it.
 */
export function eventMessage(cifId: string, version: number, owner = OWNER): StringMessage {
  const event =
    version === 1
      ? customerEvent(customerEventTypes.created, customerAt(cifId, version, owner), owner, devSigningKey)
      : customerEvent(customerEventTypes.updated, customerAt(cifId, version, owner), owner, devSigningKey, ['email'])
  return kafkaMessage(cifId, JSON.stringify(event))
}

/** A message on cif.customer.events as the intake receives it, with whatever `value`. */
export function kafkaMessage(key: string, value: string): StringMessage {
  const message = {
    topic: topics.customerEvents,
    partition: 0,
    offset: offset++,
    key,
    value,
    timestamp: BigInt(Date.now()),
    headers: new Map<string, string>(),
    headerEntries: [] as [string, string][],
    leaderEpoch: 0,
    metadata: {},
    commit: () => {},
    toJSON: () => ({ ...message, headers: [], timestamp: String(message.timestamp), offset: String(message.offset) })
  }
  return message
}

/** Stores the events of these versions of a customer, as the intake does, with a delivery per end system. */
export async function storeVersions(db: Kysely<TestDatabase>, cifId: string, versions: number[], endSystems: string[]): Promise<void> {
  await storeEvents(
    asSyncer(db),
    versions.map((version) => eventMessage(cifId, version)),
    endSystems,
    devTrustedKeys
  )
}

/**
 * Makes a customer's versions as if the CIF service had made them at `at` (an SQL timestamp): their events,
 * and the copy of the event's time each delivery carries (migration 0019).
 */
export async function madeAt(db: Kysely<TestDatabase>, cifId: string, at: RawBuilder<unknown>): Promise<void> {
  await sql`update sync_event set event_time = ${at} where cif_id = ${cifId}`.execute(db)
  await sql`update delivery d set event_time = e.event_time from sync_event e where e.event_id = d.event_id and d.cif_id = ${cifId}`.execute(db)
}

export async function deliveryOf(db: Kysely<TestDatabase>, cifId: string, endSystem: string, version: number): Promise<DeliveryRow> {
  return db
    .selectFrom('delivery')
    .selectAll()
    .where('cif_id', '=', cifId)
    .where('end_system', '=', endSystem)
    .where('customer_version', '=', version)
    .executeTakeFirstOrThrow()
}

export async function deliveryById(db: Kysely<TestDatabase>, id: string): Promise<DeliveryRow> {
  return db.selectFrom('delivery').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
}

/** A customer's deliveries, by end system then version. */
export async function deliveriesOf(db: Kysely<TestDatabase>, cifId: string): Promise<DeliveryRow[]> {
  return db.selectFrom('delivery').selectAll().where('cif_id', '=', cifId).orderBy('end_system').orderBy('customer_version').execute()
}

export const LEASE_MS = 60_000

/** Takes due deliveries of one end system for an attempt each, as a lane does. */
export function claim(db: Kysely<TestDatabase>, endSystem: string, limit = 10, leaseMs = LEASE_MS): Promise<ClaimedDelivery[]> {
  return claimDue(asSyncer(db), endSystem, limit, [leaseMs])
}

/** Claims the one due delivery of this end system, failing the test if there is not exactly one. */
export async function claimOne(db: Kysely<TestDatabase>, endSystem: string): Promise<ClaimedDelivery> {
  const claimed = await claim(db, endSystem)
  if (claimed.length !== 1) throw new Error(`expected one due delivery for ${endSystem}, got ${claimed.length}`)
  return claimed[0]!
}

export const decisions = {
  success: (externalId: string | null = null): Decision => ({ state: 'SUCCESS', externalId }),
  retry: (delayMs: number): Decision => ({ state: 'RETRY_SCHEDULED', delayMs }),
  fail: (): Decision => ({ state: 'FAILED' })
}

/** What the end system answered, as the lane records it, for a decision. */
export function finished(delivery: ClaimedDelivery, decision: Decision, attempt: Partial<AttemptRecord> = {}): FinishedAttempt {
  const startedAt = new Date(Date.now() - 120)
  const answer: Pick<AttemptRecord, 'status' | 'httpStatus' | 'message' | 'remarks'> =
    decision.state === 'SUCCESS'
      ? { status: 'SUCCESS', httpStatus: 201, message: 'HTTP 201', remarks: 'created' }
      : decision.state === 'RETRY_SCHEDULED'
        ? {
            status: 'ERROR',
            httpStatus: 503,
            message: 'HTTP 503: {"error":"maintenance"}',
            remarks: 'the end system is unavailable; retry 1 of 3 in 1m'
          }
        : { status: 'ERROR', httpStatus: 400, message: 'HTTP 400: {"error":"invalid branch"}', remarks: 'the end system refused the request' }
  return { delivery, decision, attempt: { ...answer, timeoutMs: 1000, startedAt, finishedAt: new Date(startedAt.getTime() + 120), ...attempt } }
}

/** Records one attempt's answer; true when the delivery was still that attempt's. */
export async function record(
  db: Kysely<TestDatabase>,
  delivery: ClaimedDelivery,
  decision: Decision,
  attempt: Partial<AttemptRecord> = {}
): Promise<boolean> {
  const [current] = await recordAttempts(asSyncer(db), [finished(delivery, decision, attempt)])
  return current!
}

/** A delivery as an attempt would have held it, whatever its state: to record an answer for it regardless. */
export async function asClaimed(db: Kysely<TestDatabase>, id: string): Promise<ClaimedDelivery> {
  const row = await db
    .selectFrom('delivery')
    .innerJoin('sync_event', 'sync_event.event_id', 'delivery.event_id')
    .leftJoin('customer_xref', (join) =>
      join.onRef('customer_xref.cif_id', '=', 'delivery.cif_id').onRef('customer_xref.end_system', '=', 'delivery.end_system')
    )
    .selectAll('delivery')
    .select(['sync_event.event', 'sync_event.event_type', 'sync_event.owner_source_system', 'customer_xref.external_id as xref_external_id'])
    .where('delivery.id', '=', id)
    .executeTakeFirstOrThrow()
  return row as unknown as ClaimedDelivery
}

/** Lets a delivery's lease run out, as if the syncer holding it had stopped. */
export async function expireLease(db: Kysely<TestDatabase>, id: string): Promise<void> {
  await db.updateTable('delivery').set({ lease_until: sql<Date>`now() - interval '1 second'` }).where('id', '=', id).execute()
}

export interface StatusMessage {
  kind: string
  data: Record<string, any>
}

/** A customer's status messages: as the callback feed holds them, and as the outbox will publish them. */
export async function statusesOf(
  db: Kysely<TestDatabase>,
  cifId: string
): Promise<{ feed: StatusMessage[]; outbox: (StatusMessage & { topic: string; type: string; sourcesystem: string })[] }> {
  const feed = await db
    .selectFrom('sync_status_update')
    .select(['kind', 'status', 'owner_source_system'])
    .where('cif_id', '=', cifId)
    .orderBy('id')
    .execute()
  const outbox = await statusMessagesOf(db, cifId)
  return {
    feed: feed.map((row) => ({ kind: row.kind, data: row.status })),
    outbox: outbox.map((row) => {
      const event = JSON.parse(row.payload)
      return { topic: row.topic, type: event.type, sourcesystem: event.sourcesystem, kind: event.data.kind, data: event.data }
    })
  }
}

/**
 * What the status relay would publish for a customer, in the order it would: the feed sequenced first, as
 * the syncer does, then claimed and marked sent batch by batch as the relay does, in a transaction rolled
 * back at the end, so nothing is published for real.
 */
export async function statusMessagesOf(db: Kysely<TestDatabase>, cifId: string): Promise<ClaimedMessage[]> {
  while ((await sequenceStatusUpdates(asSyncer(db))) > 0);
  const messages: ClaimedMessage[] = []
  const rolledBack = new Error('roll back')
  await asSyncer(db)
    .$omitTables<keyof OutboxTables>()
    .transaction()
    .execute(async (syncer) => {
      // Callers look at several customers at once; a claim skips the rows another holds.
      await sql`select pg_advisory_xact_lock(7270002)`.execute(syncer)
      for (let batch = await statusQueue.claim(syncer, 1000); batch.length > 0; batch = await statusQueue.claim(syncer, 1000)) {
        messages.push(...batch.filter((message) => message.message_key === cifId))
        await statusQueue.markSent(
          syncer,
          batch.map((message) => message.id)
        )
      }
      throw rolledBack
    })
    .catch((error) => {
      if (error !== rolledBack) throw error
    })
  return messages
}

/**
 * A claim whose row locks stay held until `release()`: the claim runs in a transaction left open, as a
 * claim statement still running would hold them. `claimed` resolves once it has claimed, `done` on commit.
 */
export function claimHeldOpen(
  db: Kysely<TestDatabase>,
  endSystem: string,
  limit: number
): { claimed: Promise<ClaimedDelivery[]>; release(): void; done: Promise<void> } {
  let claimedNow!: (rows: ClaimedDelivery[]) => void
  let release!: () => void
  const claimed = new Promise<ClaimedDelivery[]>((resolve) => (claimedNow = resolve))
  const released = new Promise<void>((resolve) => (release = resolve))
  const done = db.transaction().execute(async (trx) => {
    claimedNow(await claimDue(asSyncer(trx), endSystem, limit, [LEASE_MS]))
    await released
  })
  return { claimed, release, done }
}

/**
 * The same database, keeping every statement run through it (not BEGIN and COMMIT, which Kysely sends
 * itself): its node, with the text of a raw `sql` one.
 */
export function statementsOf(db: Kysely<TestDatabase>): { db: Kysely<TestDatabase>; statements: { kind: string; text: string }[] } {
  const statements: { kind: string; text: string }[] = []
  const textOf = (node: RootOperationNode) => (node.kind === 'RawNode' ? node.sqlFragments.join('?') : '')
  return {
    db: db.withPlugin({
      transformQuery: ({ node }) => {
        statements.push({ kind: node.kind, text: textOf(node) })
        return node
      },
      transformResult: async ({ result }) => result
    }),
    statements
  }
}

/** Resolves as `promise` does, or rejects saying `what` if it takes longer than `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>(
    (_resolve, reject) => (timer = setTimeout(() => reject(new Error(`${what} (still waiting after ${ms} ms)`)), ms))
  )
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** A delivery's attempts in the transaction table, in order. */
export const attemptsOf = (db: Kysely<TestDatabase>, deliveryId: string) =>
  db.selectFrom('delivery_attempt').selectAll().where('delivery_id', '=', deliveryId).orderBy('attempt_number').execute()

/** A skip as the admin API makes one: requested by the operator named, approved by another person. */
export async function skipApproved(
  db: Kysely<TestDatabase>,
  request: { deliveryId: string; operator: string; reason: string },
  approver = 'ops.lim'
): Promise<ActionRequest> {
  const asked = await requestSkip(asSyncer(db), { ...request, expiresInMs: 60_000 })
  return decideRequest(asSyncer(db), { requestId: asked.requestId, decider: approver, verdict: 'approve' })
}

/** The refusal an operator's action is met with (it fails the test when the action goes through). */
export async function refusalOf(action: Promise<unknown>): Promise<Refusal> {
  const error = await action.then(
    () => undefined,
    (e: unknown) => e
  )
  expect(error).toBeInstanceOf(Refusal)
  return error as Refusal
}

/** A lane's metrics and tracing, as service.ts makes them, for a lane of one end system driven by a test. */
export function laneTelemetry(db: Kysely<TestDatabase>, endSystem: string, client: EndSystemClient): SyncerTelemetry {
  return {
    metrics: new SyncerMetrics(new Registry(), {
      db: asSyncer(db),
      endSystems: [endSystem],
      clients: new Map([[endSystem, client]]),
      consumerLag: () => undefined,
      overdueVersions: async () => 0
    }),
    tracing: new Tracing('cif-syncer', [])
  }
}
