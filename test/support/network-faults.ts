import { setTimeout as sleep } from 'node:timers/promises'
import { endSystemLinks, type Network, type NetworkLink, networkLinks } from './network.ts'
import type { ProcessStack } from './stack.ts'
import type { Toxic, ToxicOptions } from './toxiproxy.ts'

type Say = (text: string) => void

function networkOf(stack: ProcessStack): Network {
  if (!stack.network) throw new Error('a network fault needs a stack started with { networkFaults: true }')
  return stack.network
}

/** Puts toxics on links for `ms`, then takes them off again, whatever happened meanwhile. */
async function withToxics(network: Network, toxics: { link: NetworkLink; toxic: Toxic; options?: ToxicOptions }[], ms: number): Promise<void> {
  const removers: (() => Promise<void>)[] = []
  try {
    for (const { link, toxic, options } of toxics) removers.push(await network.toxic(link, toxic, options))
    await sleep(ms)
  } finally {
    for (const remove of removers) await remove()
  }
}

/** Both directions of every link slowed by 50 to 250 ms, each packet its own delay (the jitter). */
export async function injectLatency(stack: ProcessStack, say: Say, ms = 6000): Promise<void> {
  const latency: Toxic = { type: 'latency', attributes: { latency: 150, jitter: 100 } }
  await sleep(1000)
  say('latency 150 ± 100 ms on every link, both ways')
  await withToxics(
    networkOf(stack),
    networkLinks.flatMap((link) => [
      { link, toxic: latency, options: { stream: 'upstream' as const } },
      { link, toxic: latency }
    ]),
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
 * Half the connections to each end system and to PostgreSQL reset (TCP RST) as their answer comes back: the
 * end system has done the call, or PostgreSQL the statement, and the syncer never hears so.
 */
export async function injectConnectionResets(stack: ProcessStack, say: Say, ms = 6000): Promise<void> {
  await sleep(1000)
  say('half the connections to the end systems and to PostgreSQL reset as the answer comes')
  const reset = { type: 'reset_peer', attributes: { timeout: 0 } } as const
  await withToxics(
    networkOf(stack),
    [...endSystemLinks, 'syncer-postgres' as const, 'cif-postgres' as const].map((link) => ({ link, toxic: reset, options: { toxicity: 0.5 } })),
    ms
  )
  say('resets off')
}

/** Core banking's link swallows every byte and never answers nor closes: each call runs into the syncer's timeout. */
export async function injectEndSystemBlackHole(stack: ProcessStack, say: Say, ms = 6000): Promise<void> {
  await sleep(1000)
  say('core-banking a black hole')
  const blackHole = { type: 'timeout', attributes: { timeout: 0 } } as const
  await withToxics(
    networkOf(stack),
    [
      { link: 'core-banking', toxic: blackHole, options: { stream: 'upstream' } },
      { link: 'core-banking', toxic: blackHole }
    ],
    ms
  )
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
 * The same partition, silent: nothing answers and nothing is closed (a dropped route, a firewall that drops),
 * so only the syncer's own timeouts can end the statements under way.
 */
export async function injectSyncerPostgresSilentPartition(stack: ProcessStack, say: Say, ms = 5000): Promise<void> {
  const network = networkOf(stack)
  await sleep(1000)
  const removeSlowCrm = await network.toxic('crm', { type: 'latency', attributes: { latency: 1500 } })
  say('crm answers in 1.5 s')
  try {
    await sleep(2500)
    const blackHole = { type: 'timeout', attributes: { timeout: 0 } } as const
    say('syncer silently partitioned from PostgreSQL')
    await withToxics(
      network,
      [
        { link: 'syncer-postgres', toxic: blackHole, options: { stream: 'upstream' } },
        { link: 'syncer-postgres', toxic: blackHole }
      ],
      ms
    )
    say('partition healed')
  } finally {
    await removeSlowCrm()
  }
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
