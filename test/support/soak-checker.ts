import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import { topics } from '../../src/contracts/topics.ts'
import { loadEndSystems } from '../../src/syncer/delivery/end-systems-config.ts'
import type { ProducedBadMessage } from './bad-messages.ts'
import type { ProcessStack } from './stack.ts'
import { TopicReader } from './topic-reader.ts'

/**
 * The soak's checker, written from outside the syncer: the truth is what the CIF service holds (each customer's
 * latest version, and the outbox's event of every version), and it is compared with what the end systems hold
 * and were called with (the simulator's records and its log of calls), what went over both topics, and the
 * syncer's own tables only where the rule is about them (every delivery settled, every call recorded).
 * `findProblems` is pure, so each rule is unit-tested with inputs that break it (test/unit/soak-checker.test.ts).
 */

export interface CustomerVersionEvent {
  eventId: string
  cifId: string
  version: number
}

export interface SimulatorCall {
  endSystem: string
  seq: number
  method: string
  cifId: string | undefined
  /** The version the payload named, for systems whose payload carries it; else the event the key names says. */
  version: number | undefined
  idempotencyKey: string | undefined
  status: number
  /** The system keeps this call's answer for its key: later calls with the key are replays of it. */
  kept: boolean
}

export interface SoakObservations {
  /** The end systems the syncer is configured to deliver to. */
  endSystems: string[]
  /** The CIF service's customers, each at its latest version. */
  customers: { cifId: string; version: number }[]
  /** The CIF service's outbox: the event of every version it made. */
  cifEvents: CustomerVersionEvent[]
  /** What was read from cif.customer.events (a relay may publish an event twice: at least once). */
  topicEvents: CustomerVersionEvent[]
  /** What was read from cif.sync.status. */
  statuses: { type: string; cifId: string; version: number }[]
  deliveries: { eventId: string; cifId: string; endSystem: string; version: number; state: string; remarks: string | null }[]
  /** The syncer's attempt rows, counted per event and end system. */
  attempts: { eventId: string; endSystem: string; count: number }[]
  /** What each end system holds at the end. */
  records: { endSystem: string; cifId: string; version: number }[]
  calls: SimulatorCall[]
  /** Calls the simulator's log dropped before they were read (its ring overwritten): the check would be partial. */
  callsUnread: number
  /**
   * Bad messages the soak itself put on cif.customer.events (bad-messages.ts), each with its documented
   * outcome: what they bring is checked against that outcome, never counted as the syncer's invention.
   */
  injected: Pick<ProducedBadMessage, 'kind' | 'outcome' | 'key' | 'cifId' | 'newEvents'>[]
  /** The key of each message the syncer kept as unreadable (`unreadable_message`). */
  unreadableKeys: (string | null)[]
}

export interface SoakFindings {
  /** The CIF's customers, and those made up on the topic by a bad message (delivered like any). */
  customers: number
  versions: number
  deliveries: number
  calls: number
  /** Calls answered from an idempotency key's first answer: a repeat, not stored again. */
  replays: number
  lost: number
  duplicates: number
  orderViolations: number
  invented: number
  /** Deliveries FAILED or BLOCKED, or in a not-sent state without remarks. */
  unexplained: number
  /** Deliveries left PENDING, IN_FLIGHT or RETRY_SCHEDULED after the drain. */
  stuck: number
  /** Calls the simulator answered with no attempt row for them in the syncer. */
  unrecordedCalls: number
  callsUnread: number
  /** Bad messages put on the events topic during the run. */
  injected: number
  /** The first problems found under each rule (20 at most each), in words (CIF IDs and versions only: no personal data). */
  problems: string[]
}

/** States that end a delivery without sending, on purpose, each with remarks saying why (delivery/states.ts). */
const notSentOnPurpose = new Set(['SUPERSEDED', 'SKIPPED', 'RETIRED'])
const unsettled = new Set(['PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED'])
const IN_SYNC = 'cif.sync.customer.in-sync'
/** Problems said in words, per rule: a flood of one kind (thousands stuck) must not hide another. */
const MAX_PROBLEMS_PER_RULE = 20

