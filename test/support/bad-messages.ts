import { randomUUID } from 'node:crypto'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import type { Customer } from '../../src/contracts/customer.ts'
import { type CustomerEvent, customerEvent, customerEventTypes, MAX_CUSTOMER_EVENT_BYTES } from '../../src/contracts/customer-events.ts'
import { signEvent } from '../../src/contracts/event-signature.ts'
import { topics } from '../../src/contracts/topics.ts'
import type { DatabaseHandle } from '../../src/platform/database/index.ts'
import { createIdempotentProducer } from '../../src/platform/kafka.ts'
import type { Infrastructure } from '../../src/platform/local/infrastructure.ts'
import type { TestDatabase } from './database.ts'
import { devSigningKey } from './event-keys.ts'

// Messages nobody should put on cif.customer.events, put there directly: what the syncer does with each is the
// table in docs/reliability.md, "Bad messages on the topic". None may stop its partition: an event after it,
// same key, is delivered as promptly as ever.

export const badMessageKinds = [
  /** A real event again, as it is (same id). */
  'duplicate',
  /** An older version of a real customer again, signed by the CIF service's key, under a new id. */
  'older-version',
  /** A well-formed create for a CIF ID the CIF service never issued, unsigned. */
  'unknown-cif-unsigned',
  /** A signed update (version 2) for a CIF ID the syncer never saw a create of. */
  'unknown-cif-signed-update',
  'not-json',
  /** A real event padded past MAX_CUSTOMER_EVENT_BYTES (still valid JSON, still signed). */
  'oversize',
  /** A real event with its data changed after signing. */
  'wrong-signature',
  /** A real event again with no key. */
  'no-key',
  /** A real event again with no headers (no content-type, no traceparent). */
  'no-headers',
  /** A null value under a real customer's key. */
  'tombstone',
  /** A customer of its own: versions 1, 2 and 4; version 3 only when `fillGap` is called. */
  'version-gap'
] as const
export type BadMessageKind = (typeof badMessageKinds)[number]

/** What the syncer does with the message, as docs/reliability.md says. */
export type BadMessageOutcome = 'deduplicated' | 'kept as unreadable' | 'FAILED, no end system called' | 'held until the gap is filled'

export interface ProducedBadMessage {
  kind: BadMessageKind
  outcome: BadMessageOutcome
  /** The key it was produced under (null: none). */
  key: string | null
  /** The customer it is about. */
  cifId: string
  /**
   * A CIF ID made up here, which the CIF service never issued. `version-gap` delivers its customer to every
   * end system: an independent checker counts those records as this function's, not as invented by the syncer.
   */
  madeUp?: string
  /** `version-gap` only: produces the missing version 3, with no key and no headers (any partition). */
  fillGap?: () => Promise<void>
  /**
   * The events it put on the topic (or `fillGap` will) that the CIF service never made, each by its id: an
   * older version under a new id, and every event of a made-up customer. Copies of a real event are not listed.
   */
  newEvents: { eventId: string; cifId: string; version: number }[]
}

/** What producing needs of a stack: its Kafka, and its database to find real events in (a ProcessStack has both). */
export interface BadMessageTarget {
  infrastructure: Pick<Infrastructure, 'kafka'>
  database: DatabaseHandle<TestDatabase>
}

type Message = { key?: string; value?: string; headers?: Map<string, string> }

/**
 * Produces one bad message of `kind` onto cif.customer.events of `stack`, about `options.cifId` (a customer the
 * syncer stored) or, if not given, the customer whose event the syncer stored last. Resolves once Kafka has it.
 */
