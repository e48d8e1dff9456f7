import { setTimeout as sleep } from 'node:timers/promises'
import { type DeliveryState, openStates } from '../../src/syncer/delivery/states.ts'
import { badMessageKinds, type ProducedBadMessage, produceBadMessage } from './bad-messages.ts'
import { waitUntilDrained } from './invariants.ts'
import { runLoad } from './load.ts'
import { leavesBehind, type MisbehaviourKind, misbehave, misbehaviourKinds, redriveFailed } from './misbehaving-end-systems.ts'
import {
  injectCifKafkaPartition,
  injectConnectionResets,
  injectEndSystemBlackHole,
  injectLatency,
  injectSyncerPostgresPartition
} from './network-faults.ts'
import type { ServiceProcess } from './service-process.ts'
import { CallCollector, findProblems, observe, type SoakFindings } from './soak-checker.ts'
import { type ProcessStack, type StackOptions, setFault, sourceKey, startProcessStack } from './stack.ts'

/**
 * One kind of fault the soak draws from: `weight` is its share of the draws, `inject` breaks something and
 * puts it right again (a killed process restarted, a stopped server started) before it resolves. Injections
 * of any kinds overlap; each guards what it touches (`Guards`).
 */
export interface FaultKind {
  kind: string
  weight: number
  /** Drawn only on a stack with Toxiproxy on every link (`networkFaults`). */
  needsNetwork?: true
  inject(stack: ProcessStack, say: (text: string) => void): Promise<void>
}

const between = (min: number, max: number) => min + Math.floor(Math.random() * (max - min))
const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)]!

/**
 * What an injection holds while it works, so overlapping ones do not trip over each other: one process is
 * killed and restarted by one injection at a time, one end system has one fault at a time, and PostgreSQL and
 * Kafka are restarted one at a time.
 */
const busy = new Set<unknown>()
async function holding<T>(thing: unknown, work: () => Promise<T>): Promise<T | undefined> {
  if (busy.has(thing)) return undefined
  busy.add(thing)
  try {
    return await work()
  } finally {
    busy.delete(thing)
  }
}

/** Starts a service again, retrying while what it needs at start (Kafka, PostgreSQL) is away. */
export async function restart(service: ServiceProcess): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      // As long as the stack's own start allows: on a crowded machine a start took over a minute.
      return await service.start(180_000)
    } catch (error) {
      if (attempt >= 10) throw error
      await sleep(1000)
    }
  }
}

/** Instances killed or stopped in this run, and each one's time until it was ready again, from the kill and from its start. */
let kills = 0
const restarted: { fromKillMs: number; startMs: number }[] = []

/** Kills a random instance of a service not already being killed, and starts it again after 0.2-2 s. */
function killAny(name: string, instances: (stack: ProcessStack) => ServiceProcess[], signal: NodeJS.Signals): FaultKind['inject'] {
  return async (stack, say) => {
    const all = instances(stack)
    const free = all.filter((service) => !busy.has(service))
    if (free.length === 0) return
    const service = pick(free)
    await holding(service, async () => {
      await (signal === 'SIGKILL' ? service.kill('SIGKILL') : service.stop())
      const killedAt = Date.now()
      kills++
      say(`${name} ${all.indexOf(service) + 1} ${signal === 'SIGKILL' ? 'killed' : 'stopped'} (${signal})`)
      await sleep(between(200, 2000))
      const startedAt = Date.now()
      await restart(service)
      say(`${name} ${all.indexOf(service) + 1} ready again`)
      restarted.push({ fromKillMs: Date.now() - killedAt, startMs: Date.now() - startedAt })
    })
  }
}

/** Stops PostgreSQL for `minMs`-`maxMs`, then starts it again with its data. */
function postgresRestart(minMs: number, maxMs: number): FaultKind['inject'] {
  return async (stack, say) => {
    await holding('PostgreSQL', async () => {
      await stack.infrastructure.localPostgres!.stop()
      const downMs = between(minMs, maxMs)
      say(`PostgreSQL stopped for ${downMs} ms`)
      await sleep(downMs)
      await stack.infrastructure.localPostgres!.start()
    })
  }
}