/** Every rule of the soak, over what was observed. */
export function findProblems(observed: SoakObservations): SoakFindings {
  // A customer made up on the topic (a version gap, then the missing version) is delivered like a CIF
  // customer: it joins the truth. The other events a bad message brought must reach no end system.
  const madeUp = observed.injected.filter((message) => message.outcome === 'held until the gap is filled')
  const refused = new Map(
    observed.injected
      .filter((message) => message.outcome !== 'held until the gap is filled')
      .flatMap((message) => message.newEvents.map((event) => [event.eventId, { ...event, outcome: message.outcome }] as const))
  )
  const seen = {
    ...observed,
    customers: [
      ...observed.customers,
      ...madeUp.map((message) => ({ cifId: message.cifId, version: Math.max(...message.newEvents.map((e) => e.version)) }))
    ],
    cifEvents: [...observed.cifEvents, ...madeUp.flatMap((message) => message.newEvents)],
    deliveries: observed.deliveries.filter((delivery) => !refused.has(delivery.eventId))
  }
  const problems: string[] = []
  const findings = {
    customers: seen.customers.length,
    versions: seen.customers.reduce((sum, c) => sum + c.version, 0),
    deliveries: seen.deliveries.length,
    calls: seen.calls.length,
    replays: 0,
    lost: 0,
    duplicates: 0,
    orderViolations: 0,
    invented: 0,
    unexplained: 0,
    stuck: 0,
    unrecordedCalls: 0,
    callsUnread: seen.callsUnread,
    injected: seen.injected.length,
    problems
  }
  type Counted = 'lost' | 'duplicates' | 'orderViolations' | 'invented' | 'unexplained' | 'stuck' | 'unrecordedCalls'
  const said: Partial<Record<Counted, number>> = {}
  const found = (rule: Counted, text: string, count = 1): void => {
    findings[rule] += count
    said[rule] = (said[rule] ?? 0) + 1
    if (said[rule] <= MAX_PROBLEMS_PER_RULE) problems.push(`${rule}: ${text}`)
  }
  if (seen.callsUnread > 0)
    problems.push(`the simulator's call log dropped ${seen.callsUnread} calls before they were read: the call rules are partial`)

  const latest = new Map(seen.customers.map((c) => [c.cifId, c.version]))
  const madeByCif = (cifId: string, version: number): boolean => version >= 1 && version <= (latest.get(cifId) ?? 0)
  const versionKey = (cifId: string, version: number) => `${cifId}:${version}`

  // The CIF's own events: exactly one per version it made, none for a version it did not.
  const cifEventById = new Map<string, CustomerVersionEvent>()
  const cifEventByVersion = new Map<string, string>()
  for (const event of seen.cifEvents) {
    cifEventById.set(event.eventId, event)
    if (!madeByCif(event.cifId, event.version))
      found('invented', `the CIF outbox has an event for ${event.cifId} v${event.version}, past its latest version`)
    const key = versionKey(event.cifId, event.version)
    if (cifEventByVersion.has(key)) found('duplicates', `the CIF outbox has two events for ${key}`)
    else cifEventByVersion.set(key, event.eventId)
  }
  const eventVersion = (eventId: string | undefined) => (eventId === undefined ? undefined : cifEventById.get(eventId))

  // The events topic: every event of the CIF there, nothing else, each as the CIF made it.
  const onTopic = new Set<string>()
  for (const event of seen.topicEvents) {
    const made = cifEventById.get(event.eventId)
    if (!made && refused.has(event.eventId)) continue
    if (!made) found('invented', `cif.customer.events has an event for ${event.cifId} v${event.version} the CIF never made`)
    else if (made.cifId !== event.cifId || made.version !== event.version) {
      found('invented', `cif.customer.events says ${event.cifId} v${event.version} for the CIF's event of ${made.cifId} v${made.version}`)
    }
    onTopic.add(event.eventId)
  }

  const deliveryOf = new Map<string, SoakObservations['deliveries'][number]>()
  for (const delivery of seen.deliveries) {
    const key = `${delivery.eventId}|${delivery.endSystem}`
    if (deliveryOf.has(key)) found('duplicates', `two deliveries of ${delivery.cifId} v${delivery.version} to ${delivery.endSystem}`)
    deliveryOf.set(key, delivery)
    if (!cifEventById.has(delivery.eventId)) found('invented', `a delivery of ${delivery.cifId} v${delivery.version} for an event the CIF never made`)
    if (unsettled.has(delivery.state))
      found('stuck', `the delivery of ${delivery.cifId} v${delivery.version} to ${delivery.endSystem} is ${delivery.state}`)
    else if (delivery.state !== 'SUCCESS' && !(notSentOnPurpose.has(delivery.state) && delivery.remarks)) {
      found(
        'unexplained',
        `the delivery of ${delivery.cifId} v${delivery.version} to ${delivery.endSystem} is ${delivery.state} (${delivery.remarks ?? 'no remarks'})`
      )
    }
  }

  // What the refused bad messages brought: FAILED deliveries that called no one, or nothing at all.
  for (const delivery of observed.deliveries) {
    const event = refused.get(delivery.eventId)
    if (!event) continue
    if (event.outcome !== 'FAILED, no end system called' || delivery.state !== 'FAILED') {
      found(
        'invented',
        `a delivery of ${delivery.cifId} v${delivery.version} to ${delivery.endSystem} is ${delivery.state}, for a bad message to be ${event.outcome}`
      )
    }
  }
  const unreadable = new Map<string | null, number>()
  for (const key of seen.unreadableKeys) unreadable.set(key, (unreadable.get(key) ?? 0) + 1)
  for (const message of seen.injected.filter((m) => m.outcome === 'kept as unreadable')) {
    const left = unreadable.get(message.key) ?? 0
    if (left === 0) found('lost', `a bad message (${message.kind}, key ${message.key}) was neither stored nor kept as unreadable`)
    else unreadable.set(message.key, left - 1)
  }

  // Every version the CIF made: published, and delivered to every end system (or not sent, on purpose).
  for (const { cifId, version: newest } of seen.customers) {
    for (let version = 1; version <= newest; version++) {
      const eventId = cifEventByVersion.get(versionKey(cifId, version))
      if (!eventId) {
        found('lost', `the CIF outbox has no event for ${cifId} v${version}`)
        continue
      }
      if (!onTopic.has(eventId)) found('lost', `${cifId} v${version} never reached cif.customer.events`)
      for (const endSystem of seen.endSystems) {
        if (!deliveryOf.has(`${eventId}|${endSystem}`)) found('lost', `the syncer has no delivery of ${cifId} v${version} to ${endSystem}`)
      }
    }
  }

  // The end systems: one record per customer, at its latest version, none for a customer the CIF does not have.
  const held = new Map<string, number>()
  for (const record of seen.records) {
    const key = `${record.endSystem}|${record.cifId}`
    held.set(key, (held.get(key) ?? 0) + 1)
    if (!latest.has(record.cifId)) found('invented', `${record.endSystem} holds a record for ${record.cifId}, a CIF ID the CIF does not have`)
    else if (record.version > latest.get(record.cifId)!)
      found('invented', `${record.endSystem} holds ${record.cifId} v${record.version}, past the CIF's latest`)
    else if (record.version < latest.get(record.cifId)!) {
      found('lost', `${record.endSystem} holds ${record.cifId} v${record.version}, not the latest v${latest.get(record.cifId)}`)
    }
  }
  for (const [key, count] of held) if (count > 1) found('duplicates', `${key.replace('|', ' holds ')}: ${count} records`, count - 1)
  for (const { cifId } of seen.customers) {
    for (const endSystem of seen.endSystems) if (!held.has(`${endSystem}|${cifId}`)) found('lost', `${endSystem} holds no record for ${cifId}`)
  }

  // The calls, in each system's order: replays counted, changes applied in version order, creates first.
  const answeredKeys = new Set<string>()
  const lastApplied = new Map<string, number>()
  const creates = new Map<string, number>()
  const callsPerDelivery = new Map<string, number>()
  for (const call of [...seen.calls].sort((a, b) => (a.endSystem === b.endSystem ? a.seq - b.seq : a.endSystem < b.endSystem ? -1 : 1))) {
    if (call.method === 'GET') continue // a read back (reconciliation), not a delivery
    const event = eventVersion(call.idempotencyKey?.split(':')[0])
    if (!event) {
      found('invented', `${call.endSystem} was called (${call.method}, seq ${call.seq}) for an event the CIF never made`)
      continue
    }
    const perDelivery = `${event.eventId}|${call.endSystem}`
    callsPerDelivery.set(perDelivery, (callsPerDelivery.get(perDelivery) ?? 0) + 1)
    // The simulator keeps a key's first answer below 500 and answers repeats with it.
    const replay = answeredKeys.has(`${call.endSystem}|${call.idempotencyKey}`)
    if (replay) {
      findings.replays++
      continue
    }
    // Only an answer the system kept makes later calls with the key replays: a 429 it gave before doing
    // anything is not kept, and the call after it is carried out (a create then, not a replay).
    if (call.kept) answeredKeys.add(`${call.endSystem}|${call.idempotencyKey}`)
    if (call.status < 200 || call.status > 299) continue
    const version = call.version ?? event.version
    const customer = `${call.endSystem}|${event.cifId}`
    const before = lastApplied.get(customer)
    if (before === undefined && call.method !== 'POST') {
      found('orderViolations', `${call.endSystem} got ${event.cifId} v${version} as a ${call.method} before any create`)
    }
    if (before !== undefined && version <= before) {
      found('orderViolations', `${call.endSystem} applied ${event.cifId} v${version} after v${before} (seq ${call.seq})`)
    }
    lastApplied.set(customer, Math.max(before ?? 0, version))
    if (call.method === 'POST') creates.set(customer, (creates.get(customer) ?? 0) + 1)
  }
  for (const [customer, count] of creates) if (count > 1) found('duplicates', `${customer.replace('|', ' created ')} ${count} times`, count - 1)

  // Every call the end systems saw has its attempt row: the transaction table misses none.
  const attempts = new Map(seen.attempts.map((a) => [`${a.eventId}|${a.endSystem}`, a.count]))
  for (const [perDelivery, calls] of callsPerDelivery) {
    const recorded = attempts.get(perDelivery) ?? 0
    if (calls > recorded) {
      const event = cifEventById.get(perDelivery.split('|')[0]!)!
      found(
        'unrecordedCalls',
        `${perDelivery.split('|')[1]} saw ${calls} calls for ${event.cifId} v${event.version}, the syncer recorded ${recorded} attempts`,
        calls - recorded
      )
    }
  }

  // The status topic: the latest version of every customer told in sync, and nothing told of a version never made.
  const inSync = new Set<string>()
  const refusedVersions = new Set([...refused.values()].map((event) => versionKey(event.cifId, event.version)))
  for (const status of seen.statuses) {
    if (!madeByCif(status.cifId, status.version) && !refusedVersions.has(versionKey(status.cifId, status.version)))
      found('invented', `cif.sync.status tells of ${status.cifId} v${status.version} (${status.type}), never made`)
    if (status.type === IN_SYNC) inSync.add(versionKey(status.cifId, status.version))
  }
  for (const { cifId, version } of seen.customers) {
    if (!inSync.has(versionKey(cifId, version))) found('lost', `no "in sync" status for ${cifId} v${version}`)
  }
  return findings
}

