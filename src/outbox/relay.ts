import { setTimeout as sleep } from 'node:timers/promises'
import type { Admin } from '@platformatic/kafka'
import type { Kysely, Transaction } from 'kysely'
import { type RawBuilder, sql } from 'kysely'
import pg from 'pg'
import { DeadlineExceeded, withDeadline } from '../platform/deadline.ts'
import { describeError } from '../platform/errors.ts'
import { createIdempotentProducer, createProbe, type KafkaCluster, kafkaAnswers, type StringProducer } from '../platform/kafka.ts'
import type { Logger } from '../platform/logger.ts'
import { Counter, Gauge, type Registry } from '../platform/metrics.ts'
import { inBatches, type Periodic, startPeriodic } from '../platform/periodic.ts'
import { type Backoff, backoffMs, FailureLog } from '../platform/retry.ts'
import { endSpan, type Span, SpanKind, TRACEPARENT, type Tracing, traceparentOf } from '../platform/tracing.ts'
import { judgeRelay, type RelayVerdict } from './relay-watchdog.ts'
import type { OutboxTables } from './tables.ts'

/** A message as claimed from a queue: what to send, and the id its queue marks sent. */
export interface ClaimedMessage {
  id: string
  topic: string
  message_key: string
  payload: string
  headers: Record<string, string>
}

/**
 * The table a relay publishes from: the outbox below, or a service's own table whose rows are the record
 * and the message at once. Each call runs in the relay's transaction or on its pool, as typed.
 */
export interface RelayQueue<DB> {
  /** The channel notified at commit when the queue has new messages to send. */
  channel: string
  /**
   * Up to `limit` unsent messages under row locks (FOR UPDATE SKIP LOCKED), in id order, none of whose key
   * has an earlier unsent message: a key's messages go out one after the other even when relays race.
   */
  claim(trx: Transaction<DB>, limit: number): Promise<ClaimedMessage[]>
  markSent(trx: Transaction<DB>, ids: string[]): Promise<void>
  recordFailure(db: Kysely<DB>, ids: string[], message: string): Promise<void>
  /** When the oldest unsent message was written, if one waits. */
  oldestUnsentAt(db: Kysely<DB>): Promise<Date | undefined>
  /** How many messages wait, counted up to `cap` (a scrape must stay cheap during an outage's backlog). */
  countUnsent(db: Kysely<DB>, cap: number): Promise<number>
  /** Deletes up to `limit` messages sent more than `retentionHours` ago; a queue that is a record keeps them. */
  purgeSent?(db: Kysely<DB>, retentionHours: number, limit: number): Promise<number>
}

export interface OutboxRelayOptions<DB> {
  db: Kysely<DB>
  queue: RelayQueue<DB>
  /** For the LISTEN connection, which must stay out of the pool. */
  databaseUrl: string
  kafka: KafkaCluster
  /** Names the relay's producer to the brokers. */
  clientId: string
  batchSize: number
  /** Fallback poll when no notification arrives (a missed one, or the LISTEN connection is down). */
  pollIntervalMs: number
  /** Sent messages are deleted this long after they went out (pending ones never). */
  retentionHours: number
  /** How many sent messages one purge statement deletes at most. */
  retentionBatchSize: number
  /** Messages waiting and nothing published for this long while Kafka answers: the producer is replaced. */
  stallMs: number
  /** Readiness fails once the relay has been unable to publish for this long. */
  unreadyAfterMs: number
  log: Logger
  /** Where its metrics are registered (relayMetrics), and the spans of what it publishes. */
  telemetry?: { registry: Registry; tracing: Tracing } | undefined
}

/** What `/health/ready` says of a relay. */
export interface RelayHealth {
  up: boolean
  state: RelayVerdict['kind']
  /** Age of the oldest unsent message at the last look. */
  oldestUnsentAgeMs: number | null
  /** Since when messages have waited with nothing going out, if they have. */
  unableSince: string | null
  /** How often the producer was replaced since the process started. */
  restarts: number
  lastRestart: { at: string; reason: string } | null
}