/**
 * Stops one Kafka broker, any of the cluster's (the only one of a single broker), for `minMs`-`maxMs`, then
 * starts it again with its data. One broker at a time: a cluster of three keeps `min.insync.replicas` (2) with
 * one down, and a broker started alone while the other two are down could not find a quorum to join.
 */
function brokerDown(signal: NodeJS.Signals, minMs: number, maxMs: number): FaultKind['inject'] {
  return async (stack, say) => {
    const { brokers } = stack.infrastructure.localKafka!
    const broker = pick(brokers)
    await holding('Kafka broker', async () => {
      await broker.stop(signal)
      if (signal === 'SIGKILL') kills++
      const downMs = between(minMs, maxMs)
      say(`Kafka broker ${broker.nodeId} of ${brokers.length} ${signal === 'SIGKILL' ? 'killed' : 'stopped'} (${signal}) for ${downMs} ms`)
      await sleep(downMs)
      await broker.start()
      say(`Kafka broker ${broker.nodeId} listed again`)
    })
  }
}

/** Bad messages put on the events topic in this run: the checker is told each, with its documented outcome. */
const injectedMessages: ProducedBadMessage[] = []

/**
 * A bad message of a random kind straight onto cif.customer.events (bad-messages.ts); a version gap is filled
 * 1-5 s later. It holds the brokers meanwhile (no broker fault starts), so that a send is never cut short
 * between the broker taking the message and this run hearing so: what the checker is told is what was put there.
 */
const badMessage: FaultKind['inject'] = async (stack, say) => {
  await holding('Kafka broker', async () => {
    const message = await produceBadMessage(stack, pick([...badMessageKinds]), { say })
    injectedMessages.push(message)
    if (message.fillGap) {
      await sleep(between(1000, 5000))
      await message.fillGap()
      say('the version gap filled')
    }
  })
}

const endSystems = ['core-banking', 'crm', 'cards']

/** One end system misbehaves in one of the simulator's modes for `forMs`, then is well again. */
function endSystemFault(mode: (forMs: number) => Record<string, unknown>, minMs: number, maxMs: number): FaultKind['inject'] {
  return async (stack, say) => {
    const system = pick(endSystems)
    await holding(`end system ${system}`, async () => {
      const forMs = between(minMs, maxMs)
      const fault = mode(forMs)
      await setFault(stack, system, fault)
      say(`${system}: ${JSON.stringify(fault)} for ${forMs} ms`)
      await sleep(forMs)
      await setFault(stack, system, { mode: 'none' })
    })
  }
}

/** One end system misbehaves in a way a retry gets past, for its next few calls; it behaves again by itself. */
function endSystemMisbehaves(kind: MisbehaviourKind): FaultKind['inject'] {
  return async (stack, say) => {
    const system = pick(endSystems)
    await holding(`end system ${system}`, async () => {
      await misbehave(stack, system, kind, between(1, 4), say)
      await sleep(between(2000, 6000))
      await setFault(stack, system, { mode: 'none' })
    })
  }
}

/** A network fault (network-faults.ts) held for a random `minMs` to `maxMs`; drawn only on a stack with Toxiproxy. */
function networkKind(
  kind: string,
  weight: number,
  inject: (stack: ProcessStack, say: (text: string) => void, ms: number) => Promise<void>,
  minMs: number,
  maxMs: number
): FaultKind {
  // One at a time: Toxiproxy is likelier to wedge taking a latency toxic off a link that has another toxic
  // on it (Shopify/toxiproxy#159), and a run learns more from each fault alone.
  return {
    kind,
    weight,
    needsNetwork: true,
    inject: async (stack, say) => {
      await holding('network', () => inject(stack, say, between(minMs, maxMs)))
    }
  }
}

/**
 * The soak's faults. Adding a kind is one line here: any `inject(stack, say)` that breaks something and puts
 * it right again. Kills carry most of the weight, so that a 60-minute run at the default pace kills more
 * than 1,000 processes.
 */
