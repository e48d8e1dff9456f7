import { setTimeout as sleep } from 'node:timers/promises'
import type { Admin, MessagesStream } from '@platformatic/kafka'
import type { TrustedEventKeys } from '../../contracts/event-signature.ts'
import { topics } from '../../contracts/topics.ts'
import { settleWithin, withDeadline } from '../../platform/deadline.ts'
import { describeError } from '../../platform/errors.ts'
import { createConsumer, createProbe, type KafkaCluster, kafkaAnswers, type StringConsumer } from '../../platform/kafka.ts'
import type { Logger } from '../../platform/logger.ts'
import { type Periodic, startPeriodic } from '../../platform/periodic.ts'
import { type Backoff, backoffMs, FailureLog } from '../../platform/retry.ts'
import { endSpan, type Span, SpanKind, TRACEPARENT, traceparentOf } from '../../platform/tracing.ts'
import type { SyncerTelemetry } from '../metrics.ts'
import type { SyncerDb } from '../tables.ts'
import { isDataError, keepUnreadable, type StringMessage, storeEvents } from './event-store.ts'
import { judgeIntake } from './intake-watchdog.ts'

export interface EventIntakeOptions {
  db: SyncerDb
  kafka: KafkaCluster
  groupId: string
  endSystems: string[]
  /** The CIF service's keys: a message signed by none of them is kept as unreadable, never delivered. */
  trustedEventKeys: TrustedEventKeys
  log: Logger
  /** Called after new deliveries are stored, with the end systems that have some. */
  onStored: (endSystems: Set<string>) => void
  /** No progress for this long (see intake-watchdog.ts): the consumer is replaced by a new one. */
  stallMs: number
  /** Readiness fails once the intake has been unable to consume for this long. */
  unreadyAfterMs: number
  telemetry: SyncerTelemetry
  batchSize?: number
}

export type IntakeState = 'starting' | 'consuming' | 'recovering' | 'stopped'

/** What `/health/ready` says of the intake. */
export interface IntakeHealth {
  up: boolean
  state: IntakeState
  /** In this state since. */
  since: string
  /** Since when it has been unable to consume (recovering, or its stream silent), if it is. */
  unableSince: string | null
  /** How long ago the stream last had a fetch answered; several times a second when all is well. */
  lastFetchAgeMs: number | null
  /** Events on this syncer's partitions beyond the committed offsets, at the last look; null when Kafka could not say. */
  lag: number | null
  partitions: number
  /** How often the stream or the consumer was started over since the process started. */
  restarts: number
  lastRestart: { at: string; reason: string } | null
}

/** A wait for the group that outlasts this has gone wrong: the broker holds a join for up to the rebalance timeout (30 s, platform/kafka.ts). */
const JOIN_TIMEOUT_MS = 45_000
const CLOSE_TIMEOUT_MS = 5000
/** The broker holds an empty fetch at most 50 ms (maxWaitTime), so a stream silent this long is not consuming. */
const FETCH_SILENCE_MS = 5000
const COMMIT_TIMEOUT_MS = 10_000
const STOP_DRAIN_TIMEOUT_MS = 15_000
/** Asking whether Kafka answers costs it one metadata request: every second at most, so the intake is back within a second of the broker. */
const KAFKA_PROBE_BACKOFF: Backoff = { initialMs: 250, maxMs: 1000 }
const STORE_BACKOFF: Backoff = { initialMs: 100, maxMs: 5000 }

/**
 * One stream of the consumer and what it has read but not yet stored. A restart abandons the whole
 * session, so nothing an old stream left waiting (a commit the client never settles, a batch being
 * stored) can hold up the next one: storing is idempotent, and what was not committed is read again.
 */
class IntakeSession {
  readonly openedAt = Date.now()
  lastFetchAt: number | undefined
  /** A paused stream fetches nothing while its batch is stored and committed: a stored batch is progress too. */
  lastStoredAt: number | undefined
  storingSince: number | undefined
  buffer: StringMessage[] = []
  draining: Promise<void> | undefined
  closed = false
  readonly stream: MessagesStream<string, string, string, string>