/** A relay that cannot publish tries again at least every 2 s: each try is one claim and one send. */
const RETRY_BACKOFF: Backoff = { initialMs: 100, maxMs: 2000 }
/**
 * Under load every commit notifies: a relay that ran a batch per notification would scan the queue
 * hundreds of times a second for a row or two each. Batches start at most this often instead.
 */
const MIN_BATCH_GAP_MS = 10
/**
 * A send the Kafka client never settles (seen on a freshly created topic while its leaders are elected)
 * would hold the batch's row locks, and every later message of those keys, forever. Past this, the batch
 * is rolled back and the producer replaced; a send that lands after all only repeats those messages.
 */
const SEND_TIMEOUT_MS = 15_000
const PURGE_EVERY_MS = 60_000

/** A backlog is counted up to this many messages per scrape; past it, the gauge says "at least this". */
export const PENDING_COUNT_CAP = 1_000_000

interface RelayMetrics {
  published: Counter<'relay'>
  failedBatches: Counter<'relay'>
}

/**
 * The relay's metrics in `registry`, labelled with its name (its Kafka client id). The backlog and its age
 * are read from the queue when scraped (two index probes), so they are right even while the relay is stuck;
 * a database that does not answer leaves the last figures.
 */
function relayMetrics<DB>(registry: Registry, relay: string, db: Kysely<DB>, queue: RelayQueue<DB>): RelayMetrics {
  const labels = { relay }
  new Gauge({
    name: 'outbox_pending_messages',
    help: `Messages written and not yet published to Kafka (counted up to ${PENDING_COUNT_CAP})`,
    labelNames: ['relay'],
    registers: [registry],
    async collect() {
      await queue.countUnsent(db, PENDING_COUNT_CAP).then(
        (waiting) => this.set(labels, waiting),
        () => {}
      )
    }
  })
  new Gauge({
    name: 'outbox_oldest_pending_age_seconds',
    help: 'Age of the oldest message not yet published (0 when none waits)',
    labelNames: ['relay'],
    registers: [registry],
    async collect() {
      await queue.oldestUnsentAt(db).then(
        (oldest) => this.set(labels, oldest ? Math.max(0, (Date.now() - oldest.getTime()) / 1000) : 0),
        () => {}
      )
    }
  })
  return {
    published: new Counter({
      name: 'outbox_published_messages_total',
      help: 'Messages published to Kafka and marked sent',
      labelNames: ['relay'],
      registers: [registry]
    }),
    failedBatches: new Counter({
      name: 'outbox_publish_failures_total',
      help: 'Batches that could not be published (Kafka or PostgreSQL away); their messages stay pending',
      labelNames: ['relay'],
      registers: [registry]
    })
  }
}

/**
 * Publishes a queue's rows to Kafka, then marks them sent: at least once, in order per message key.
 *
 * Rows are claimed by status under row locks (FOR UPDATE SKIP LOCKED), never by an id watermark, because
 * identity values are handed out before commit and transactions commit out of order. Several relays may
 * run; a row is taken only when no earlier row with its key is still pending, so a key's messages are
 * published one after the other even when relays race.
 */
export class OutboxRelay<DB = OutboxTables> {
  readonly #options: OutboxRelayOptions<DB>
  readonly #metrics: RelayMetrics | undefined
  #producer: StringProducer
  #running: Promise<void> | undefined
  #listening: Promise<void> | undefined
  #stopped = false
  #wake: (() => void) | undefined
  #wokenEarly = false
  #listener: pg.Client | undefined
  #lastPurge = 0
  #lastBatchAt = 0
  #lastPublishedAt: number | undefined
  readonly #probe: Admin
  #watchdog: Periodic | undefined
  #verdict: { verdict: RelayVerdict; oldestUnsentAt: number | undefined } | undefined
  #restarts = 0
  #lastRestart: { at: number; reason: string } | undefined
  #kafkaAnsweringSince: number | undefined

