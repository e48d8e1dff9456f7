import { randomUUID } from 'node:crypto'
import { Admin, type BaseOptions, Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka'

/** The SASL mechanisms a client may authenticate with (over TLS only: PLAIN sends the password itself). */
export const kafkaSaslMechanisms = ['SCRAM-SHA-512', 'SCRAM-SHA-256', 'PLAIN'] as const
export type KafkaSaslMechanism = (typeof kafkaSaslMechanisms)[number]

/**
 * How a client talks to the brokers: without `tls`, PLAINTEXT (the local stack); with `tls`, SSL; with
 * `tls` and `sasl`, SASL_SSL, where the broker knows which principal the client is and its ACLs say
 * what that principal may do. Plain strings only (PEM, not file names), so it can be handed to a test
 * worker or a child process as it is.
 */
export interface KafkaSecurity {
  /** `ca`: PEM certificates the brokers' are checked against (unset: the system's); `cert`, `key`: the client's own (mTLS). */
  tls?: { ca?: string; cert?: string; key?: string }
  sasl?: { mechanism: KafkaSaslMechanism; username: string; password: string }
}

/** Where Kafka is and how to reach it: what every client of the project is made from. */
export interface KafkaCluster {
  brokers: string[]
  security: KafkaSecurity
}

/** The one place a cluster's settings become client options: every client below starts from these. */
export function clientConnection(cluster: KafkaCluster): Pick<BaseOptions, 'bootstrapBrokers' | 'tls' | 'sasl'> {
  const { tls, sasl } = cluster.security
  return { bootstrapBrokers: cluster.brokers, ...(tls && { tls }), ...(sasl && { sasl }) }
}

/**
 * Creates the topics (name: partitions) where missing. The replication factor is left to the cluster
 * (`default.replication.factor`), so the same code serves the local single node and a real cluster.
 * Under ACLs the principal needs CREATE and DESCRIBE on the topics (see `cif-syncer create-topics`).
 */
export async function ensureTopics(cluster: KafkaCluster, wanted: Record<string, number>): Promise<string[]> {
  const admin = new Admin({ clientId: 'cif-syncer-admin', ...clientConnection(cluster) })
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
export function createIdempotentProducer(cluster: KafkaCluster, clientId: string): StringProducer {
  return new Producer({
    clientId,
    ...clientConnection(cluster),
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
 * A client for probes only: a bound on each request (`timeout` is what the broker is asked to wait;
 * `requestTimeout` is how long the client waits, 30 s by default), so that a broker that is down, or
 * frozen with its connections open, is reported within `timeoutMs` for each broker. One try per broker
 * and no pause: the client starts each retry from the next address, whereas with no retry it asked the
 * first alone, and one frozen broker of a healthy cluster made every probe say that Kafka did not answer
 * (readiness failed, and an intake starting over waited for the broker, not the cluster).
 */
export function createProbe(cluster: KafkaCluster, timeoutMs: number): Admin {
  return new Admin({
    clientId: 'cif-syncer-probe',
    ...clientConnection(cluster),
    retries: cluster.brokers.length - 1,
    retryDelay: 0,
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

/** A member that stops heartbeating (a crashed syncer) holds its partitions this long; see docs/reliability.md. */
export const CONSUMER_SESSION_TIMEOUT_MS = 10_000

/** A member of an application consumer group that commits offsets itself, after its work is safe. */
export function createConsumer(cluster: KafkaCluster, groupId: string, clientId: string): StringConsumer {
  return new Consumer({
    clientId,
    groupId,
    ...clientConnection(cluster),
    deserializers: stringDeserializers,
    autocommit: false,
    sessionTimeout: CONSUMER_SESSION_TIMEOUT_MS,
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
export function createReader(cluster: KafkaCluster, clientId: string): StringConsumer {
  return createConsumer(cluster, `${clientId}-${randomUUID()}`, clientId)
}
