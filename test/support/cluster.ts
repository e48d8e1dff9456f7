import { setTimeout as sleep } from 'node:timers/promises'
import { Admin, Connection, FindCoordinatorKeyTypes, metadataV12 } from '@platformatic/kafka'
import { topics } from '../../src/contracts/topics.ts'
import { clientConnection, type KafkaCluster } from '../../src/platform/kafka.ts'

/** Kafka's own topic of group offsets: a partition of it behind means a group's commits have one copy less. */
const OFFSETS_TOPIC = '__consumer_offsets'

export interface PartitionState {
  topic: string
  partition: number
  leader: number
  replicas: number[]
  isr: number[]
}

/**
 * Every partition of the project's topics and of the group offsets, as a broker that answers sees them.
 * The client's own metadata leaves Kafka's internal topics out, so this asks with the protocol's request
 * on a connection of its own.
 */
export async function partitionStates(cluster: KafkaCluster): Promise<PartitionState[]> {
  const errors: unknown[] = []
  for (const address of cluster.brokers) {
    const [host = '', port = ''] = address.split(':')
    const connection = new Connection('cluster-check', { connectTimeout: 2000, requestTimeout: 5000 })
    try {
      await connection.connect(host, Number(port))
      // Every topic (null): one not made yet, such as the offsets before any group committed, is no error then.
      const response = await metadataV12.api.async(connection, null, false, false)
      const wanted = new Set<string>([...Object.values(topics), OFFSETS_TOPIC])
      return response.topics
        .filter((topic) => wanted.has(topic.name ?? ''))
        .flatMap((topic) =>
          topic.partitions.map((p) => ({
            topic: topic.name ?? '',
            partition: p.partitionIndex,
            leader: p.leaderId,
            replicas: p.replicaNodes,
            isr: p.isrNodes
          }))
        )
    } catch (error) {
      errors.push(error)
    } finally {
      await connection.close().catch(() => {})
    }
  }
  throw new AggregateError(errors, 'no broker of the cluster answered')
}

/** Partitions with a replica missing from the in-sync set (Kafka's UnderReplicatedPartitions, over these topics). */
export function underReplicated(states: PartitionState[]): PartitionState[] {
  return states.filter((p) => p.isr.length < p.replicas.length)
}

/** Waits until no partition is under-replicated; returns how long that took, or throws after `timeoutMs`. */
export async function waitUntilFullyReplicated(cluster: KafkaCluster, timeoutMs: number): Promise<number> {
  const started = Date.now()
  let last = 'no answer'
  while (Date.now() - started < timeoutMs) {
    try {
      const behind = underReplicated(await partitionStates(cluster))
      if (behind.length === 0) return Date.now() - started
      last = `${behind.length} partitions under-replicated, e.g. ${behind[0]!.topic}-${behind[0]!.partition} (in sync: ${behind[0]!.isr.join(',')})`
    } catch (error) {
      last = String(error)
    }
    await sleep(250)
  }
  throw new Error(`the cluster was not fully replicated within ${timeoutMs / 1000} s: ${last}`)
}

/** The node leading `partition` of the customer events topic. */
export async function eventsPartitionLeader(cluster: KafkaCluster, partition = 0): Promise<number> {
  const state = (await partitionStates(cluster)).find((p) => p.topic === topics.customerEvents && p.partition === partition)
  if (!state || state.leader < 0) throw new Error(`${topics.customerEvents}-${partition} has no leader now`)
  return state.leader
}

/** The node that coordinates `groupId` (its members' heartbeats, joins and offset commits). */
export async function groupCoordinator(cluster: KafkaCluster, groupId: string): Promise<number> {
  const admin = new Admin({ clientId: 'cluster-check', ...clientConnection(cluster), retries: 2 })
  try {
    const [coordinator] = await admin.findCoordinator({ keyType: FindCoordinatorKeyTypes.GROUP, keys: [groupId] })
    if (!coordinator) throw new Error(`no coordinator for ${groupId}`)
    return coordinator.nodeId
  } finally {
    await admin.close()
  }
}