  constructor(options: OutboxRelayOptions<DB>) {
    this.#options = options
    this.#metrics = options.telemetry && relayMetrics(options.telemetry.registry, options.clientId, options.db, options.queue)
    this.#producer = createIdempotentProducer(options.kafka, options.clientId)
    this.#probe = createProbe(options.kafka, 2000)
  }

  start(): void {
    this.#stopped = false
    this.#listening = this.#listen()
    this.#running = this.#loop()
    this.#watchdog = startPeriodic(Math.min(5000, Math.max(100, this.#options.stallMs / 3)), () => this.#watch())
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#wake?.()
    await this.#watchdog?.stop()
    await this.#running
    await this.#listener?.end().catch(() => {})
    await this.#listening
    await this.#producer.close()
    await this.#probe.close().catch(() => {})
  }

  health(now = Date.now()): RelayHealth {
    const last = this.#verdict
    const since = last && last.verdict.kind !== 'caught-up' ? last.verdict.since : undefined
    return {
      up: since === undefined || now - since < this.#options.unreadyAfterMs,
      state: last?.verdict.kind ?? 'caught-up',
      oldestUnsentAgeMs: last?.oldestUnsentAt === undefined ? null : now - last.oldestUnsentAt,
      unableSince: since === undefined ? null : new Date(since).toISOString(),
      restarts: this.#restarts,
      lastRestart: this.#lastRestart ? { at: new Date(this.#lastRestart.at).toISOString(), reason: this.#lastRestart.reason } : null
    }
  }

