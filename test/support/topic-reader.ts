import { setTimeout as sleep } from 'node:timers/promises'
import { createReader, type StringConsumer } from '../../src/platform/kafka.ts'

export interface TopicMessage {
  key: string
  partition: number
  offset: bigint
  headers: Record<string, string>
  value: any
}

/** Reads a topic from its start into memory, so tests can wait for what they expect to arrive. */
export class TopicReader {
  readonly messages: TopicMessage[] = []
  #consumer: StringConsumer
  #closing: (() => Promise<void>) | undefined

  private constructor(consumer: StringConsumer) {
    this.#consumer = consumer
  }

  static async open(brokers: string[], topic: string): Promise<TopicReader> {
    const reader = new TopicReader(createReader(brokers, 'cif-test-reader'))
    const stream = await reader.#consumer.consume({ topics: [topic], mode: 'earliest', maxWaitTime: 200 })
    stream.on('data', (message) => {
      reader.messages.push({
        key: message.key,
        partition: message.partition,
        offset: message.offset,
        headers: Object.fromEntries(message.headers),
        value: JSON.parse(message.value)
      })
    })
    reader.#closing = async () => {
      await stream.close()
    }
    return reader
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
    await this.#closing?.()
    await this.#consumer.close()
  }
}