/** True when nothing the rules count was found, and the whole call log was read. */
export function passed(findings: SoakFindings): boolean {
  const { lost, duplicates, orderViolations, invented, unexplained, stuck, unrecordedCalls, callsUnread } = findings
  return lost + duplicates + orderViolations + invented + unexplained + stuck + unrecordedCalls + callsUnread === 0
}

/**
 * Reads each end system's call log from the simulator a page at a time, from where it left off, keeping what
 * the checker needs: read every few seconds during a run, so the simulator's bounded log never drops a call.
 */
export class CallCollector {
  readonly calls: SimulatorCall[] = []
  unread = 0
  readonly #after = new Map<string, number>()
  readonly #simulatorUrl: string
  readonly #systems: string[]

  constructor(simulatorUrl: string, systems: string[]) {
    this.#simulatorUrl = simulatorUrl
    this.#systems = systems
  }

  async collect(): Promise<void> {
    for (const endSystem of this.#systems) {
      for (;;) {
        const after = this.#after.get(endSystem) ?? 0
        const response = await fetch(`${this.#simulatorUrl}/systems/${endSystem}/calls?after=${after}&limit=10000`)
        if (!response.ok) throw new Error(`reading ${endSystem}'s calls failed: ${response.status}`)
        const page = (await response.json()) as { items: (SimulatorCall & { idempotencyKey?: string })[]; next: number | null }
        if (page.items.length > 0) {
          this.unread += page.items[0]!.seq - after - 1
          for (const { seq, method, cifId, version, idempotencyKey, status, kept } of page.items) {
            this.calls.push({ endSystem, seq, method, cifId, version, idempotencyKey, status, kept })
          }
          this.#after.set(endSystem, page.items.at(-1)!.seq)
        }
        if (page.next === null) break
      }
    }
  }
}

