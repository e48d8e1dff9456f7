import { setTimeout as sleep } from 'node:timers/promises'
import { type Network, type NetworkLink, networkLinks, settleAll } from './network.ts'
import type { ProcessStack } from './stack.ts'
import type { Toxic, ToxicOptions } from './toxiproxy.ts'

type Say = (text: string) => void

function networkOf(stack: ProcessStack): Network {
  if (!stack.network) throw new Error('a network fault needs a stack started with { networkFaults: true }')
  return stack.network
}

/**
 * Puts toxics on links for `ms`, then takes them off again, whatever happened meanwhile: each is taken off
 * even when taking off another failed (else one failure leaves the rest on for good).
 */
async function withToxics(network: Network, toxics: { link: NetworkLink; toxic: Toxic; options?: ToxicOptions }[], ms: number): Promise<void> {
  const removers: (() => Promise<void>)[] = []
  try {
    for (const { link, toxic, options } of toxics) removers.push(await network.toxic(link, toxic, options))
    await sleep(ms)
  } finally {
    await settleAll(removers.map((remove) => remove()))
  }
}

/**
 * A silent partition of a link: an hour's latency both ways, so what was sent is held and arrives when it
 * heals (Toxiproxy's `timeout` toxic would drop the bytes and close the connection as it is taken off: a cut).
 */
async function silence(network: Network, link: NetworkLink, what: string, say: Say, ms: number): Promise<void> {
  say(`${what} silently partitioned`)
  await withToxics(network, bothWays(link, { type: 'latency', attributes: { latency: 3_600_000 } }), ms)
  say('partition healed')
}

/** A toxic on both directions of a link: toward the server (upstream) and back. */
const bothWays = (link: NetworkLink, toxic: Toxic): { link: NetworkLink; toxic: Toxic; options?: ToxicOptions }[] => [
  { link, toxic, options: { stream: 'upstream' } },
  { link, toxic }
]

/** Both directions of every link slowed by 50 to 250 ms, each packet its own delay (the jitter). */
export async function injectLatency(stack: ProcessStack, say: Say, ms = 6000): Promise<void> {
  const latency: Toxic = { type: 'latency', attributes: { latency: 150, jitter: 100 } }
  await sleep(1000)
  say('latency 150 ± 100 ms on every link, both ways')
  await withToxics(
    networkOf(stack),
    networkLinks.flatMap((link) => bothWays(link, latency)),
    ms
  )
  say('latency off')
}

/** Every link's answers limited to 32 KB/s: Kafka's fetches, PostgreSQL's result sets and the end systems' answers trickle. */
export async function injectBandwidthLimit(stack: ProcessStack, say: Say, ms = 6000): Promise<void> {
  await sleep(1000)
  say('bandwidth 32 KB/s on every link')
  await withToxics(
    networkOf(stack),
    networkLinks.map((link) => ({ link, toxic: { type: 'bandwidth', attributes: { rate: 32 } } as const })),
    ms
  )
  say('bandwidth limit off')
}

/**
 * Half the connections on every link reset (TCP RST) as their answer comes back: the end system has done the
 * call, PostgreSQL the statement, the broker the produce or the commit, and the service never hears so.
 */
export async function injectConnectionResets(stack: ProcessStack, say: Say, ms = 6000): Promise<void> {
  await sleep(1000)
  say('half the connections on every link reset as the answer comes')
  const reset = { type: 'reset_peer', attributes: { timeout: 0 } } as const
  await withToxics(
    networkOf(stack),
    networkLinks.map((link) => ({ link, toxic: reset, options: { toxicity: 0.5 } })),
    ms
  )
  say('resets off')
}

/** CRM's answers trickle in a byte every 100 ms: only a timeout that covers reading the body ends the call. */
export async function injectTricklingAnswers(stack: ProcessStack, say: Say, ms = 6000): Promise<void> {
  await sleep(1000)
  say("crm's answers trickle, a byte every 100 ms")
  await withToxics(networkOf(stack), [{ link: 'crm', toxic: { type: 'slicer', attributes: { average_size: 1, delay: 100_000 } } }], ms)
  say('crm answers at full speed again')
}

/** Core banking's link swallows every byte and never answers nor closes: each call runs into the syncer's timeout. */
export async function injectEndSystemBlackHole(stack: ProcessStack, say: Say, ms = 6000): Promise<void> {
  await sleep(1000)
  say('core-banking a black hole')
  const blackHole = { type: 'timeout', attributes: { timeout: 0 } } as const
  await withToxics(networkOf(stack), bothWays('core-banking', blackHole), ms)
  say('core-banking answers again')
}

/**
 * The syncer loses PostgreSQL while end-system calls are in flight: CRM's answers take 1.5 s (under the
 * timeout), so calls are under way when the link is cut; their outcome must still be recorded once it is back.
 */
export async function injectSyncerPostgresPartition(stack: ProcessStack, say: Say, ms = 5000): Promise<void> {
  const network = networkOf(stack)
  await sleep(1000)
  const removeSlowCrm = await network.toxic('crm', { type: 'latency', attributes: { latency: 1500 } })
  say('crm answers in 1.5 s')
  try {
    await sleep(2500)
    await network.cut('syncer-postgres')
    say('syncer cut off from PostgreSQL')
    await sleep(ms)
    await network.restore('syncer-postgres')
    say('syncer reaches PostgreSQL again')
  } finally {
    await network.restore('syncer-postgres')
    await removeSlowCrm()
  }
}

/**
 * The same partition, silent: nothing answers and nothing is closed (a dropped route, a firewall that drops);
 * what was sent is held and arrives when the partition heals, as TCP's retransmissions bring it. Only the
 * syncer's own timeouts can end what it waits on meanwhile (`silence`).
 */
export async function injectSyncerPostgresSilentPartition(stack: ProcessStack, say: Say, ms = 5000): Promise<void> {
  const network = networkOf(stack)
  await sleep(1000)
  const removeSlowCrm = await network.toxic('crm', { type: 'latency', attributes: { latency: 1500 } })
  say('crm answers in 1.5 s')
  try {
    await sleep(2500)
    await silence(network, 'syncer-postgres', 'syncer and PostgreSQL', say, ms)
  } finally {
    await removeSlowCrm()
  }
}

/**
 * The syncer's link to Kafka goes silent for longer than the group's session: its fetches and offset commits
 * are held, the group moves on without it, and the held commits arrive after the partition heals.
 */
export async function injectSyncerKafkaSilentPartition(stack: ProcessStack, say: Say, ms = 15_000): Promise<void> {
  await sleep(2000)
  await silence(networkOf(stack), 'syncer-kafka', 'syncer and Kafka', say, ms)
}

/** The CIF service's link to Kafka goes silent: its produce requests are held until the partition heals. */
export async function injectCifKafkaSilentPartition(stack: ProcessStack, say: Say, ms = 10_000): Promise<void> {
  await sleep(2000)
  await silence(networkOf(stack), 'cif-kafka', 'CIF service and Kafka', say, ms)
}

/** The CIF service loses Kafka: its outbox relay must hold the events and publish them once the link is back. */
export async function injectCifKafkaPartition(stack: ProcessStack, say: Say, ms = 10_000): Promise<void> {
  const network = networkOf(stack)
  await sleep(2000)
  await network.cut('cif-kafka')
  say('CIF service cut off from Kafka')
  try {
    await sleep(ms)
  } finally {
    await network.restore('cif-kafka')
  }
  say('CIF service reaches Kafka again')
}
