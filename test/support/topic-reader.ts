import { setTimeout as sleep } from 'node:timers/promises'
import { createReader, type KafkaCluster, type StringConsumer } from '../../src/platform/kafka.ts'

export interface TopicMessage {
  key: string
  partition: number
  offset: bigint
  headers: Record<string, string>
  /** The value parsed (or as `keep` made it); undefined when it is not JSON. */
  value: any
  /** The value as it came off the topic, before parsing. */
  raw: string
}

/** Reads a topic from its start into memory, so tests can wait for what they expect to arrive. */
export class TopicReader {
  readonly messages: TopicMessage[] = []
  #consumer: StringConsumer
  #closing: (() => Promise<void>) | undefined
  #closed = false
  readonly #seen = new Set<string>()
  readonly #keep: ((value: any) => unknown) | undefined

  private constructor(consumer: StringConsumer, keep: ((value: any) => unknown) | undefined) {
    this.#consumer = consumer
    this.#keep = keep
  }

  /**
   * With `keep`, each value is kept as `keep` makes it, and `raw` is empty: a long run's topic fits in memory.
   * A value that is not JSON (a bad message a test put there, a tombstone) is kept as `undefined`.
   */
  static async open(kafka: KafkaCluster, topic: string, keep?: (value: any) => unknown): Promise<TopicReader> {
    const reader = new TopicReader(createReader(kafka, 'cif-test-reader'), keep)
    await reader.#read(kafka, topic)
    return reader
  }

  async #read(kafka: KafkaCluster, topic: string): Promise<void> {
    const stream = await this.#consumer.consume({ topics: [topic], mode: 'earliest', maxWaitTime: 200 })
    stream.on('data', (message) => {
      // A reader that started over reads the topic again: keep each record once.
      const position = `${message.partition}:${message.offset}`
      if (this.#seen.has(position)) return
      this.#seen.add(position)
      const parsed = jsonOrUndefined(message.value)
      this.messages.push({
        key: message.key,
        partition: message.partition,
        offset: message.offset,
        headers: Object.fromEntries(message.headers),
        value: parsed === undefined || !this.#keep ? parsed : this.#keep(parsed),
        raw: this.#keep ? '' : message.value
      })
    })
    // Kafka stopped for longer than the client retries (the fault suite does that): read it all again.
    stream.once('error', () => {
      if (this.#closed) return
      void (async () => {
        await stream.close().catch(() => {})
        await this.#consumer.close(true).catch(() => {})
        while (!this.#closed) {
          await sleep(500)
          this.#consumer = createReader(kafka, 'cif-test-reader')
          try {
            await this.#read(kafka, topic)
            return
          } catch {
            await this.#consumer.close(true).catch(() => {})
          }
        }
      })()
    })
    this.#closing = async () => {
      await stream.close()
    }
  }

  async waitFor(predicate: (messages: TopicMessage[]) => boolean, timeoutMs = 30_000): Promise<TopicMessage[]> {
    const deadline = Date.now() + timeoutMs
    while (!predicate(this.messages)) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms with ${this.messages.length} messages`)
      await sleep(50)
    }
    return this.messages
  }

  forKey(key: string): TopicMessage[] {
    return this.messages.filter((m) => m.key === key)
  }

  async close(): Promise<void> {
    this.#closed = true
    await this.#closing?.()
    await this.#consumer.close()
  }
}

function jsonOrUndefined(text: string | undefined): unknown {
  try {
    return JSON.parse(text ?? '')
  } catch {
    return undefined
  }
}
