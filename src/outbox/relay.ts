import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import pg from 'pg'
import type { Db } from '../platform/database/index.ts'
import { describeError } from '../platform/errors.ts'
import { createIdempotentProducer, type StringProducer } from '../platform/kafka.ts'
import type { Logger } from '../platform/logger.ts'

export interface OutboxRelayOptions {
  db: Db
  /** For the LISTEN connection, which must stay out of the pool. */
  databaseUrl: string
  brokers: string[]
  /** Names the relay's producer to the brokers. */
  clientId: string
  /** The topics this relay publishes; another relay may serve the others from the same table. */
  topics: string[]
  batchSize: number
  /** Fallback poll when no notification arrives (a missed one, or the LISTEN connection is down). */
  pollIntervalMs: number
  retentionHours: number
  log: Logger
}

const NOTIFY_CHANNEL = 'outbox_message'
const MAX_BACKOFF_MS = 5000
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

interface ClaimedMessage {
  id: string
  topic: string
  message_key: string
  payload: string
  headers: Record<string, string>
}

/**
 * Publishes outbox rows to Kafka, then marks them sent: at least once, in order per message key.
 *
 * Rows are claimed by status under row locks (FOR UPDATE SKIP LOCKED), never by an id watermark, because
 * identity values are handed out before commit and transactions commit out of order. Several relays may
 * run; a row is taken only when no earlier row with its key is still pending, so a key's messages are
 * published one after the other even when relays race.
 */
export class OutboxRelay {
  readonly #options: OutboxRelayOptions
  #producer: StringProducer
  #running: Promise<void> | undefined
  #listening: Promise<void> | undefined
  #stopped = false
  #wake: (() => void) | undefined
  #wokenEarly = false
  #listener: pg.Client | undefined
  #lastPurge = 0
  #lastBatchAt = 0

  constructor(options: OutboxRelayOptions) {
    this.#options = options
    this.#producer = createIdempotentProducer(options.brokers, options.clientId)
  }

  start(): void {
    this.#stopped = false
    this.#listening = this.#listen()
    this.#running = this.#loop()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#wake?.()
    await this.#running
    await this.#listener?.end().catch(() => {})
    await this.#listening
    await this.#producer.close()
  }

  /** Publishes one batch; returns how many messages went out. */
  async publishBatch(): Promise<number> {
    const { db, batchSize } = this.#options
    const producer = this.#producer
    let claimedIds: string[] = []
    try {
      return await db.transaction().execute(async (trx) => {
        const { rows } = await sql<ClaimedMessage>`
          select id, topic, message_key, payload, headers
          from outbox_message o
          where status = 'PENDING' and topic = any(${this.#options.topics}::text[])
            and not exists (
              select 1 from outbox_message earlier
              where earlier.status = 'PENDING' and earlier.topic = o.topic and earlier.message_key = o.message_key and earlier.id < o.id)
          order by id
          limit ${batchSize}
          for update skip locked`.execute(trx)
        if (rows.length === 0) return 0
        claimedIds = rows.map((row) => row.id)
        const sent = producer.send({
          messages: rows.map((row) => ({ topic: row.topic, key: row.message_key, value: row.payload, headers: row.headers }))
        })
        sent.catch(() => {}) // once abandoned, its outcome no longer matters
        const timer = new AbortController()
        let timedOut = false
        const deadline = sleep(SEND_TIMEOUT_MS, undefined, { signal: timer.signal }).then(
          () => {
            timedOut = true
            throw new Error(`Kafka did not acknowledge within ${SEND_TIMEOUT_MS / 1000} s`)
          },
          () => undefined
        )
        try {
          await Promise.race([sent, deadline])
        } finally {
          timer.abort()
          if (timedOut) this.#replaceProducer(producer)
        }
        await trx
          .updateTable('outbox_message')
          .set({ status: 'SENT', sent_at: sql`now()` })
          .where('id', 'in', claimedIds)
          .execute()
        return rows.length
      })
    } catch (error) {
      if (claimedIds.length) await this.#recordFailure(claimedIds, error)
      throw error
    }
  }

  #replaceProducer(stuck: StringProducer): void {
    if (this.#producer !== stuck) return
    this.#producer = createIdempotentProducer(this.#options.brokers, this.#options.clientId)
    stuck.close(true).catch(() => {})
  }

  /** Deletes sent rows older than the retention; pending rows are never purged. */
  async purgeSent(): Promise<number> {
    const result = await this.#options.db
      .deleteFrom('outbox_message')
      .where('status', '=', 'SENT')
      .where('sent_at', '<', sql<Date>`now() - make_interval(hours => ${this.#options.retentionHours})`)
      .executeTakeFirst()
    return Number(result.numDeletedRows)
  }

  async #recordFailure(ids: string[], error: unknown): Promise<void> {
    const message = describeError(error, 1000)
    await this.#options.db
      .updateTable('outbox_message')
      .set((eb) => ({ publish_attempts: eb('publish_attempts', '+', 1), last_error: message }))
      .where('id', 'in', ids)
      .execute()
      .catch(() => {}) // the database itself may be what failed; the rows stay pending either way
  }

  async #loop(): Promise<void> {
    const { log, batchSize, pollIntervalMs } = this.#options
    let failures = 0
    while (!this.#stopped) {
      let published = 0
      try {
        this.#lastBatchAt = Date.now()
        published = await this.publishBatch()
        if (failures > 0) log.info({ failures }, 'outbox relay publishing again')
        failures = 0
        if (Date.now() - this.#lastPurge > PURGE_EVERY_MS) {
          this.#lastPurge = Date.now()
          const purged = await this.purgeSent()
          if (purged) log.info({ purged }, 'purged sent outbox messages past retention')
        }
      } catch (error) {
        failures++
        // Kafka or PostgreSQL is away: the rows stay pending and go out, in order, once it is back.
        if (failures === 1 || failures % 20 === 0) log.warn({ error: describeError(error), failures }, 'outbox relay cannot publish; will retry')
        await this.#idle(Math.min(MAX_BACKOFF_MS, 100 * 2 ** Math.min(failures, 10)))
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
    let delay = 100
    while (!this.#stopped) {
      const client = new pg.Client({ connectionString: this.#options.databaseUrl })
      // `on`, not `once`: a dying connection can report more than one error.
      const closed = new Promise<void>((resolve) => {
        client.on('error', () => resolve())
        client.once('end', () => resolve())
      })
      try {
        await client.connect()
        await client.query(`listen ${NOTIFY_CHANNEL}`)
        if (this.#stopped) break
        this.#listener = client
        client.on('notification', this.#notified)
        delay = 100
        this.#notified() // rows may have arrived while not listening
        await closed
      } catch {
        // PostgreSQL is away; the poll goes on and the listener reconnects.
      } finally {
        this.#listener = undefined
        await client.end().catch(() => {})
      }
      if (!this.#stopped) await sleep(delay)
      delay = Math.min(MAX_BACKOFF_MS, delay * 2)
    }
  }
}