export const soakFaultKinds: FaultKind[] = [
  { kind: 'CIF service killed (SIGKILL)', weight: 30, inject: killAny('CIF service', (stack) => stack.cifs, 'SIGKILL') },
  { kind: 'syncer killed (SIGKILL)', weight: 40, inject: killAny('syncer', (stack) => stack.syncers, 'SIGKILL') },
  {
    kind: 'an instance stopped (SIGTERM)',
    weight: 10,
    inject: killAny('instance', (stack) => [...stack.cifs, ...stack.syncers], 'SIGTERM')
  },
  { kind: 'PostgreSQL restarted', weight: 2, inject: postgresRestart(1000, 5000) },
  { kind: 'Kafka broker killed (SIGKILL)', weight: 2, inject: brokerDown('SIGKILL', 1000, 8000) },
  { kind: 'Kafka broker stopped (SIGTERM)', weight: 1, inject: brokerDown('SIGTERM', 1000, 8000) },
  { kind: 'end system down', weight: 4, inject: endSystemFault(() => ({ mode: 'down' }), 1000, 6000) },
  { kind: 'end system slow', weight: 4, inject: endSystemFault(() => ({ mode: 'slow', delayMs: between(200, 1500) }), 2000, 8000) },
  { kind: 'end system answers 500', weight: 4, inject: endSystemFault(() => ({ mode: 'status', status: 500 }), 1000, 5000) },
  {
    kind: 'end system fails the next calls',
    weight: 4,
    inject: endSystemFault(() => ({ mode: 'fail-next', count: between(1, 30), status: 503 }), 100, 500)
  },
  // The misbehaviours a retry gets past, and those that leave a create FAILED by design (redriven after the
  // load, as a person would). A record the system never stored is reconciliation's to find: not drawn here.
  ...misbehaviourKinds
    .filter((kind) => leavesBehind[kind] !== 'missing')
    .map(
      (kind): FaultKind => ({
        kind: `end system misbehaves: ${kind}`,
        weight: leavesBehind[kind] === 'retried' ? 2 : 1,
        inject: endSystemMisbehaves(kind)
      })
    ),
  networkKind('network: latency and jitter', 2, injectLatency, 2000, 6000),
  networkKind('network: connections reset', 2, injectConnectionResets, 2000, 6000),
  networkKind('network: an end system a black hole', 1, injectEndSystemBlackHole, 2000, 6000),
  networkKind('network: syncer cut off from PostgreSQL', 1, injectSyncerPostgresPartition, 2000, 5000),
  networkKind('network: CIF service cut off from Kafka', 1, injectCifKafkaPartition, 2000, 8000),
  { kind: 'bad message on the events topic', weight: 2, inject: badMessage }
]

/**
 * The mean time between two fault draws of the documented run. Kills are two thirds of the weight, but a kill
 * drawn while every instance of its service is restarting is not made: on the 2-core machine about 16 kills
 * a minute were made (1,275 in 78 minutes, docs/reliability.md), a draw every 2 s made about 10.
 */
export const DEFAULT_FAULT_INTERVAL_MS = 1000

export interface SoakOptions {
  minutes: number
  ratePerSecond: number
  /** Mean time between two fault draws (exponentially distributed: faults come in bursts and lulls). */
  meanFaultIntervalMs: number
  cifInstances: number
  syncerInstances: number
  /** Local Kafka brokers: 3 for a KRaft cluster (replication factor 3, `min.insync.replicas` 2), 1 by default. */
  kafkaBrokers?: number
  kinds?: FaultKind[]
  /** Overrides for the stack (the soak's own retry budget otherwise). */
  stack?: StackOptions
  say?: (text: string) => void
}