  /**
   * The watchdog's round. The relay's own loop already outlasts Kafka outages and bounds each send; this
   * catches what it cannot see: a producer that keeps failing, or never answers, while Kafka is fine.
   */
  async #watch(): Promise<void> {
    const oldestUnsentAt = (await this.#options.queue.oldestUnsentAt(this.#options.db))?.getTime()
    // Kafka is asked only when something waits: an idle relay costs the cluster nothing.
    const answers = oldestUnsentAt !== undefined && (await kafkaAnswers(this.#probe))
    const now = Date.now()
    // Kafka back while messages wait: no need to sit out the rest of the loop's backoff.
    if (answers && this.#kafkaAnsweringSince === undefined) this.#wake?.()
    this.#kafkaAnsweringSince = answers ? (this.#kafkaAnsweringSince ?? now) : undefined
    const observation = {
      now,
      oldestUnsentAt,
      lastPublishedAt: this.#lastPublishedAt,
      lastRestartAt: this.#lastRestart?.at,
      kafkaAnsweringSince: this.#kafkaAnsweringSince
    }
    const verdict = judgeRelay(observation, this.#options.stallMs)
    this.#verdict = { verdict, oldestUnsentAt }
    if (verdict.kind !== 'stalled' || this.#stopped) return
    this.#replaceProducer(this.#producer, `watchdog: ${verdict.reason}`)
    this.#wake?.()
  }

  /** Publishes one batch; returns how many messages went out. */
  async publishBatch(): Promise<number> {
    const { db, queue, batchSize } = this.#options
    const producer = this.#producer
    let claimedIds: string[] = []
    try {
      return await db.transaction().execute(async (trx) => {
        const rows = await queue.claim(trx, batchSize)
        if (rows.length === 0) return 0
        claimedIds = rows.map((row) => row.id)
        const publishing = rows.map((row) => this.#publishing(row))
        const sent = producer.send({
          messages: publishing.map(({ row, headers }) => ({ topic: row.topic, key: row.message_key, value: row.payload, headers }))
        })
        try {
          await withDeadline(sent, SEND_TIMEOUT_MS, 'Kafka acknowledgement')
          await queue.markSent(trx, claimedIds)
        } catch (error) {
          if (error instanceof DeadlineExceeded) this.#replaceProducer(producer, describeError(error))
          for (const { span } of publishing) if (span) endSpan(span, describeError(error, 200))
          throw error
        }
        for (const { span } of publishing) span?.end()
        return rows.length
      })
    } catch (error) {
      if (claimedIds.length) {
        this.#metrics?.failedBatches.inc({ relay: this.#options.clientId })
        await this.#recordFailure(claimedIds, error)
      }
      throw error
    }
  }

  /**
   * A message with a trace (one its writer started) is published in a span of its own, and carries that
   * span's traceparent to its consumers; the row keeps its writer's, so a retried send is a new span.
   */
  #publishing(row: ClaimedMessage): { row: ClaimedMessage; headers: Record<string, string>; span?: Span } {
    const parent = row.headers[TRACEPARENT]
    const tracing = this.#options.telemetry?.tracing
    if (!parent || !tracing) return { row, headers: row.headers }
    const span = tracing.start(`publish ${row.topic}`, SpanKind.PRODUCER, parent, {
      'messaging.system': 'kafka',
      'messaging.operation.type': 'send',
      'messaging.destination.name': row.topic,
      'cif.id': row.message_key
    })
    return { row, headers: { ...row.headers, [TRACEPARENT]: traceparentOf(span) }, span }
  }

  /** Logged once and counted: readiness shows how often, and the last reason. */
  #replaceProducer(stuck: StringProducer, reason: string): void {
    if (this.#producer !== stuck) return
    this.#restarts++
    this.#lastRestart = { at: Date.now(), reason }
    this.#options.log.warn({ reason, restarts: this.#restarts }, 'outbox relay replacing its producer')
    this.#producer = createIdempotentProducer(this.#options.kafka, this.#options.clientId)
    stuck.close(true).catch(() => {})
  }

  /** Deletes sent rows older than the retention, in bounded batches; pending rows are never purged. */
  async purgeSent(): Promise<number> {
    const { db, queue, retentionHours, retentionBatchSize } = this.#options
    const purge = queue.purgeSent
    if (!purge) return 0
    return inBatches(() => purge(db, retentionHours, retentionBatchSize), retentionBatchSize)
  }

  async #recordFailure(ids: string[], error: unknown): Promise<void> {
    await this.#options.queue.recordFailure(this.#options.db, ids, describeError(error, 1000)).catch(() => {}) // the database itself may be what failed; the rows stay pending either way
  }

  async #loop(): Promise<void> {
    const { log, batchSize, pollIntervalMs } = this.#options
    const publishing = new FailureLog(log, 'outbox relay cannot publish; will retry')
    while (!this.#stopped) {
      let published = 0
      try {
        this.#lastBatchAt = Date.now()
        published = await this.publishBatch()
        if (published > 0) {
          this.#lastPublishedAt = Date.now()
          this.#metrics?.published.inc({ relay: this.#options.clientId }, published)
        }
        publishing.succeeded('outbox relay publishing again')
        if (Date.now() - this.#lastPurge > PURGE_EVERY_MS) {
          this.#lastPurge = Date.now()
          const purged = await this.purgeSent()
          if (purged) log.info({ purged }, 'purged sent outbox messages past retention')
        }
      } catch (error) {
        // Kafka or PostgreSQL is away: the rows stay pending and go out, in order, once it is back.
        publishing.failed(error)
        await this.#idle(backoffMs(publishing.failures, RETRY_BACKOFF))
        continue
      }
      if (published < batchSize) {
        await this.#idle(pollIntervalMs)
        const gap = this.#lastBatchAt + MIN_BATCH_GAP_MS - Date.now()
        if (gap > 0 && !this.#stopped) await sleep(gap)
      }
    }
  }

  /** Waits for a notification, the timeout, or stop(), whichever comes first. */
  async #idle(timeoutMs: number): Promise<void> {
    if (this.#wokenEarly || this.#stopped) {
      this.#wokenEarly = false
      return
    }
    const controller = new AbortController()
    await new Promise<void>((resolve) => {
      this.#wake = resolve
      sleep(timeoutMs, undefined, { signal: controller.signal }).then(resolve, () => {})
    })
    controller.abort()
    this.#wake = undefined
    this.#wokenEarly = false
  }

  #notified = (): void => {
    if (this.#wake) this.#wake()
    else this.#wokenEarly = true
  }

  async #listen(): Promise<void> {
    for (let failures = 0; !this.#stopped; failures++) {
      const client = new pg.Client({ connectionString: this.#options.databaseUrl })
      // `on`, not `once`: a dying connection can report more than one error.
      const closed = new Promise<void>((resolve) => {
        client.on('error', () => resolve())
        client.once('end', () => resolve())
      })
      try {
        await client.connect()
        await client.query(`listen ${client.escapeIdentifier(this.#options.queue.channel)}`)
        if (this.#stopped) break
        this.#listener = client
        client.on('notification', this.#notified)
        failures = 0
        this.#notified() // rows may have arrived while not listening
        await closed
      } catch {
        // PostgreSQL is away; the poll goes on and the listener reconnects.
      } finally {
        this.#listener = undefined
        await client.end().catch(() => {})
      }
      if (!this.#stopped) await sleep(backoffMs(failures, RETRY_BACKOFF))
    }
  }
}

/** The outbox's rows of `topics`; another relay may serve the others from the same table. */
export function outboxQueue(topics: string[]): RelayQueue<OutboxTables> {
  return {
    channel: 'outbox_message',
    async claim(trx, limit) {
      const { rows } = await pendingMessages(topics, limit).execute(trx)
      return rows
    },
    async markSent(trx, ids) {
      await trx.updateTable('outbox_message').set({ status: 'SENT', sent_at: sql`now()` }).where('id', 'in', ids).execute()
    },
    async recordFailure(db, ids, message) {
      await db
        .updateTable('outbox_message')
        .set((eb) => ({ publish_attempts: eb('publish_attempts', '+', 1), last_error: message }))
        .where('id', 'in', ids)
        .execute()
    },
    async oldestUnsentAt(db) {
      const { rows } = await sql<{ created_at: Date }>`
        select created_at from outbox_message
        where status = 'PENDING' and topic = any(${topics}::text[])
        order by id limit 1`.execute(db)
      return rows[0]?.created_at
    },
    async countUnsent(db, cap) {
      const { rows } = await sql<{ waiting: number }>`
        select count(*)::integer as waiting from (
          select 1 from outbox_message where status = 'PENDING' and topic = any(${topics}::text[]) limit ${cap}) pending`.execute(db)
      return rows[0]?.waiting ?? 0
    },
    purgeSent: purgeSentMessages
  }
}

/**
 * The outbox relay's claim (see RelayQueue.claim). "No earlier pending message of the key" is a scalar
 * subquery, not NOT EXISTS: PostgreSQL may plan NOT EXISTS as an anti join against every pending message of
 * the topics, compared with each candidate, which grows with the square of an outage's backlog (the syncer's
 * status relay met it, see unsentStatuses there). The scalar subquery is one index probe per candidate.
 */
export function pendingMessages(topics: string[], limit: number): RawBuilder<ClaimedMessage> {
  return sql<ClaimedMessage>`
    select id, topic, message_key, payload, headers
    from outbox_message o
    where status = 'PENDING' and topic = any(${topics}::text[])
      and (select true from outbox_message earlier
           where earlier.status = 'PENDING' and earlier.topic = o.topic and earlier.message_key = o.message_key and earlier.id < o.id
           limit 1) is null
    order by id
    limit ${limit}
    for update skip locked`
}

/**
 * Deletes up to `limit` messages sent more than `retentionHours` ago (one batch; see inBatches). A sent
 * message's payload is only a copy of what Kafka holds: once out, the outbox keeps it for inquiries only.
 */
export async function purgeSentMessages(db: Kysely<OutboxTables>, retentionHours: number, limit: number): Promise<number> {
  const result = await db
    .deleteFrom('outbox_message')
    .where('id', 'in', (eb) =>
      eb
        .selectFrom('outbox_message')
        .select('id')
        .where('status', '=', 'SENT')
        .where('sent_at', '<', sql<Date>`now() - make_interval(hours => ${retentionHours})`)
        .limit(limit)
        .forUpdate()
        .skipLocked()
    )
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}
