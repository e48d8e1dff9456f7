import type { ExtraListener } from '../../src/platform/local/kafka-broker.ts'
import { freePort } from '../integration/free-port.ts'
import { type Toxic, type ToxicOptions, Toxiproxy } from './toxiproxy.ts'

/**
 * Each link between a service and what it talks to, as a proxy of its own, so that one can be cut alone:
 * the CIF service's and the syncer's to PostgreSQL and to Kafka, and the syncer's to each end system.
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

/**
 * Ports chosen before anything starts: the broker must advertise each service's Kafka proxy as the address
 * of that service's listener, so it must know the proxies' ports when it starts.
 */
export interface NetworkPlan {
  proxyPorts: Record<NetworkLink, number>
  kafkaListeners: ExtraListener[]
}

export async function planNetwork(): Promise<NetworkPlan> {
  const proxyPorts = {} as Record<NetworkLink, number>
  for (const link of networkLinks) proxyPorts[link] = await freePort()
  const kafkaListeners: ExtraListener[] = [
    { name: 'CIF', port: await freePort(), advertisedPort: proxyPorts['cif-kafka'] },
    { name: 'SYNCER', port: await freePort(), advertisedPort: proxyPorts['syncer-kafka'] }
  ]
  return { proxyPorts, kafkaListeners }
}

/** Every port a plan has taken: the proxies' and the broker's listeners'. */
export function planPorts(plan: NetworkPlan): number[] {
  return [...Object.values(plan.proxyPorts), ...plan.kafkaListeners.map((l) => l.port)]
}

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
  const listenerPort = (name: string) => plan.kafkaListeners.find((l) => l.name === name)!.port
  const upstreams: Record<NetworkLink, string> = {
    'cif-postgres': `127.0.0.1:${postgres.port}`,
    'syncer-postgres': `127.0.0.1:${postgres.port}`,
    'cif-kafka': `127.0.0.1:${listenerPort('CIF')}`,
    'syncer-kafka': `127.0.0.1:${listenerPort('SYNCER')}`,
    'core-banking': `127.0.0.1:${endSystemPorts['core-banking']}`,
    crm: `127.0.0.1:${endSystemPorts.crm}`,
    cards: `127.0.0.1:${endSystemPorts.cards}`
  }
  try {
    for (const link of networkLinks) await toxiproxy.createProxy(link, plan.proxyPorts[link], upstreams[link])
  } catch (error) {
    await toxiproxy.stop()
    throw error
  }
  const throughProxy = (link: NetworkLink): string => {
    const url = new URL(databaseUrl)
    url.port = String(plan.proxyPorts[link])
    return url.toString()
  }
  const viaProxy = (link: NetworkLink) => `http://127.0.0.1:${plan.proxyPorts[link]}`
  const network: Network = {
    toxiproxy,
    toxic: async (link, toxic, options) => {
      const name = await toxiproxy.addToxic(link, toxic, options)
      return () => toxiproxy.removeToxic(link, name)
    },
    cut: (link) => toxiproxy.setEnabled(link, false),
    restore: (link) => toxiproxy.setEnabled(link, true),
    reset: () => toxiproxy.reset()
  }
  return {
    network,
    cifEnv: { DATABASE_URL: throughProxy('cif-postgres'), KAFKA_BROKERS: `127.0.0.1:${plan.proxyPorts['cif-kafka']}` },
    syncerEnv: {
      DATABASE_URL: throughProxy('syncer-postgres'),
      KAFKA_BROKERS: `127.0.0.1:${plan.proxyPorts['syncer-kafka']}`,
      CORE_BANKING_URL: viaProxy('core-banking'),
      CRM_URL: viaProxy('crm'),
      CARDS_URL: viaProxy('cards')
    }
  }
}