export interface SoakReport {
  options: Omit<SoakOptions, 'kinds' | 'say' | 'stack'>
  startedAt: string
  loadMs: number
  /** Injections begun, by kind. */
  faults: Record<string, number>
  /** Injections that threw (the stack could not be put right by the kind itself). */
  faultErrors: Record<string, number>
  /** Times Toxiproxy wedged and was restarted (Toxiproxy.restart): each dropped every connection through it. */
  toxiproxyRestarts: number
  kills: number
  creates: number
  updates: number
  requestErrors: number
  /** The CIF API's answers to the load, by status ('network' when the connection failed). */
  requestStatuses: Record<string, number>
  /** FAILED deliveries redriven after the load (the misbehaviours that fail a create by design, as a person would). */
  redriven: number
  /** From the end of the load until every delivery succeeded (the redrive included); -1 if not within the bound. */
  drainMs: number
  /** How long a killed instance took to be ready again (median, 95th percentile, worst): from the kill, and from its start. */
  readyAgainMs: { fromKill: Spread; fromStart: Spread }
  findings: SoakFindings
}

type Spread = { median: number; p95: number; max: number }

const DRAIN_BOUND_MS = 300_000

/** The draw of a weighted registry: each kind in proportion to its weight. */
export function draw(kinds: FaultKind[], random: number): FaultKind {
  const total = kinds.reduce((sum, k) => sum + k.weight, 0)
  let at = random * total
  for (const kind of kinds) {
    at -= kind.weight
    if (at < 0) return kind
  }
  return kinds.at(-1)!
}

function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!)
  return { median: at(0.5), p95: at(0.95), max: sorted.at(-1) ?? 0 }
}

