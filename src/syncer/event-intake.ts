import { setTimeout as sleep } from 'node:timers/promises'
import type { Message, MessagesStream } from '@platformatic/kafka'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { customerEventSchema, customerEventTypes, type CustomerEvent } from '../cif/customer-events.ts'
import type { Db } from '../platform/database/index.ts'
import { describeError } from '../platform/errors.ts'
import { createConsumer, topics, type StringConsumer } from '../platform/kafka.ts'
import type { Logger } from '../platform/logger.ts'
import { lagRemark } from './attempt-policy.ts'
import { blockBehindFailures } from './delivery-store.ts'

type StringMessage = Message<string, string, string, string>

const ajv = new Ajv2020({ allErrors: false, strict: false })
addFormats.default(ajv)
const validators = Object.values(customerEventTypes).map((type) => [type, ajv.compile(customerEventSchema(type))] as const)

/** A message as a CIF event, or why it is not one. */
export function readCustomerEvent(value: string): { event: CustomerEvent } | { reason: string } {
  let parsed: unknown
  try {
    parsed = JSON.parse(value)
  } catch {
    return { reason: 'not JSON' }
  }
  const type = (parsed as { type?: unknown })?.type
  const validate = validators.find(([t]) => t === type)?.[1]
  if (!validate) return { reason: `not a CIF customer event (type ${JSON.stringify(type)?.slice(0, 60)})` }
  if (!validate(parsed)) {
    const first = validate.errors?.[0]
    return { reason: `does not match the ${String(type)} schema: ${first?.instancePath || '/'} ${first?.message}` }
  }
  return { event: parsed as CustomerEvent }
}

export interface EventIntakeOptions {
  db: Db
  brokers: string[]
  groupId: string
  endSystems: string[]
  log: Logger
  /** Called after new deliveries are stored, with the end systems that have some. */
  onStored: (endSystems: Set<string>) => void
  batchSize?: number
}

/**
 * Takes CIF events from Kafka and stores each, with one delivery per end system, in one transaction;
 * only then commits the offsets. A redelivered message finds its event id stored and adds nothing. No end
 * system is called here, so a slow one never holds the consumer past its poll interval.
 */
export class EventIntake {
  readonly #options: EventIntakeOptions
  readonly #batchSize: number
  #consumer: StringConsumer | undefined
  #stream: MessagesStream<string, string, string, string> | undefined
  #buffer: StringMessage[] = []
  #draining: Promise<void> | undefined
  #stopped = false
  #restarting = false

  constructor(options: EventIntakeOptions) {
    this.#options = options
    this.#batchSize = options.batchSize ?? 500
  }