export async function produceBadMessage(
  stack: BadMessageTarget,
  kind: BadMessageKind,
  options: { cifId?: string; say?: (line: string) => void } = {}
): Promise<ProducedBadMessage> {
  const send = async (messages: Message[]): Promise<void> => {
    const producer = createIdempotentProducer(stack.infrastructure.kafka, `bad-message-${kind}`)
    try {
      // A key or value left out goes as null: a message with no key, a tombstone.
      await producer.send({ messages: messages.map((m) => ({ topic: topics.customerEvents, ...m })) })
    } finally {
      await producer.close()
    }
  }
  const produced = (
    outcome: BadMessageOutcome,
    key: string | null,
    cifId: string,
    newEvents: CustomerEvent[] = [],
    more: Partial<ProducedBadMessage> = {}
  ): ProducedBadMessage => {
    options.say?.(`bad message on ${topics.customerEvents}: ${kind} (${cifId}), expected ${outcome}`)
    const listed = newEvents.map((e) => ({ eventId: e.id, cifId: e.subject, version: e.customerversion }))
    return { kind, outcome, key, cifId, newEvents: listed, ...more }
  }

  if (kind === 'version-gap' || kind === 'unknown-cif-signed-update' || kind === 'unknown-cif-unsigned') {
    const cifId = madeUpCifId()
    const event = (version: number) =>
      version === 1
        ? customerEvent(customerEventTypes.created, madeUpCustomer(cifId, 1), 'branch-portal', devSigningKey)
        : customerEvent(customerEventTypes.updated, madeUpCustomer(cifId, version), 'branch-portal', devSigningKey, ['email'])
    const keyed = (e: object): Message => ({ key: cifId, value: JSON.stringify(e) })
    if (kind === 'unknown-cif-unsigned') {
      const created = event(1)
      const { signature: _signature, signaturekey: _key, ...unsigned } = created
      await send([keyed(unsigned)])
      return produced('kept as unreadable', cifId, cifId, [created])
    }
    if (kind === 'unknown-cif-signed-update') {
      const update = event(2)
      await send([keyed(update)])
      return produced('FAILED, no end system called', cifId, cifId, [update])
    }
    const versions = [1, 2, 3, 4].map(event)
    const [v1, v2, v3, v4] = versions as [CustomerEvent, CustomerEvent, CustomerEvent, CustomerEvent]
    await send([keyed(v1), keyed(v2), keyed(v4)])
    return produced('held until the gap is filled', cifId, cifId, versions, {
      madeUp: cifId,
      fillGap: () => send([{ value: JSON.stringify(v3) }])
    })
  }

  const real = await realEvent(stack, options.cifId, kind === 'older-version')
  const key = real.subject
  const same: Message = { key, value: JSON.stringify(real), headers: new Map([['content-type', 'application/cloudevents+json']]) }
  switch (kind) {
    case 'duplicate':
      await send([same])
      return produced('deduplicated', key, key)
    case 'no-key':
      await send([{ value: same.value, headers: same.headers }])
      return produced('deduplicated', null, key)
    case 'no-headers':
      await send([{ key, value: same.value }])
      return produced('deduplicated', key, key)
    case 'older-version': {
      const again = signEvent({ ...real, id: randomUUID() }, devSigningKey)
      await send([{ key, value: JSON.stringify(again) }])
      return produced('kept as unreadable', key, key, [again])
    }
    case 'not-json':
      await send([{ key, value: `not JSON: ${key} ${'{'.repeat(10)}` }])
      return produced('kept as unreadable', key, key)
    case 'oversize':
      // Within Kafka's own limit (1 MB by default), so that the syncer, not the broker, is what refuses it.
      await send([{ key, value: JSON.stringify(real).replace('{', `{${' '.repeat(2 * MAX_CUSTOMER_EVENT_BYTES)}`) }])
      return produced('kept as unreadable', key, key)
    case 'wrong-signature':
      await send([{ key, value: JSON.stringify({ ...real, data: { ...real.data, email: 'someone.else@example.net' } }) }])
      return produced('kept as unreadable', key, key)
    case 'tombstone':
      await send([{ key }])
      return produced('kept as unreadable', key, key)
  }
}

/**
 * An event the syncer stored, as it stored it (still signed: the signature covers canonical JSON): of `cifId`,
 * or of the customer stored last; its newest version, or with `older` the one before when there is one.
 */
async function realEvent(stack: BadMessageTarget, cifId: string | undefined, older: boolean): Promise<CustomerEvent> {
  let query = stack.database.db
    .selectFrom('sync_event')
    .select(['event', 'cif_id', 'customer_version'])
    .where('event', 'is not', null)
    .orderBy('received_at', 'desc')
    .orderBy('customer_version', 'desc')
  if (cifId) query = query.where('cif_id', '=', cifId)
  const newest = await query.executeTakeFirst()
  if (!newest) throw new Error(`no stored event${cifId ? ` of customer ${cifId}` : ''} to make a bad message of`)
  if (older && newest.customer_version > 1) {
    const before = await stack.database.db
      .selectFrom('sync_event')
      .select('event')
      .where('cif_id', '=', newest.cif_id)
      .where('customer_version', '<', newest.customer_version)
      .where('event', 'is not', null)
      .orderBy('customer_version', 'desc')
      .executeTakeFirst()
    if (before) return before.event as unknown as CustomerEvent
  }
  return newest.event as unknown as CustomerEvent
}

/** Far above any CIF ID the CIF service's sequence hands out in a test. */
function madeUpCifId(): string {
  return cifIdFromNumber(9_000_000_000 + Math.floor(Math.random() * 900_000_000))
}

function madeUpCustomer(cifId: string, version: number): Customer {
  const at = new Date().toISOString()
  return {
    cifId,
    version,
    legalForm: 'PERSON',
    firstName: 'Ada',
    lastName: 'Lovelace',
    dateOfBirth: '1985-12-10',
    email: `v${version}@example.com`,
    sourceSystem: 'branch-portal',
    createdAt: at,
    updatedAt: at
  }
}