/**
 * Steady load over every CIF instance, faults drawn from `kinds` at random times until the load ends, then
 * every instance up again, the drain, and the independent checker over what the stack did.
 */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const say = options.say ?? (() => {})
  // A retry budget that outlasts every outage the soak makes (the fault suite's), so that nothing FAILS.
  const stack = await startProcessStack({
    retry: { retries: 40, timeoutMs: 2000, timeoutMultiplier: 1.5, maxTimeoutMs: 5000, backoffMs: 200, maxBackoffMs: 1500 },
    circuitBreaker: { consecutiveFailures: 5, halfOpenAfterMs: 1000 },
    ...options.stack,
    cifInstances: options.cifInstances,
    syncerInstances: options.syncerInstances,
    kafkaBrokers: options.kafkaBrokers ?? 1
  })
  const kinds = (options.kinds ?? soakFaultKinds).filter((kind) => !kind.needsNetwork || stack.network)
  const calls = new CallCollector(stack.simulatorUrl, ['core-banking', 'crm', 'cards', 'lending'])
  const faults: Record<string, number> = {}
  const faultErrors: Record<string, number> = {}
  restarted.length = 0
  injectedMessages.length = 0
  kills = 0
  const startedAt = new Date()
  try {
    const durationMs = options.minutes * 60_000
    let lastMinute = 0
    const load = runLoad({
      cifUrl: stack.cifUrl,
      cifUrls: stack.cifUrls,
      apiKey: sourceKey,
      ratePerSecond: options.ratePerSecond,
      durationMs,
      updateShare: 0.3,
      onTick: (progress) => {
        const minute = Math.floor(progress.elapsedMs / 60_000)
        if (minute === lastMinute) return
        lastMinute = minute
        say(
          `minute ${minute}: ${progress.creates} creates, ${progress.updates} updates, ${progress.errors} request errors; ${kills} kills; ` +
            Object.entries(faults)
              .map(([kind, n]) => `${kind} ${n}`)
              .join(', ')
        )
      }
    })
    let loadEnded = false
    const ended = () => {
      loadEnded = true
    }
    load.then(ended, ended)
    const injections = new Set<Promise<void>>()
    // The call log is read as the run goes, so the simulator's bounded log never drops a call.
    const reading = (async () => {
      while (!loadEnded) {
        await calls.collect().catch(() => {})
        await sleep(5000)
      }
    })()
    while (!loadEnded) {
      const due = Date.now() + -Math.log(1 - Math.random()) * options.meanFaultIntervalMs
      while (!loadEnded && Date.now() < due) await sleep(Math.max(0, Math.min(1000, due - Date.now())))
      if (loadEnded) break
      const kind = draw(kinds, Math.random())
      faults[kind.kind] = (faults[kind.kind] ?? 0) + 1
      const injection = kind
        .inject(stack, (text) => say(`  ${text}`))
        .then(
          () => {},
          (error: unknown) => {
            faultErrors[kind.kind] = (faultErrors[kind.kind] ?? 0) + 1
            say(`  ! ${kind.kind}: ${(error as Error).message}`)
          }
        )
        .finally(() => injections.delete(injection))
      injections.add(injection)
    }
    const traffic = await load
    const loadEndedAt = Date.now()
    say(
      `load ended: ${traffic.creates} creates, ${traffic.updates} updates, ${traffic.errors} request errors; waiting for ${injections.size} faults to end`
    )
    await Promise.all(injections)
    await reading
    // A kind that threw may have left a link faulty, an instance or a broker down: every link is restored and
    // every one is up before the drain.
    // (A reset Toxiproxy cannot make restarts it, which clears every link as well: said, and the drain goes on.)
    await stack.network?.reset().catch((error: Error) => say(`! ${error.message}`))
    for (const broker of stack.infrastructure.localKafka?.brokers ?? []) if (broker.pid() === undefined) await broker.start()
    for (const service of [...stack.cifs, ...stack.syncers]) if (service.pid === undefined) await restart(service)
    // What FAILED by design (a misbehaviour the syncer must not guess past) waits for a person: once nothing is
    // being tried any more, every FAILED delivery is redriven, as an operator would once the end system is fixed.
    await waitUntilNone(deliveriesIn(stack, ['PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED']), DRAIN_BOUND_MS)
    const redriven = await redriveFailed(stack, 'the end system misbehaved during the soak; fixed')
    say(`${redriven} FAILED deliveries redriven`)
    const drained = await waitUntilDrained(stack, startedAt, DRAIN_BOUND_MS)
    const drainMs = drained < 0 ? -1 : Date.now() - loadEndedAt
    say(drained < 0 ? `! not drained within ${DRAIN_BOUND_MS / 1000} s` : `drained ${drainMs} ms after the load`)
    // The drain counts the CIF's customers; one made up on the topic by a bad message trails it by a gap's
    // fill. FAILED ends a delivery too here: a bad message's update of a customer never created.
    if (drained >= 0) await waitUntilNone(deliveriesIn(stack, unsettled), 60_000)
    await waitUntilNone(statusesUnpublished(stack), 60_000)
    const findings = findProblems(await observe(stack, calls, injectedMessages))
    return {
      options: {
        minutes: options.minutes,
        ratePerSecond: options.ratePerSecond,
        meanFaultIntervalMs: options.meanFaultIntervalMs,
        cifInstances: options.cifInstances,
        syncerInstances: options.syncerInstances,
        kafkaBrokers: options.kafkaBrokers ?? 1
      },
      startedAt: startedAt.toISOString(),
      loadMs: traffic.elapsedMs,
      faults,
      faultErrors,
      toxiproxyRestarts: stack.network?.toxiproxy.restarts ?? 0,
      kills,
      creates: traffic.creates,
      updates: traffic.updates,
      requestErrors: traffic.errors,
      requestStatuses: traffic.statuses,
      redriven,
      drainMs,
      readyAgainMs: { fromKill: spread(restarted.map((r) => r.fromKillMs)), fromStart: spread(restarted.map((r) => r.startMs)) },
      findings
    }
  } finally {
    await stack.stop()
  }
}

/** Deliveries in a state that is neither settled nor FAILED (FAILED waits for a person). */
const unsettled = openStates.filter((state) => state !== 'FAILED')

/** Polls `count` every half second until it is 0 or `timeoutMs` has passed. */
async function waitUntilNone(count: () => Promise<number>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && (await count()) > 0) await sleep(500)
}

/** How many deliveries are in `states`. */
const deliveriesIn = (stack: ProcessStack, states: readonly DeliveryState[]) => async (): Promise<number> => {
  const row = await stack.database.db
    .selectFrom('delivery')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('state', 'in', states)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

/** How many statuses the relay has yet to publish: the last trail the deliveries by a relay poll or two. */
const statusesUnpublished = (stack: ProcessStack) => async (): Promise<number> => {
  const row = await stack.database.db
    .selectFrom('sync_status_update')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('published_at', 'is', null)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}