  constructor(stream: MessagesStream<string, string, string, string>) {
    this.stream = stream
  }

  async close(): Promise<void> {
    this.closed = true
    await settleWithin(this.stream.close(), CLOSE_TIMEOUT_MS)
  }
}

/**
 * Takes CIF events from Kafka and stores each, with one delivery per end system, in one transaction;
 * only then commits the offsets. A redelivered message finds its event id stored and adds nothing. No end
 * system is called here, so a slow one never holds the consumer past its poll interval.
 *
 * It never gives up on Kafka. A failed stream is reopened once Kafka answers, on the same consumer while
 * that is still a live member of the group: the broker knows the member when it is back, so the group
 * settles at once instead of waiting for a session to expire. A consumer that failed itself, is no longer
 * a member, or could not give a stream back is replaced by a new one. A watchdog looks every few seconds
 * for a stream that stopped without saying so (see intake-watchdog.ts) and replaces its consumer too.
 */
export class EventIntake {
  readonly #options: EventIntakeOptions
  readonly #batchSize: number
  readonly #probe: Admin
  #consumer: StringConsumer | undefined
  #session: IntakeSession | undefined
  #recovering: Promise<void> | undefined
  #state: { state: IntakeState; since: number } = { state: 'starting', since: Date.now() }
  #unableSince: number | undefined
  /** Marked when the consumer itself failed or will not give a stream back: the recovery replaces it. */
  #consumerToReplace: StringConsumer | undefined
  #restarts = 0
  #lastRestart: { at: number; reason: string } | undefined
  #lag: { waiting: number; byPartition: Map<number, number>; committed: string; committedMovedAt: number } | undefined
  #kafkaAnsweringSince: number | undefined
  #watchdog: Periodic | undefined

  constructor(options: EventIntakeOptions) {
    this.#options = options
    this.#batchSize = options.batchSize ?? 500
    this.#probe = createProbe(options.kafka, 2000)
  }