/** The end systems the stack's syncers deliver to (the simulator also runs lending, which no shipped file names). */
export function configuredEndSystems(stack: ProcessStack): string[] {
  return loadEndSystems(stack.env.SYNCER_END_SYSTEMS_FILE!, stack.env).map((system) => system.name)
}

/** Reads a topic until `enough` holds of what was kept or nothing new came for `quietMs`. */
async function readTopic<T>(
  stack: ProcessStack,
  topic: string,
  keep: (value: any) => T,
  enough: (kept: T[]) => boolean,
  quietMs: number
): Promise<T[]> {
  const reader = await TopicReader.open(stack.infrastructure.kafka, topic, keep)
  try {
    // A message that is not JSON (a bad message put there on purpose) has no value to keep.
    const values = () => reader.messages.map((m) => m.value as T | undefined).filter((value) => value !== undefined)
    let count = -1
    let quietSince = Date.now()
    while (!enough(values())) {
      if (reader.messages.length !== count) [count, quietSince] = [reader.messages.length, Date.now()]
      else if (Date.now() - quietSince > quietMs) break
      await sleep(500)
    }
    return values()
  } finally {
    await reader.close()
  }
}

/**
 * Everything the checker compares, read once the stack has drained. `calls` has read the simulator's log to
 * its end; `injected` are the bad messages the run put on the events topic.
 */