  async start(): Promise<void> {
    const consumer = createConsumer(this.#options.brokers, this.#options.groupId, 'cif-syncer-intake')
    // The client gives up on a broker that stays away, and reports a failed group rejoin on the consumer
    // itself; a syncer must not give up. Start over with a new member: whatever was not committed is read
    // again, and found stored if it was.
    consumer.on('error', (error) => this.#failed(error))
    let stream: MessagesStream<string, string, string, string>
    try {
      stream = await consumer.consume({ topics: [topics.customerEvents], mode: 'committed', fallbackMode: 'earliest', maxWaitTime: 50 })
    } catch (error) {
      await consumer.close(true).catch(() => {})
      throw error
    }
    if (this.#stopped) {
      await stream.close().catch(() => {})
      await consumer.close().catch(() => {})
      return
    }
    this.#consumer = consumer
    this.#stream = stream
    stream.on('data', (message: StringMessage) => {
      this.#buffer.push(message)
      if (this.#buffer.length >= this.#batchSize) stream.pause()
      this.#drain()
    })
    stream.once('error', (error) => this.#failed(error))
  }

  #failed(error: unknown): void {
    if (this.#restarting || this.#stopped) return
    this.#restarting = true
    this.#options.log.warn({ error: describeError(error) }, 'Kafka consumer failed; joining the group again')
    void this.#restart().finally(() => {
      this.#restarting = false
    })
  }

  async #restart(): Promise<void> {
    // A stream still alive when the consumer failed may wait forever on a broker that is gone: give its
    // closing a few seconds, then go on (the member it leaves behind times out of the group by itself).
    await settleWithin(this.#stream?.close(), 5000)
    await settleWithin(this.#consumer?.close(true), 5000)
    this.#buffer = []
    for (let failures = 0; !this.#stopped; failures++) {
      await sleep(Math.min(5000, 250 * 2 ** Math.min(failures, 5)))
      if (this.#stopped) return
      try {
        await this.start()
        return
      } catch (error) {
        if (failures % 10 === 0) this.#options.log.warn({ error: describeError(error), failures }, 'Kafka still away; trying again')
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#stream?.pause()
    await this.#draining
    await this.#stream?.close().catch(() => {})
    await this.#consumer?.close().catch(() => {})
  }

  #drain(): void {
    if (this.#draining) return
    this.#draining = (async () => {
      while (this.#buffer.length && !this.#stopped) {
        const batch = this.#buffer.splice(0, this.#batchSize)
        // Never commit what was not stored: stopping mid-way leaves the batch to be read again.
        if (await this.#storeUntilDone(batch)) await this.#commit(batch)
      }
      if (!this.#stopped) this.#stream?.resume()
    })().finally(() => {
      this.#draining = undefined
      if (this.#buffer.length && !this.#stopped) this.#drain()
    })
  }

  /**
   * PostgreSQL away: keep the batch, keep trying, commit nothing. A batch the database refuses as data
   * (a value it cannot hold) is stored one message at a time, and the message it refuses is kept as
   * unreadable, so that one bad message never stops the topic.
   */
  async #storeUntilDone(batch: StringMessage[]): Promise<boolean> {
    const { db, endSystems, log, onStored } = this.#options
    const store = async (messages: StringMessage[]): Promise<void> => {
      const systems = await storeEvents(db, messages, endSystems)
      if (systems.size) onStored(systems)
    }
    for (let failures = 0; !this.#stopped; failures++) {
      try {
        try {
          await store(batch)
        } catch (error) {
          if (!isDataError(error)) throw error
          for (const message of batch) {
            await store([message]).catch(async (refused: unknown) => {
              if (!isDataError(refused)) throw refused
              await keepUnreadable(db, [{ message, reason: `refused by the database: ${describeError(refused, 300)}` }])
            })
          }
        }
        return true
      } catch (error) {
        if (failures % 20 === 0) log.warn({ error: describeError(error), failures }, 'cannot store events; retrying')
        await sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)))
      }
    }
    // Stopping: the batch is not committed, so it is read again by whoever takes the partitions.
    return false
  }

  async #commit(batch: StringMessage[]): Promise<void> {
    const last = new Map<number, StringMessage>()
    for (const message of batch) last.set(message.partition, message)
    try {
      await Promise.all([...last.values()].map((message) => message.commit()))
    } catch (error) {
      // The group moved on (a rebalance): whoever owns the partition now gets these again and finds them stored.
      this.#options.log.warn({ error: describeError(error) }, 'offset commit failed; the events will be seen again')
    }
  }
}

/** Stores a batch of messages; returns the end systems that got new deliveries. */
export async function storeEvents(db: Db, batch: StringMessage[], endSystems: string[]): Promise<Set<string>> {
  const events: { event: CustomerEvent; message: StringMessage }[] = []
  const unreadable: { message: StringMessage; reason: string }[] = []
  for (const message of batch) {
    const read = readCustomerEvent(message.value ?? '')
    if ('event' in read) events.push({ event: read.event, message })
    else unreadable.push({ message, reason: read.reason })
  }
  return db.transaction().execute(async (trx) => {
    await keepUnreadable(trx, unreadable)
    if (events.length === 0) return new Set<string>()
    const stored = await trx
      .insertInto('sync_event')
      .values(
        events.map(({ event, message }) => ({
          event_id: event.id,
          cif_id: event.subject,
          event_type: event.type,
          customer_version: event.customerversion,
          owner_source_system: event.data.sourceSystem,
          acting_source_system: event.sourcesystem,
          event: JSON.stringify(event),
          event_time: event.time,
          kafka_partition: message.partition,
          kafka_offset: message.offset
        }))
      )
      .onConflict((oc) => oc.column('event_id').doNothing())
      .returning(['event_id', 'cif_id', 'event_type', 'customer_version', 'event_time', 'received_at'])
      .execute()
    if (stored.length === 0 || endSystems.length === 0) return new Set<string>()
    const deliveries = stored.flatMap((event) =>
      endSystems.map((endSystem) => ({
        event_id: event.event_id,
        cif_id: event.cif_id,
        end_system: endSystem,
        operation: event.event_type === customerEventTypes.created ? ('create' as const) : ('update' as const),
        customer_version: event.customer_version,
        state: 'PENDING' as const,
        remarks: lagRemark(event.event_time, event.received_at)
      }))
    )
    const ids = await trx.insertInto('delivery').values(deliveries).returning('id').execute()
    await blockBehindFailures(trx, ids.map((row) => row.id))
    return new Set(endSystems)
  })
}

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint): trying again cannot help. */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code
  return typeof code === 'string' && /^2[23]/.test(code)
}

/** Text PostgreSQL can hold: no NUL, no half surrogate pairs. */
function storable(text: string): string {
  return text.replaceAll('\u0000', '\\u0000').toWellFormed()
}

async function keepUnreadable(db: Db, unreadable: { message: StringMessage; reason: string }[]): Promise<void> {
  if (unreadable.length === 0) return
  await db
    .insertInto('unreadable_message')
    .values(
      unreadable.map(({ message, reason }) => ({
        topic: message.topic,
        kafka_partition: message.partition,
        kafka_offset: message.offset,
        message_key: message.key === undefined || message.key === null ? null : storable(message.key),
        message_value: storable((message.value ?? '').slice(0, 100_000)),
        reason: storable(reason)
      }))
    )
    .onConflict((oc) => oc.doNothing())
    .execute()
}

async function settleWithin(promise: Promise<unknown> | undefined, ms: number): Promise<void> {
  if (!promise) return
  const timer = sleep(ms, undefined, { ref: false })
  await Promise.race([promise.catch(() => {}), timer])
}
