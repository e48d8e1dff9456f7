import type { Message } from '@platformatic/kafka'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { sql } from 'kysely'
import { type CustomerEvent, customerEventSchema, customerEventTypes, MAX_CUSTOMER_EVENT_BYTES } from '../../contracts/customer-events.ts'
import { checkEventSignature, type TrustedEventKeys } from '../../contracts/event-signature.ts'
import { lagRemark } from '../delivery/attempt-policy.ts'
import { blockBehindFailures, holdBehindMissingVersions, reconsiderBlocked, remarkSql, supersedeArrivedLate } from '../delivery/delivery-store.ts'
import { initialState } from '../delivery/states.ts'
import { erasedAmong } from '../erasure.ts'
import type { DeliveryOperation, SyncerDb, SyncerTx } from '../tables.ts'

// What the intake stores from Kafka, in one transaction per batch: each customer event once (a redelivered
// one finds its id), with one delivery per end system, and each message that is not a readable customer
// event kept as unreadable, never dropped. Only events the CIF service signed (with a key in
// `trustedKeys`) are read as events: anyone else who can produce to the topic is kept out. An event of a
// customer the syncer erased (one published before the erasure and read after it) is not stored at all:
// nothing of it may be sent, and a row of it would say the customer had a version no end system got.

export type StringMessage = Message<string, string, string, string>

const ajv = new Ajv2020({ allErrors: false, strict: false })
addFormats.default(ajv)
const validators = Object.values(customerEventTypes).map((type) => [type, ajv.compile(customerEventSchema(type))] as const)

export type ReadMessage = { event: CustomerEvent } | { reason: string; notSigned?: true }

/**
 * A message as a CIF event, or why it is not one; `notSigned` when no trusted key signed it (forged, or
 * signed with a key the syncer was not told of): worth a warning of its own.
 */
export function readCustomerEvent(value: string | null | undefined, trustedKeys: TrustedEventKeys): ReadMessage {
  // A null value is a tombstone: compaction's way of deleting a key, which a customer event never is.
  if (value === null || value === undefined) return { reason: 'a tombstone (no value): not a customer event' }
  // Measured before parsing: a hostile message costs no more than its bytes.
  const bytes = Buffer.byteLength(value, 'utf8')
  if (bytes > MAX_CUSTOMER_EVENT_BYTES) {
    return { reason: `larger than a customer event can be (${bytes} bytes, at most ${MAX_CUSTOMER_EVENT_BYTES}): not read` }
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(value)
  } catch {
    return { reason: 'not JSON' }
  }
  const type = (parsed as { type?: unknown })?.type
  const validate = validators.find(([t]) => t === type)?.[1]
  if (!validate) return { reason: `not a CIF customer event (type ${JSON.stringify(type)?.slice(0, 60)})` }
  // Before the schema, so that a forged event is called what it is, however it is shaped.
  const signature = checkEventSignature(parsed, trustedKeys)
  if (!signature.signed) return { reason: signature.reason, notSigned: true }
  if (!validate(parsed)) {
    const first = validate.errors?.[0]
    return { reason: `does not match the ${String(type)} schema: ${first?.instancePath || '/'} ${first?.message}` }
  }
  return { event: parsed as CustomerEvent }
}

export interface StoredBatch {
  /** The end systems that got new deliveries. */
  endSystems: Set<string>
  /** The messages kept as unreadable because no trusted key signed them (see readCustomerEvent). */
  notSigned: { message: StringMessage; reason: string }[]
  /** Every message kept as unreadable, those not signed included, with the reason. */
  unreadable: { message: StringMessage; reason: string }[]
  /** Signed events kept as unreadable because another event of their customer version is stored. */
  versionTaken: { message: StringMessage; reason: string }[]
  /** The events left unstored because their customer was erased. */
  ofErased: { message: StringMessage; eventId: string }[]
}

/**
 * Stores a batch of messages, reading as events only those signed by one of `trustedKeys`; each event with
 * its message's traceparent in `traceparents` (the intake's span).
 */
