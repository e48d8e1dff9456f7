import { randomUUID } from 'node:crypto'
import { Admin, Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka'

/**
 * Creates the topics (name: partitions) where missing. The replication factor is left to the cluster
 * (`default.replication.factor`), so the same code serves the local single node and a real cluster.
 */
export async function ensureTopics(brokers: string[], wanted: Record<string, number>): Promise<string[]> {
  const admin = new Admin({ clientId: 'cif-syncer-admin', bootstrapBrokers: brokers })
  try {
    const existing = new Set(await admin.listTopics())
    const missing = Object.keys(wanted).filter((topic) => !existing.has(topic))
    for (const topic of missing) {
      await admin.createTopics({ topics: [topic], partitions: wanted[topic], replicas: -1 })
    }
    return missing
  } finally {
    await admin.close()
  }
}

export type StringProducer = Producer<string, string, string, string>

/**
 * An idempotent producer (acks from all in-sync replicas, broker-side de-duplication of retries),
 * so a retried send neither reorders nor duplicates within a partition.
 */
export function createIdempotentProducer(brokers: string[], clientId: string): StringProducer {
  return new Producer({
    clientId,
    bootstrapBrokers: brokers,
    serializers: stringSerializers,
    idempotent: true,
    acks: -1,
    // A broker that is down must fail the send quickly: the outbox keeps the messages and tries again.
    timeout: 5000,
    retries: 2,
    retryDelay: 200
  })
}

/**
 * A client for probes only: no retries, and a bound on each request (`timeout` is what the broker is
 * asked to wait; `requestTimeout` is how long the client waits, 30 s by default), so that a broker that is
 * down, or frozen with its connections open, is reported within `timeoutMs`.
 */
export function createProbe(brokers: string[], timeoutMs: number): Admin {
  return new Admin({
    clientId: 'cif-syncer-probe',
    bootstrapBrokers: brokers,
    retries: 0,
    timeout: timeoutMs,
    requestTimeout: timeoutMs,
    connectTimeout: timeoutMs
  })
}

/** Answers whether the cluster responds at all. */
export async function kafkaAnswers(probe: Admin): Promise<boolean> {
  try {
    await probe.metadata({ topics: [], forceUpdate: true })
    return true
  } catch {
    return false
  }
}

export type StringConsumer = Consumer<string, string, string, string>

/** A member of an application consumer group that commits offsets itself, after its work is safe. */
export function createConsumer(brokers: string[], groupId: string, clientId: string): StringConsumer {
  return new Consumer({
    clientId,
    groupId,
    bootstrapBrokers: brokers,
    deserializers: stringDeserializers,
    autocommit: false,
    // A member that stops heartbeating (a crashed syncer) holds its partitions this long; see docs/reliability.md.
    sessionTimeout: 10_000,
    heartbeatInterval: 1000,
    // How long the broker waits for every member to rejoin during a rebalance (the client's default is
    // 102 s); the intake gives up on a join after JOIN_TIMEOUT_MS, which must be longer.
    rebalanceTimeout: 30_000
  })
}

/**
 * A consumer for reading a topic outside any application group (a tail, a test): its group id is unique
 * and it commits nothing.
 */
export function createReader(brokers: string[], clientId: string): StringConsumer {
  return createConsumer(brokers, `${clientId}-${randomUUID()}`, clientId)
}
