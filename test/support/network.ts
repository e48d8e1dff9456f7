import type { ExtraListener } from '../../src/platform/local/kafka-broker.ts'
import { freePort } from '../integration/free-port.ts'
import { type Toxic, type ToxicOptions, Toxiproxy } from './toxiproxy.ts'

/**
 * Each link between a service and what it talks to, through proxies of its own (a link to Kafka one per
 * broker), so that one can be cut alone: the CIF service's and the syncer's to PostgreSQL and to Kafka, and
 * the syncer's to each end system.
 */
export const networkLinks = ['cif-postgres', 'syncer-postgres', 'cif-kafka', 'syncer-kafka', 'core-banking', 'crm', 'cards'] as const
export type NetworkLink = (typeof networkLinks)[number]

/** The links to the end systems, by the end system's name (the simulator's and the end systems file's). */
export const endSystemLinks = ['core-banking', 'crm', 'cards'] as const satisfies readonly NetworkLink[]

/** The network between the services and the rest, with faults to put on it (`startProcessStack({ networkFaults: true })`). */
export interface Network {
  toxiproxy: Toxiproxy
  /** Puts a toxic on a link; the returned function takes it off again. */
  toxic(link: NetworkLink, toxic: Toxic, options?: ToxicOptions): Promise<() => Promise<void>>
  /** The link goes: its connections are closed and new ones refused, until `restore`. */
  cut(link: NetworkLink): Promise<void>
  restore(link: NetworkLink): Promise<void>
  /** Every link restored and every toxic taken off. */
  reset(): Promise<void>
}

/** The links to Kafka, each with the name of the broker listener its proxies lead to. */
const kafkaLinks = { 'cif-kafka': 'CIF', 'syncer-kafka': 'SYNCER' } as const satisfies Partial<Record<NetworkLink, string>>
const isKafkaLink = (link: NetworkLink): link is keyof typeof kafkaLinks => link in kafkaLinks

/**
 * Ports chosen before anything starts: each broker must advertise each service's Kafka proxy to it as the
 * address of that service's listener, so it must know the proxies' ports when it starts. A link to Kafka
 * has a proxy per broker (a client connects to each broker it is told of); the others one.
 */
export interface NetworkPlan {
  /** Each link's proxies' ports: a Kafka link's in broker order. */
  proxyPorts: Record<NetworkLink, number[]>
  /** For each broker, in node order, its listeners for the CIF service and the syncer (LocalKafkaOptions.extraListeners). */
  kafkaListeners: ExtraListener[][]
}

export async function planNetwork(brokers = 1): Promise<NetworkPlan> {
  const proxyPorts = {} as Record<NetworkLink, number[]>
  for (const link of networkLinks) {
    proxyPorts[link] = []
    for (let i = 0; i < (isKafkaLink(link) ? brokers : 1); i++) proxyPorts[link].push(await freePort())
  }
  const kafkaListeners: ExtraListener[][] = []
  for (let broker = 0; broker < brokers; broker++) {
    const listeners: ExtraListener[] = []
    for (const [link, name] of Object.entries(kafkaLinks)) {
      listeners.push({ name, port: await freePort(), advertisedPort: proxyPorts[link as NetworkLink][broker]! })
    }
    kafkaListeners.push(listeners)
  }
  return { proxyPorts, kafkaListeners }
}

/** Waits for every one of `work`, then throws the first failure, if any. */
export async function settleAll(work: Promise<void>[]): Promise<void> {
  const failed = (await Promise.allSettled(work)).find((result) => result.status === 'rejected')
  if (failed) throw failed.reason
}

/** A link's proxies' names in Toxiproxy: the link's own, numbered by broker when a Kafka link has several. */
const proxyNames = (plan: NetworkPlan, link: NetworkLink): string[] =>
  plan.proxyPorts[link].length === 1 ? [link] : plan.proxyPorts[link].map((_, i) => `${link}-${i + 1}`)

export interface NetworkStart {
  plan: NetworkPlan
  databaseUrl: string
  /** The simulator's port of each end system. */
  endSystemPorts: Record<(typeof endSystemLinks)[number], number>
  logFile: string
}