export async function storeEvents(
  db: SyncerDb,
  batch: StringMessage[],
  endSystems: string[],
  trustedKeys: TrustedEventKeys,
  traceparents?: ReadonlyMap<StringMessage, string>
): Promise<StoredBatch> {
  const events: { event: CustomerEvent; message: StringMessage }[] = []
  const unreadable: { message: StringMessage; reason: string }[] = []
  const notSigned: StoredBatch['notSigned'] = []
  for (const message of batch) {
    const read = readCustomerEvent(message.value, trustedKeys)
    if ('event' in read) events.push({ event: read.event, message })
    else {
      unreadable.push({ message, reason: read.reason })
      if (read.notSigned) notSigned.push({ message, reason: read.reason })
    }
  }
  let erased = new Set<string>()
  const versionTaken: StoredBatch['versionTaken'] = []
  const endSystemsWithDeliveries = await db.transaction().execute(async (trx) => {
    erased = await erasedAmong(
      trx,
      events.map(({ event }) => event.subject)
    )
    const wanted = events.filter(({ event }) => !erased.has(event.subject))
    if (wanted.length === 0) {
      await keepUnreadable(trx, unreadable)
      return new Set<string>()
    }
    // One array per column, unnested: a statement of the same text and 11 parameters whatever the batch's
    // size, where a multi-row VALUES list had 10 per event for Kysely to build and PostgreSQL to parse and plan.
    // Nothing is stored of an event whose id is stored (a redelivery) or whose version is (one version, one
    // event: the unique index of migration 0014).
    const { rows: stored } = await sql<{
      event_id: string
      cif_id: string
      event_type: string
      customer_version: number
      event_time: Date
      received_at: Date
    }>`
      insert into sync_event (event_id, cif_id, event_type, customer_version, owner_source_system, acting_source_system,
        event, event_time, kafka_partition, kafka_offset, traceparent)
      select * from unnest(
        ${wanted.map(({ event }) => event.id)}::uuid[], ${wanted.map(({ event }) => event.subject)}::text[],
        ${wanted.map(({ event }) => event.type)}::text[], ${wanted.map(({ event }) => event.customerversion)}::integer[],
        ${wanted.map(({ event }) => event.data.sourceSystem)}::text[], ${wanted.map(({ event }) => event.sourcesystem)}::text[],
        ${wanted.map(({ event }) => JSON.stringify(event))}::jsonb[], ${wanted.map(({ event }) => event.time)}::timestamptz[],
        ${wanted.map(({ message }) => message.partition)}::integer[], ${wanted.map(({ message }) => String(message.offset))}::bigint[],
        ${wanted.map(({ message }) => traceparents?.get(message) ?? null)}::text[])
      on conflict do nothing
      returning event_id, cif_id, event_type, customer_version, event_time, received_at`.execute(trx)
    if (stored.length < wanted.length) versionTaken.push(...(await versionsTaken(trx, wanted, stored)))
    await keepUnreadable(trx, [...unreadable, ...versionTaken])
    if (stored.length === 0 || endSystems.length === 0) return new Set<string>()
    // Each stored event once per end system, in that order (the ids ascend as they did, event by event). One
    // for a paused system says so from the start.
    const { rows: ids } = await sql<{ id: string }>`
      insert into delivery (event_id, cif_id, end_system, operation, customer_version, state, remarks, event_time)
      select e.event_id, e.cif_id, s.end_system, e.operation, e.customer_version, ${initialState},
        coalesce((select ${remarkSql('paused', { operator: sql`p.paused_by`, reason: sql`p.reason` })}
                  from end_system_pause p where p.end_system = s.end_system), e.remarks), e.event_time
      from unnest(
          ${stored.map((event) => event.event_id)}::uuid[], ${stored.map((event) => event.cif_id)}::text[],
          ${stored.map((event) => (event.event_type === customerEventTypes.created ? 'create' : 'update') satisfies DeliveryOperation)}::text[],
          ${stored.map((event) => event.customer_version)}::integer[],
          ${stored.map((event) => lagRemark(event.event_time, event.received_at))}::text[],
          ${stored.map((event) => event.event_time)}::timestamptz[]
        ) with ordinality as e(event_id, cif_id, operation, customer_version, remarks, event_time, n)
        cross join unnest(${endSystems}::text[]) with ordinality as s(end_system, n)
      order by e.n, s.n
      returning id`.execute(trx)
    const deliveryIds = ids.map((row) => row.id)
    // Versions out of their place (a message that arrived late, or early): an older update never goes over a
    // newer version, and a version after a gap waits for the missing one, which, once here, releases it.
    await supersedeArrivedLate(trx, deliveryIds)
    await blockBehindFailures(trx, { deliveryIds })
    await holdBehindMissingVersions(trx, deliveryIds)
    await reconsiderBlocked(trx, { cifIds: [...new Set(stored.map((event) => event.cif_id))] }, 'versionArrived')
    return new Set(endSystems)
  })
  const ofErased = events.filter(({ event }) => erased.has(event.subject)).map(({ event, message }) => ({ message, eventId: event.id }))
  return { endSystems: endSystemsWithDeliveries, notSigned, unreadable: [...unreadable, ...versionTaken], versionTaken, ofErased }
}

/**
 * Of the events not stored, those whose version is stored as another event (not a redelivery of the stored
 * one), each with the reason it is kept as unreadable.
 */
async function versionsTaken(
  trx: SyncerTx,
  wanted: { event: CustomerEvent; message: StringMessage }[],
  stored: { event_id: string }[]
): Promise<{ message: StringMessage; reason: string }[]> {
  const storedNow = new Set(stored.map((row) => row.event_id))
  const unstored = wanted.filter(({ event }) => !storedNow.has(event.id))
  const { rows: holders } = await sql<{ event_id: string; cif_id: string; customer_version: number }>`
    select e.event_id, e.cif_id, e.customer_version from sync_event e
    join unnest(${unstored.map(({ event }) => event.subject)}::text[], ${unstored.map(({ event }) => event.customerversion)}::integer[])
      as u(cif_id, customer_version) on e.cif_id = u.cif_id and e.customer_version = u.customer_version`.execute(trx)
  return unstored.flatMap(({ event, message }) => {
    const holder = holders.find((row) => row.cif_id === event.subject && row.customer_version === event.customerversion)
    if (!holder || holder.event_id === event.id) return []
    return [
      {
        message,
        reason: `version ${event.customerversion} of customer ${event.subject} is already stored as event ${holder.event_id}: one version, one event`
      }
    ]
  })
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint): trying again cannot help. */
export function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code
  return typeof code === 'string' && /^2[23]/.test(code)
}

/** Text PostgreSQL can hold: no NUL, no half surrogate pairs. */
function storable(text: string): string {
  return text.replaceAll('\u0000', '\\u0000').toWellFormed()
}

export async function keepUnreadable(db: SyncerDb, unreadable: { message: StringMessage; reason: string }[]): Promise<void> {
  if (unreadable.length === 0) return
  await db
    .insertInto('unreadable_message')
    .values(
      unreadable.map(({ message, reason }) => ({
        topic: message.topic,
        kafka_partition: message.partition,
        kafka_offset: message.offset,
        message_key: message.key === undefined || message.key === null ? null : storable(message.key),
        message_value: storable((message.value ?? '').slice(0, MAX_CUSTOMER_EVENT_BYTES)),
        reason: storable(reason)
      }))
    )
    .onConflict((oc) => oc.doNothing())
    .execute()
}
