import { createReader, type KafkaCluster } from '../platform/kafka.ts'

/** Prints every message of `topic` as one JSON line, from the beginning, until interrupted. */
export async function tailTopic(kafka: KafkaCluster, topic: string, fromBeginning: boolean): Promise<void> {
  const reader = createReader(kafka, 'cif-syncer-tail')
  const stream = await reader.consume({ topics: [topic], mode: fromBeginning ? 'earliest' : 'latest' })
  const stop = async (): Promise<void> => {
    await stream.close()
    await reader.close()
    process.exit(0)
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  for await (const message of stream) {
    let value: unknown = message.value
    try {
      value = JSON.parse(message.value)
    } catch {
      // not JSON: print it as it is
    }
    const headers = Object.fromEntries(message.headers)
    process.stdout.write(`${JSON.stringify({ partition: message.partition, offset: String(message.offset), key: message.key, headers, value })}\n`)
  }
}