  /** Joins the group and starts consuming; fails if Kafka cannot be reached now (the process then does not start). */
  async start(): Promise<void> {
    this.#consumer = this.#newConsumer()
    try {
      this.#session = await this.#openSession(this.#consumer)
    } catch (error) {
      await closeConsumer(this.#consumer)
      this.#consumer = undefined
      throw error
    }
    this.#consumingIfNothingAssigned()
    const { stallMs } = this.#options
    this.#watchdog = startPeriodic(Math.min(5000, Math.max(100, stallMs / 3)), () => this.#watch())
  }

  async stop(): Promise<void> {
    this.#setState('stopped')
    await this.#watchdog?.stop()
    if (this.#recovering) {
      // A recovery may be waiting on a join for up to its bound: closing the consumer ends that wait.
      if (this.#consumer) await closeConsumer(this.#consumer)
      await this.#recovering
    }
    const session = this.#session
    session?.stream.pause()
    // The batch under way is stored and committed, unless the database hangs: what is not committed is read again.
    await settleWithin(session?.draining, STOP_DRAIN_TIMEOUT_MS)
    await session?.close()
    if (this.#consumer) await closeConsumer(this.#consumer)
    await this.#probe.close().catch(() => {})
  }

  health(now = Date.now()): IntakeHealth {
    // A store that never ends (a lock, a connection that died without a word) is not consuming either.
    const unable = this.#unableSince ?? this.#silentSince(now) ?? this.#session?.storingSince
    const lastFetchAt = this.#session?.lastFetchAt
    return {
      up: unable === undefined || now - unable < this.#options.unreadyAfterMs,
      state: this.#state.state,
      since: new Date(this.#state.since).toISOString(),
      unableSince: unable === undefined ? null : new Date(unable).toISOString(),
      lastFetchAgeMs: lastFetchAt === undefined ? null : now - lastFetchAt,
      lag: this.#lag?.waiting ?? null,
      partitions: this.#assignedPartitions().length,
      restarts: this.#restarts,
      lastRestart: this.#lastRestart ? { at: new Date(this.#lastRestart.at).toISOString(), reason: this.#lastRestart.reason } : null
    }
  }

  /** Messages waiting per partition of this syncer's at the watchdog's last look; undefined when Kafka could not say. */
  lagByPartition(): ReadonlyMap<number, number> | undefined {
    return this.#lag?.byPartition
  }

  /** Since when a stream with partitions to read, not busy with a batch, has had no fetch answered. */
  #silentSince(now: number): number | undefined {
    const session = this.#session
    if (!session || session.storingSince !== undefined || this.#assignedPartitions().length === 0) return undefined
    const since = Math.max(session.openedAt, session.lastFetchAt ?? 0, session.lastStoredAt ?? 0)
    return now - since >= FETCH_SILENCE_MS ? since : undefined
  }

  /** A member without partitions (more syncers than partitions) fetches nothing, and is consuming all it has. */
  #consumingIfNothingAssigned(): void {
    if (this.#session && !this.#recovering && this.#assignedPartitions().length === 0) this.#consuming()
  }

  get #stopped(): boolean {
    return this.#state.state === 'stopped'
  }

  #setState(state: IntakeState): void {
    if (this.#state.state !== state && !this.#stopped) this.#state = { state, since: Date.now() }
  }

  #newConsumer(): StringConsumer {
    const consumer = createConsumer(this.#options.kafka, this.#options.groupId, 'cif-syncer-intake')
    // The client reports a group rejoin it gave up on here, on the consumer, not on the stream.
    consumer.on('error', (error) => {
      if (consumer === this.#consumer) this.#recover(`its consumer failed: ${describeError(error)}`, { replaceConsumer: true })
    })
    consumer.on('consumer:group:join', () => {
      if (consumer === this.#consumer) process.nextTick(() => this.#consumingIfNothingAssigned())
    })
    return consumer
  }

  async #openSession(consumer: StringConsumer): Promise<IntakeSession> {
    const opening = consumer.consume({ topics: [topics.customerEvents], mode: 'committed', fallbackMode: 'earliest', maxWaitTime: 50 })
    // A join that outlives its bound may still deliver a stream later: close it then, or it would consume unseen.
    let abandoned = false
    opening.then(
      (late) => {
        if (abandoned) late.close().catch(() => {})
      },
      () => {}
    )
    let stream: MessagesStream<string, string, string, string>
    try {
      stream = await withDeadline(opening, JOIN_TIMEOUT_MS, 'joining the consumer group')
    } catch (error) {
      abandoned = true
      throw error
    }
    const session = new IntakeSession(stream)
    if (this.#stopped) {
      await session.close()
      return session
    }
    stream.on('data', (message: StringMessage) => {
      session.buffer.push(message)
      if (session.buffer.length >= this.#batchSize) stream.pause()
      this.#drain(session)
    })
    // Emitted after every fetch the broker answers, with messages or without; also just before a failed
    // fetch destroys the stream, so only a fetch the stream survives says that it is alive.
    stream.on('fetch', () => {
      const at = Date.now()
      process.nextTick(() => {
        if (stream.destroyed || session.closed) return
        session.lastFetchAt = at
        if (session === this.#session && this.#state.state !== 'consuming') this.#consuming()
      })
    })
    stream.once('error', (error) => {
      if (session === this.#session) this.#recover(`its stream failed: ${describeError(error)}`, { replaceConsumer: false })
    })
    return session
  }

  #consuming(): void {
    if (this.#unableSince !== undefined) {
      this.#options.log.info({ unableForMs: Date.now() - this.#unableSince, restarts: this.#restarts }, 'intake consuming again')
    }
    this.#unableSince = undefined
    this.#setState('consuming')
  }

  /**
   * Starts the stream (and, when asked or when it does not come back, the consumer) over. One recovery at
   * a time: a failure reported while one runs is the same episode; a consumer failure marks the consumer
   * for replacement by the recovery under way.
   */
  #recover(reason: string, how: { replaceConsumer: boolean; unableSince?: number }): void {
    if (this.#stopped) return
    if (how.replaceConsumer) this.#consumerToReplace = this.#consumer
    if (this.#recovering) return
    this.#restarts++
    this.#lastRestart = { at: Date.now(), reason }
    // Consuming ended with the last fetch the stream had answered.
    this.#unableSince ??= how.unableSince ?? this.#session?.lastFetchAt ?? Date.now()
    this.#setState('recovering')
    this.#lag = undefined // measured again once there is a consumer to measure
    this.#options.log.warn({ reason, replaceConsumer: how.replaceConsumer, restarts: this.#restarts }, 'intake starting over')
    this.#recovering = this.#reopen().finally(() => {
      this.#recovering = undefined
    })
  }

  async #reopen(): Promise<void> {
    await this.#session?.close()
    this.#session = undefined
    const waiting = new FailureLog(this.#options.log, 'intake waiting for Kafka')
    const reopening = new FailureLog(this.#options.log, 'intake cannot reopen its stream yet; trying again', 10)
    for (let failures = 0; !this.#stopped; failures++) {
      if (failures > 0) await sleep(backoffMs(failures - 1, KAFKA_PROBE_BACKOFF))
      // Kafka away: wait for it with the consumer kept, whose membership the broker still knows when it is
      // back (a new member would wait for the old one's session to expire before the group settles).
      const answers = await kafkaAnswers(this.#probe)
      if (this.#stopped) return
      if (!answers) {
        waiting.failed()
        continue
      }
      // isActive() reflects only the client's own state (joined, heartbeat scheduled: heartbeats that fail
      // on the network are simply rescheduled). If the broker forgot the member meanwhile, the join is
      // answered UNKNOWN_MEMBER_ID and the client joins as a new member: no worse than replacing it here.
      const kept = this.#consumer
      if (kept && (kept === this.#consumerToReplace || !kept.isActive())) {
        // The member it leaves behind, if the broker cannot be told, times out of the group by itself.
        await closeConsumer(kept)
        this.#consumer = undefined
        if (this.#stopped) return
      }
      this.#consumer ??= this.#newConsumer()
      const consumer = this.#consumer
      try {
        this.#session = await this.#openSession(consumer)
        // The consumer failed while its stream was being opened: this one cannot be trusted either.
        if (consumer !== this.#consumerToReplace) {
          this.#consumingIfNothingAssigned()
          return
        }
        await this.#session.close()
        this.#session = undefined
      } catch (error) {
        reopening.failed(error)
      }
      // A consumer whose join failed is left half-joined by the client (its topic marked as subscribed, its
      // heartbeat stopped): a stream from it would fetch without being a member, and never commit.
      this.#consumerToReplace = consumer
    }
  }

  /** The watchdog's round: measures the lag, then asks intake-watchdog.ts whether the consumer is stuck. */
  async #watch(): Promise<void> {
    const session = this.#session
    if (!session || this.#recovering || this.#stopped) return
    const answers = await kafkaAnswers(this.#probe)
    if (answers) await this.#measureLag()
    else this.#lag = undefined
    const now = Date.now()
    this.#kafkaAnsweringSince = answers ? (this.#kafkaAnsweringSince ?? now) : undefined
    if (session !== this.#session || this.#recovering) return
    const verdict = judgeIntake(
      {
        now,
        joinedAt: session.openedAt,
        lastFetchAt: session.lastFetchAt,
        lastStoredAt: session.lastStoredAt,
        assignedPartitions: this.#assignedPartitions().length,
        storingSince: session.storingSince,
        lag: this.#lag,
        kafkaAnsweringSince: this.#kafkaAnsweringSince
      },
      this.#options.stallMs
    )
    if (verdict.kind === 'stalled') this.#recover(`watchdog: ${verdict.reason}`, { replaceConsumer: true, unableSince: verdict.stalledSince })
  }

  #assignedPartitions(): number[] {
    return this.#consumer?.assignments?.find((a) => a.topic === topics.customerEvents)?.partitions ?? []
  }

  /** Events beyond the group's committed offsets on this consumer's partitions, and when those offsets last moved. */
  async #measureLag(): Promise<void> {
    const partitions = this.#assignedPartitions()
    const now = Date.now()
    if (partitions.length === 0) {
      this.#lag = { waiting: 0, byPartition: new Map(), committed: '', committedMovedAt: now }
      return
    }
    try {
      const name = topics.customerEvents
      const offsetsAt = (timestamp: bigint) =>
        this.#probe.listOffsets({ topics: [{ name, partitions: partitions.map((partitionIndex) => ({ partitionIndex, timestamp })) }] })
      const [ends, starts, groups] = await withDeadline(
        Promise.all([
          offsetsAt(-1n), // the end of each partition
          offsetsAt(-2n), // its start: retention may have deleted what no one committed
          this.#probe.listConsumerGroupOffsets({ groups: [{ groupId: this.#options.groupId, topics: [{ name, partitionIndexes: partitions }] }] })
        ]),
        5000,
        'measuring the lag'
      )
      const byPartition = (listed: typeof ends) => new Map(listed.find((t) => t.name === name)?.partitions.map((p) => [p.partitionIndex, p.offset]))
      const start = byPartition(starts)
      const committed = new Map(groups[0]?.topics.find((t) => t.name === name)?.partitions.map((p) => [p.partitionIndex, p.committedOffset]))
      let waiting = 0n
      const waitingByPartition = new Map<number, number>()
      for (const [partition, end] of byPartition(ends)) {
        // Nothing committed yet: the consumer starts from the earliest offset still on the partition.
        const from = [committed.get(partition) ?? -1n, start.get(partition) ?? 0n].reduce((a, b) => (a > b ? a : b))
        waitingByPartition.set(partition, end > from ? Number(end - from) : 0)
        if (end > from) waiting += end - from
      }
      const fingerprint = partitions.map((p) => `${p}:${committed.get(p) ?? -1n}`).join(',')
      const moved = !this.#lag || this.#lag.committed !== fingerprint || waiting === 0n
      this.#lag = {
        waiting: Number(waiting),
        byPartition: waitingByPartition,
        committed: fingerprint,
        committedMovedAt: moved ? now : this.#lag!.committedMovedAt
      }
    } catch {
      // Kafka cannot say now; a broker away is not the consumer's fault, and readiness reports Kafka itself.
      this.#lag = undefined
    }
  }

  #drain(session: IntakeSession): void {
    if (session.draining) return
    const live = (): boolean => !session.closed && !this.#stopped
    session.draining = (async () => {
      while (session.buffer.length && live()) {
        const batch = session.buffer.splice(0, this.#batchSize)
        // Never commit what was not stored: stopping mid-way leaves the batch to be read again.
        if (await this.#storeUntilDone(session, batch)) await this.#commit(session, batch)
      }
      if (live()) session.stream.resume()
    })().finally(() => {
      session.draining = undefined
      if (session.buffer.length && live()) this.#drain(session)
    })
  }

  /**
   * PostgreSQL away: keep the batch, keep trying, commit nothing. A batch the database refuses as data
   * (a value it cannot hold) is stored one message at a time, and the message it refuses is kept as
   * unreadable, so that one bad message never stops the topic.
   */
  async #storeUntilDone(session: IntakeSession, batch: StringMessage[]): Promise<boolean> {
    const { db, endSystems, trustedEventKeys, log, onStored, telemetry } = this.#options
    // A span per message, under the publisher's: its traceparent is stored with the event, so each attempt,
    // however much later, continues the create's trace.
    const spans = new Map<StringMessage, Span>(
      batch.map((message) => [
        message,
        telemetry.tracing.start(`receive ${message.topic}`, SpanKind.CONSUMER, message.headers.get(TRACEPARENT), {
          'messaging.system': 'kafka',
          'messaging.operation.type': 'receive',
          'messaging.destination.name': message.topic,
          'messaging.destination.partition.id': String(message.partition),
          'messaging.kafka.offset': Number(message.offset),
          'cif.id': message.key?.slice(0, 64) ?? ''
        })
      ])
    )
    const traceparents = new Map([...spans].map(([message, span]) => [message, traceparentOf(span)]))
    const store = async (messages: StringMessage[]): Promise<void> => {
      const stored = await storeEvents(db, messages, endSystems, trustedEventKeys, traceparents)
      const notSigned = new Set(stored.notSigned.map(({ message }) => message))
      for (const { message, reason } of stored.unreadable) {
        // Where, and why; never the payload. Not signed: someone produced to the topic who is not the CIF
        // service, or its key is not trusted here yet.
        log.warn(
          { topic: message.topic, partition: message.partition, offset: String(message.offset), key: message.key?.slice(0, 64), reason },
          notSigned.has(message)
            ? 'message not signed by the CIF service: kept as unreadable, not delivered'
            : 'message is not a customer event the syncer can deliver: kept as unreadable'
        )
      }
      for (const { message, eventId } of stored.ofErased) {
        log.info(
          { topic: message.topic, partition: message.partition, offset: String(message.offset), key: message.key?.slice(0, 64), eventId },
          'event of an erased customer: not stored, not delivered'
        )
      }
      if (stored.endSystems.size) onStored(stored.endSystems)
    }
    const storing = new FailureLog(log, 'cannot store events; retrying')
    session.storingSince = Date.now()
    try {
      for (let failures = 0; !session.closed && !this.#stopped; failures++) {
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
          session.lastStoredAt = Date.now()
          storing.succeeded('storing events again')
          telemetry.metrics.eventsConsumed.inc(batch.length)
          for (const span of spans.values()) span.end()
          return true
        } catch (error) {
          storing.failed(error)
          await sleep(backoffMs(failures, STORE_BACKOFF))
        }
      }
      // Stopping, or the stream was replaced: the batch is not committed, so it is read again.
      for (const span of spans.values()) endSpan(span, 'not stored: the intake stopped or started over; read again')
      return false
    } finally {
      session.storingSince = undefined
    }
  }

  async #commit(session: IntakeSession, batch: StringMessage[]): Promise<void> {
    // A replaced stream's commits would go nowhere: its messages are read again and found stored.
    if (session.closed) return
    const last = new Map<number, StringMessage>()
    for (const message of batch) last.set(message.partition, message)
    try {
      // The client can hold a commit forever (one queued while its consumer rejoins, on a stream that then
      // closes); the watchdog sees offsets that do not move, and the events are found stored when read again.
      await withDeadline(Promise.all([...last.values()].map((message) => message.commit())), COMMIT_TIMEOUT_MS, 'committing offsets')
    } catch (error) {
      // The group moved on (a rebalance): whoever owns the partition now gets these again and finds them stored.
      this.#options.log.warn({ error: describeError(error) }, 'offset commit failed; the events will be seen again')
    }
  }
}

/**
 * Closes a consumer, leaving its group, within a bound. Right after a broker restart the leave can be
 * refused (the group coordinator still loading), and the client then keeps its connections open: try
 * again in the background for a while rather than leak them.
 */
async function closeConsumer(consumer: StringConsumer): Promise<void> {
  const closing = consumer.close(true)
  closing.catch(async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      await sleep(1000)
      if (
        await consumer.close(true).then(
          () => true,
          () => false
        )
      )
        return
    }
  })
  await settleWithin(closing, CLOSE_TIMEOUT_MS)
}