/** Toxiproxy with the plan's proxies, and the environment each service runs with to go through them. */
export async function startNetwork({ plan, databaseUrl, endSystemPorts, logFile }: NetworkStart): Promise<{
  network: Network
  cifEnv: Record<string, string>
  syncerEnv: Record<string, string>
}> {
  const toxiproxy = await Toxiproxy.start(await freePort(), logFile)
  const postgres = new URL(databaseUrl)
  const upstreams = (link: NetworkLink): string[] => {
    if (isKafkaLink(link)) return plan.kafkaListeners.map((listeners) => `127.0.0.1:${listeners.find((l) => l.name === kafkaLinks[link])!.port}`)
    if (link === 'cif-postgres' || link === 'syncer-postgres') return [`127.0.0.1:${postgres.port}`]
    return [`127.0.0.1:${endSystemPorts[link]}`]
  }
  try {
    for (const link of networkLinks) {
      const names = proxyNames(plan, link)
      const to = upstreams(link)
      for (const [i, name] of names.entries()) await toxiproxy.createProxy(name, plan.proxyPorts[link][i]!, to[i]!)
    }
  } catch (error) {
    await toxiproxy.stop()
    throw error
  }
  const throughProxy = (link: NetworkLink): string => {
    const url = new URL(databaseUrl)
    url.port = String(plan.proxyPorts[link][0])
    return url.toString()
  }
  const viaProxy = (link: NetworkLink) => `http://127.0.0.1:${plan.proxyPorts[link][0]}`
  const kafkaVia = (link: NetworkLink) => plan.proxyPorts[link].map((port) => `127.0.0.1:${port}`).join(',')
  // A change Toxiproxy cannot make (it has wedged on a proxy: see Toxiproxy.restart) is made by restarting it,
  // which takes off every toxic and drops every connection; the fault then fails with that said, so that a
  // run counts it and never goes on with a toxic or a cut left in place.
  const orRestart = async (what: string, change: () => Promise<void>): Promise<void> => {
    const restartsBefore = toxiproxy.restarts
    try {
      await change()
    } catch (error) {
      await toxiproxy.restart(restartsBefore)
      throw new Error(`${what}: ${(error as Error).message}; Toxiproxy restarted, every link's connections dropped`)
    }
  }
  // A fault on a link is on each of its proxies: a service cut off from Kafka reaches no broker.
  const network: Network = {
    toxiproxy,
    toxic: async (link, toxic, options) => {
      const added: [string, string][] = []
      const remove = () =>
        orRestart(`taking ${toxic.type} off ${link}`, () => settleAll(added.map(([proxy, name]) => toxiproxy.removeToxic(proxy, name))))
      try {
        for (const proxy of proxyNames(plan, link)) added.push([proxy, await toxiproxy.addToxic(proxy, toxic, options)])
      } catch (error) {
        // On some of the link's proxies only: taken off again, so that nothing stays on with no one to remove it.
        await remove().catch(() => {})
        throw error
      }
      return remove
    },
    cut: async (link) => {
      await orRestart(`cutting ${link}`, async () => {
        for (const proxy of proxyNames(plan, link)) await toxiproxy.setEnabled(proxy, false)
      })
    },
    restore: async (link) => {
      await orRestart(`restoring ${link}`, async () => {
        for (const proxy of proxyNames(plan, link)) await toxiproxy.setEnabled(proxy, true)
      })
    },
    reset: () => orRestart('resetting every link', () => toxiproxy.reset())
  }
  return {
    network,
    cifEnv: { DATABASE_URL: throughProxy('cif-postgres'), KAFKA_BROKERS: kafkaVia('cif-kafka') },
    syncerEnv: {
      DATABASE_URL: throughProxy('syncer-postgres'),
      KAFKA_BROKERS: kafkaVia('syncer-kafka'),
      CORE_BANKING_URL: viaProxy('core-banking'),
      CRM_URL: viaProxy('crm'),
      CARDS_URL: viaProxy('cards')
    }
  }
}