export async function observe(stack: ProcessStack, calls: CallCollector, injected: SoakObservations['injected'] = []): Promise<SoakObservations> {
  const { db } = stack.database
  const endSystems = configuredEndSystems(stack)
  const customers = await db.selectFrom('customer').select(['cif_id as cifId', 'version']).execute()
  const { rows: cifEvents } = await sql<CustomerVersionEvent>`
    select event_id as "eventId", message_key as "cifId", (payload::jsonb ->> 'customerversion')::int as version
    from outbox_message where topic = ${topics.customerEvents}`.execute(db)
  const { rows: deliveries } = await sql<SoakObservations['deliveries'][number]>`
    select event_id as "eventId", cif_id as "cifId", end_system as "endSystem", customer_version as version, state, remarks
    from delivery where reconciliation_run_id is null`.execute(db)
  const { rows: attempts } = await sql<{ eventId: string; endSystem: string; count: number }>`
    select event_id as "eventId", end_system as "endSystem", count(*)::int as count from delivery_attempt group by 1, 2`.execute(db)
  const unreadable = await db.selectFrom('unreadable_message').select('message_key').where('topic', '=', topics.customerEvents).execute()
  const { rows: published } = await sql<{ n: number }>`select count(*)::int as n from sync_status_update where published_at is not null`.execute(db)
  const records: SoakObservations['records'] = []
  for (const endSystem of endSystems) {
    const held = (await (await fetch(`${stack.simulatorUrl}/systems/${endSystem}/records`)).json()) as { cifId: string; version: number }[]
    for (const { cifId, version } of held) records.push({ endSystem, cifId, version })
  }
  await calls.collect()
  const distinctIds = (kept: CustomerVersionEvent[]) => new Set(kept.map((e) => e.eventId)).size
  const topicEvents = await readTopic(
    stack,
    topics.customerEvents,
    (value): CustomerVersionEvent => ({ eventId: value.id, cifId: value.subject, version: value.customerversion }),
    (kept) => distinctIds(kept) >= cifEvents.length + injected.reduce((sum, message) => sum + message.newEvents.length, 0),
    30_000
  )
  const statuses = await readTopic(
    stack,
    topics.syncStatus,
    (value) => ({ type: value.type as string, cifId: value.data.cifId as string, version: value.data.customerVersion as number }),
    (kept) => kept.length >= published[0]!.n,
    30_000
  )
  return {
    endSystems,
    customers,
    cifEvents,
    topicEvents,
    statuses,
    deliveries,
    attempts,
    records,
    calls: calls.calls,
    callsUnread: calls.unread,
    injected,
    unreadableKeys: unreadable.map((row) => row.message_key)
  }
}
