import { cp } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import { topics } from '../../src/contracts/topics.ts'
import { loadConfig } from '../../src/platform/config.ts'
import { CONSUMER_SESSION_TIMEOUT_MS, type KafkaCluster } from '../../src/platform/kafka.ts'
import type { LocalKafkaBroker } from '../../src/platform/local/kafka-broker.ts'
import { eventsPartitionLeader, groupCoordinator, waitUntilFullyReplicated } from './cluster.ts'
import { checkInvariants, type InvariantReport, waitUntilDrained } from './invariants.ts'
import { runLoad } from './load.ts'
import {
  injectBandwidthLimit,
  injectCifKafkaPartition,
  injectCifKafkaSilentPartition,
  injectConnectionResets,
  injectEndSystemBlackHole,
  injectLatency,
  injectSyncerKafkaSilentPartition,
  injectSyncerPostgresPartition,
  injectSyncerPostgresSilentPartition,
  injectTricklingAnswers
} from './network-faults.ts'
import type { ServiceProcess } from './service-process.ts'
import { type ProcessStack, setFault, sourceKey, startProcessStack } from './stack.ts'
import { TopicReader } from './topic-reader.ts'

export interface Scenario {
  name: string
  /** Breaks something while the load runs; `at` says how far into the load each step comes. */
  inject(stack: ProcessStack, say: (text: string) => void): Promise<void>
  /** It puts faults on the network: the suite's stack then runs with Toxiproxy on every link. */
  networkFaults?: boolean
}

/** What the services' readiness said at the end of a scenario: the intake's and the relays' own account. */
export interface ServiceHealth {
  syncer: unknown
  cif: unknown
}

export interface ScenarioReport extends InvariantReport {
  scenario: string
  created: number
  updated: number
  /** From the end of the load (or of the fault, if later) until every delivery succeeded; -1 if never within the bound. */
  recoveryMs: number
  /** From the end of the fault until the syncer's intake was consuming again (0 if it never stopped); -1 if never. */
  consumingAgainMs: number
  /**
   * Restarts during the scenario of the syncer's intake and status relay and of the CIF service's outbox
   * relay, with the reason of the last one of each (`watchdog: ...` when the backstop acted).
   */
  restarts: Record<RestartingPart, number>
  lastRestarts: Partial<Record<RestartingPart, string>>
  /** Readiness of both services when the scenario ended, kept when it did not recover. */
  health?: ServiceHealth
}

const systems = ['core-banking', 'crm', 'cards']
const randomBetween = (min: number, max: number) => min + Math.floor(Math.random() * (max - min))
/** A scenario whose stack has not recovered this long after its load is reported as not recovered. */
const RECOVERY_BOUND_MS = 120_000

/** A server stopped two seconds into the load, for `downMs`, then started again with its data. */
function restarted(
  name: string,
  server: (stack: ProcessStack) => { stop(signal?: NodeJS.Signals): Promise<void>; start(): Promise<void> },
  downMs: number,
  signal: NodeJS.Signals = 'SIGTERM'
): Scenario {
  return {
    name,
    inject: async (stack, say) => {
      await sleep(2000)
      await server(stack).stop(signal)
      say(`stopped (${signal})`)
      await sleep(downMs)
      await server(stack).start()
      say('back')
    }
  }
}

/**
 * Whom `count` kills hit: random instances, but each at least once when there are as many kills as
 * instances (the kills are raised to that many), so no instance's recovery goes untested. `n` counts from 1.
 */
export function everyOneInTurn<T>(instances: T[], count: number): { service: T; n: number }[] {
  const numbered = instances.map((service, i) => ({ service, n: i + 1 }))
  const shuffled = numbered
    .map((entry) => ({ entry, at: Math.random() }))
    .sort((a, b) => a.at - b.at)
    .map(({ entry }) => entry)
  return Array.from({ length: Math.max(count, instances.length) }, (_, i) =>
    i < shuffled.length ? shuffled[i]! : numbered[Math.floor(Math.random() * numbered.length)]!
  )
}

const broker = (stack: ProcessStack) => stack.infrastructure.localKafka!

/** The five kinds of failure; the short run in `npm test` and the full suite both run these. */
export function scenarios(scale: number): Scenario[] {
  return [
    {
      name: 'syncer killed (SIGKILL) and restarted',
      inject: async (stack, say) => {
        const targets = everyOneInTurn(stack.syncers, 2 + scale)
        for (const [i, { service, n }] of targets.entries()) {
          await sleep(randomBetween(500, 2500 * scale))
          await service.kill('SIGKILL')
          say(`syncer ${n} killed (${i + 1})`)
          await sleep(randomBetween(200, 1500))
          await service.start()
        }
      }
    },
    {
      name: 'CIF service killed (SIGKILL) and restarted',
      inject: async (stack, say) => {
        for (const { service, n } of everyOneInTurn(stack.cifs, scale)) {
          await sleep(randomBetween(1000, 3000 * scale))
          await service.kill('SIGKILL')
          say(`CIF service ${n} killed`)
          await sleep(1000)
          await service.start()
        }
      }
    },
    // Long enough, even in the short run, for the clients to give up retrying on their own.
    restarted('Kafka broker stopped and restarted', broker, Math.max(9000, 3000 * scale)),
    restarted('PostgreSQL stopped and restarted', (stack) => stack.infrastructure.localPostgres!, Math.max(6000, 2000 * scale)),
    {
      name: 'end systems down, one at a time and all together',
      inject: async (stack, say) => {
        for (const system of systems) {
          await setFault(stack, system, { mode: 'down' })
          say(`${system} down`)
          await sleep(1500 * scale)
          await setFault(stack, system, { mode: 'none' })
        }
        for (const system of systems) await setFault(stack, system, { mode: 'down' })
        say('all end systems down')
        await sleep(2500 * scale)
        for (const system of systems) await setFault(stack, system, { mode: 'none' })
      }
    }
  ]
}

/** Other shapes of a broker outage: killed, shorter and longer than the clients' retries and the group session, frozen, and mid-rebalance. */
export function kafkaVariants(): Scenario[] {
  return [
    restarted('Kafka broker killed (SIGKILL) and restarted after 5 s', broker, 5000, 'SIGKILL'),
    restarted('Kafka broker stopped for 15 s', broker, 15_000),
    restarted('Kafka broker stopped for 60 s', broker, 60_000),
    {
      // Its connections stay open and nothing answers: no client sees an error until its requests time out.
      name: 'Kafka broker frozen (SIGSTOP) for 15 s',
      inject: async (stack, say) => {
        await sleep(2000)
        const pid = broker(stack).pid()!
        process.kill(pid, 'SIGSTOP')
        say('frozen (SIGSTOP)')
        try {
          await sleep(15_000)
        } finally {
          process.kill(pid, 'SIGCONT')
        }
        say('thawed')
      }
    },
    {
      name: 'Kafka broker stopped while a second syncer joins the group',
      inject: async (stack, say) => {
        await sleep(2000)
        const second = await stack.anotherSyncer()
        // It may find Kafka away while it starts (and then exits, as a syncer does that cannot reach Kafka at start).
        const joining = startWithRetries(second, 5)
        await sleep(1500) // its process is up and its consumer joining: the group is rebalancing
        await broker(stack).stop()
        say('stopped while a second syncer joins the group')
        await sleep(9000)
        await broker(stack).start()
        say('back')
        await joining
        say('second syncer consuming')
        await sleep(3000)
        await second.stop()
        say('second syncer stopped: its partitions move back')
      }
    }
  ]
}

/** The events topic's partition 0 leader killed (SIGKILL) two seconds into the load, and started again 5 s later. */
export async function killEventsLeader(stack: ProcessStack, say: (text: string) => void): Promise<void> {
  await sleep(2000)
  const kafka = broker(stack)
  const leader = await eventsPartitionLeader(kafka.cluster)
  const killed = kafka.brokers.find((b) => b.nodeId === leader)!
  await killed.stop('SIGKILL')
  say(`broker ${leader}, leader of ${topics.customerEvents}-0, killed (SIGKILL)`)
  await sleep(5000)
  await restartAndResync(kafka.cluster, killed, say)
}

/**
 * The broker coordinating the syncers' group stopped for longer than the group's session: the members'
 * heartbeats go nowhere until another broker takes the group over.
 */
export async function stopCoordinatorPastSession(stack: ProcessStack, say: (text: string) => void): Promise<void> {
  await sleep(2000)
  const kafka = broker(stack)
  const coordinator = await groupCoordinator(kafka.cluster, loadConfig(stack.env).syncer.groupId)
  const stopped = kafka.brokers.find((b) => b.nodeId === coordinator)!
  await stopped.stop()
  const downMs = CONSUMER_SESSION_TIMEOUT_MS + 5000
  say(`broker ${coordinator}, the syncers' group coordinator, stopped for ${downMs / 1000} s`)
  await sleep(downMs)
  await restartAndResync(kafka.cluster, stopped, say)
}

/** Each broker in turn stopped (SIGTERM) and started, the next only once no partition is under-replicated. */
export async function rollingRestart(stack: ProcessStack, say: (text: string) => void): Promise<void> {
  await sleep(2000)
  const kafka = broker(stack)
  for (const each of kafka.brokers) {
    await each.stop()
    say(`broker ${each.nodeId} stopped`)
    await restartAndResync(kafka.cluster, each, say)
  }
}

async function restartAndResync(cluster: KafkaCluster, restarting: LocalKafkaBroker, say: (text: string) => void): Promise<void> {
  const started = Date.now()
  await restarting.start()
  const listedMs = Date.now() - started
  const replicatedMs = await waitUntilFullyReplicated(cluster, RECOVERY_BOUND_MS)
  say(`broker ${restarting.nodeId} back in ${listedMs} ms, every partition fully replicated ${replicatedMs} ms later`)
}

/** The three ways a broker of a three-broker cluster goes away (`npm run test:faults:cluster`, or `npm run test:faults -- Cluster`). */
export function clusterScenarios(): Scenario[] {
  return [
    { name: 'Cluster: the events partition leader killed (SIGKILL) and restarted', inject: killEventsLeader },
    { name: "Cluster: the group's coordinator broker stopped for longer than the session timeout", inject: stopCoordinatorPastSession },
    { name: 'Cluster: rolling restart of all three brokers', inject: rollingRestart }
  ]
}

/** Faults on the links between the services and PostgreSQL, Kafka and the end systems, through Toxiproxy. */
export function networkScenarios(scale: number): Scenario[] {
  const ms = 3000 * scale
  const network: Omit<Scenario, 'networkFaults'>[] = [
    { name: 'network: latency and jitter on every link', inject: (stack, say) => injectLatency(stack, say, ms) },
    { name: 'network: bandwidth limit on every link', inject: (stack, say) => injectBandwidthLimit(stack, say, ms) },
    { name: 'network: connections reset on every link', inject: (stack, say) => injectConnectionResets(stack, say, ms) },
    { name: 'network: an end system a black hole', inject: (stack, say) => injectEndSystemBlackHole(stack, say, ms) },
    { name: "network: an end system's answers trickle", inject: (stack, say) => injectTricklingAnswers(stack, say, ms) },
    {
      name: 'network: syncer cut off from PostgreSQL with calls in flight',
      inject: (stack, say) => injectSyncerPostgresPartition(stack, say, Math.max(5000, 2000 * scale))
    },
    {
      name: 'network: syncer silently partitioned from PostgreSQL with calls in flight',
      inject: (stack, say) => injectSyncerPostgresSilentPartition(stack, say, Math.max(5000, 2000 * scale))
    },
    {
      name: 'network: syncer silently partitioned from Kafka',
      inject: (stack, say) => injectSyncerKafkaSilentPartition(stack, say, Math.max(15_000, 5000 * scale))
    },
    { name: 'network: CIF service cut off from Kafka', inject: (stack, say) => injectCifKafkaPartition(stack, say, Math.max(10_000, 3000 * scale)) },
    {
      name: 'network: CIF service silently partitioned from Kafka',
      inject: (stack, say) => injectCifKafkaSilentPartition(stack, say, Math.max(10_000, 3000 * scale))
    }
  ]
  return network.map((scenario) => ({ ...scenario, networkFaults: true }))
}

async function startWithRetries(service: ServiceProcess, tries: number): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await service.start()
    } catch (error) {
      if (attempt >= tries) throw error
      await sleep(2000)
    }
  }
}

export interface FaultSuiteOptions {
  ratePerSecond: number
  /** 1 for the short run in the default tests; larger for `npm run test:faults`. */
  scale: number
  /** Instances of each service (the stack's default, 1 each, when not given); kills hit any of them. */
  cifInstances?: number
  syncerInstances?: number
  /** Scenarios to run, in order; `scenarios(scale)` when not given. */
  scenarios?: Scenario[]
  /** Where to copy the services' and the broker's logs when a scenario lost something or did not recover. */
  keepLogsOfFailuresIn?: string
  say?: (text: string) => void
  /** Local Kafka brokers of the stack: 3 for `clusterScenarios()`; 1 when not given. */
  kafkaBrokers?: number
}

interface PartHealth {
  state: string
  since?: string
  restarts: number
  lastRestart: { reason: string } | null
}

export interface Readiness {
  ok: boolean
  body: { details?: Partial<Record<RestartingPart, PartHealth>> } | undefined
}

/** The parts that start their Kafka clients over by themselves, as their services' readiness names them. */
const restartingParts = { intake: 'syncer', statusRelay: 'syncer', outboxRelay: 'cif' } as const
type RestartingPart = keyof typeof restartingParts

/** A service's readiness, within 5 s: not ready when it does not answer. */
export async function readiness(url: string): Promise<Readiness> {
  try {
    const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(5000) })
    return { ok: response.ok, body: (await response.json()) as Readiness['body'] }
  } catch {
    return { ok: false, body: undefined }
  }
}

async function serviceHealth(stack: ProcessStack): Promise<ServiceHealth> {
  const [syncer, cif] = await Promise.all([readiness(stack.syncerUrl), readiness(stack.cifUrl)])
  return { syncer: syncer.body ?? 'no answer', cif: cif.body ?? 'no answer' }
}

/** True when both services are ready and nothing from earlier is still in flight: a known-good stack. */
async function settled(stack: ProcessStack, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const [syncer, cif] = await Promise.all([readiness(stack.syncerUrl), readiness(stack.cifUrl)])
    if (syncer.ok && cif.ok) {
      const { rows } = await sql<{ open: string }>`
        select (select count(*) from delivery where state in ('PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED'))
             + (select count(*) from outbox_message where status = 'PENDING')
             + (select count(*) from sync_status_update where published_at is null) as open`.execute(stack.database.db)
      if (Number(rows[0]!.open) === 0) return true
    }
    await sleep(500)
  }
  return false
}

/**
 * Each scenario starts from a known-good stack, so that one that did not recover is reported as such and
 * does not turn the ones after it into noise: if the stack has not settled, the services are restarted.
 */
async function ensureKnownGood(stack: ProcessStack, say: (text: string) => void): Promise<void> {
  if (await settled(stack, 60_000)) return
  say(`! the stack did not settle; restarting the services. Their state: ${JSON.stringify(await serviceHealth(stack))}`)
  const services = [...stack.syncers, ...stack.cifs]
  await Promise.all(services.map((service) => service.kill('SIGKILL')))
  await Promise.all(services.map((service) => service.start()))
  if (!(await settled(stack, 120_000))) throw new Error('the stack did not settle even after its services were restarted')
}

/** How long after `faultEndedAt` the syncer's intake was consuming again, by its own account; -1 if not within the bound. */
async function untilConsuming(stack: ProcessStack, faultEndedAt: number, timeoutMs: number): Promise<number> {
  while (Date.now() - faultEndedAt < timeoutMs) {
    const intake = (await readiness(stack.syncerUrl)).body?.details?.intake
    if (intake?.state === 'consuming' && intake.since) return Math.max(0, Date.parse(intake.since) - faultEndedAt)
    await sleep(100)
  }
  return -1
}

/** Each part's restarts since its process started, with the last one's reason, and the process ids. */
async function restartCounts(stack: ProcessStack) {
  const [syncer, cif] = await Promise.all([readiness(stack.syncerUrl), readiness(stack.cifUrl)])
  const parts = Object.fromEntries(
    Object.entries(restartingParts).map(([part, service]) => [part, (service === 'syncer' ? syncer : cif).body?.details?.[part as RestartingPart]])
  ) as Partial<Record<RestartingPart, PartHealth>>
  return { parts, pids: { syncer: stack.syncer.pid, cif: stack.cif.pid } }
}

/** What restarted between two counts; a process that was restarted in between counts from zero. */
function restartsBetween(before: Awaited<ReturnType<typeof restartCounts>>, after: Awaited<ReturnType<typeof restartCounts>>) {
  const restarts = {} as Record<RestartingPart, number>
  const lastRestarts: Partial<Record<RestartingPart, string>> = {}
  for (const [part, service] of Object.entries(restartingParts) as [RestartingPart, 'syncer' | 'cif'][]) {
    const sameProcess = before.pids[service] === after.pids[service]
    restarts[part] = (after.parts[part]?.restarts ?? 0) - (sameProcess ? (before.parts[part]?.restarts ?? 0) : 0)
    const last = after.parts[part]?.lastRestart?.reason
    if (restarts[part] > 0 && last) lastRestarts[part] = last
  }
  return { restarts, lastRestarts }
}

/**
 * Runs each scenario under a steady stream of creates and updates, lets the stack recover, and checks
 * the same invariants after each. The services run as processes of their own, so they can be killed.
 */
export async function runFaultSuite(options: FaultSuiteOptions): Promise<ScenarioReport[]> {
  const say = options.say ?? (() => {})
  // Enough retry budget to outlast every outage here (about a minute); ordering and idempotency are the production ones.
  const chosen = options.scenarios ?? scenarios(options.scale)
  const stack = await startProcessStack({
    retry: { retries: 40, timeoutMs: 2000, timeoutMultiplier: 1.5, maxTimeoutMs: 5000, backoffMs: 200, maxBackoffMs: 1500 },
    circuitBreaker: { consecutiveFailures: 5, halfOpenAfterMs: 1000 },
    cifInstances: options.cifInstances,
    syncerInstances: options.syncerInstances,
    ...(options.kafkaBrokers && { kafkaBrokers: options.kafkaBrokers }),
    networkFaults: chosen.some((scenario) => scenario.networkFaults)
  })
  const status = await TopicReader.open(stack.infrastructure.kafka, topics.syncStatus)
  const inSync = (cifId: string, version: number): boolean =>
    status.forKey(cifId).some((m) => m.value.type === 'cif.sync.customer.in-sync' && m.value.data.customerVersion === version)
  const reports: ScenarioReport[] = []
  let repeatedBefore = 0
  try {
    for (const scenario of chosen) {
      await ensureKnownGood(stack, say)
      say(`scenario: ${scenario.name}`)
      const countsBefore = await restartCounts(stack)
      const since = new Date()
      const load = runLoad({
        cifUrl: stack.cifUrl,
        cifUrls: stack.cifUrls,
        apiKey: sourceKey,
        ratePerSecond: options.ratePerSecond,
        durationMs: 8000 * options.scale,
        updateShare: 0.3
      })
      await scenario.inject(stack, (text) => say(`  ${text}`))
      const consumingAgainMs = await untilConsuming(stack, Date.now(), RECOVERY_BOUND_MS)
      const traffic = await load
      const recoveryMs = await waitUntilDrained(stack, since, RECOVERY_BOUND_MS)
      // The last "in sync" messages trail the deliveries by a relay poll or two.
      const statusDeadline = Date.now() + 30_000
      let report = await checkInvariants(stack, since, inSync)
      while (report.lost > 0 && Date.now() < statusDeadline) {
        await sleep(500)
        report = await checkInvariants(stack, since, inSync)
      }
      // The simulator counts repeats since it started; each scenario reports its own.
      const repeatedTotal = report.repeatedCalls
      report.repeatedCalls -= repeatedBefore
      repeatedBefore = repeatedTotal
      const { restarts, lastRestarts } = restartsBetween(countsBefore, await restartCounts(stack))
      const recovered = recoveryMs >= 0 && report.lost === 0
      if (recoveryMs < 0) report.problems.unshift(`not recovered within ${RECOVERY_BOUND_MS / 1000} s of the end of the load`)
      reports.push({
        scenario: scenario.name,
        created: traffic.creates,
        updated: traffic.updates,
        recoveryMs,
        consumingAgainMs,
        ...report,
        restarts,
        lastRestarts,
        ...(recovered ? {} : { health: await serviceHealth(stack) })
      })
      say(
        `  customers ${report.customers}, versions ${report.versions}, deliveries ${report.deliveries}, repeated calls ${report.repeatedCalls}, lost ${report.lost}, ` +
          (recoveryMs >= 0 ? `recovered in ${recoveryMs} ms` : 'NOT RECOVERED') +
          `, consuming again ${consumingAgainMs} ms after the fault` +
          Object.entries(lastRestarts)
            .map(([part, last]) => `; ${part} restarts ${restarts[part as RestartingPart]} (last: ${last})`)
            .join('')
      )
      for (const text of report.problems) say(`  ! ${text}`)
      if (!recovered) say(`  ! state: ${JSON.stringify(reports.at(-1)!.health)}`)
    }
  } finally {
    await status.close()
    // What the services and the broker logged is what a person needs to see why a scenario failed.
    if (options.keepLogsOfFailuresIn && reports.some((r) => r.lost > 0 || r.recoveryMs < 0)) {
      await cp(join(stack.dir, 'logs'), options.keepLogsOfFailuresIn, { recursive: true })
      await cp(join(stack.dir, 'kafka', 'broker.log'), join(options.keepLogsOfFailuresIn, 'broker.log')).catch(() => {})
      for (const { nodeId } of stack.infrastructure.localKafka?.brokers ?? []) {
        await cp(join(stack.dir, 'kafka', `broker-${nodeId}`, 'broker.log'), join(options.keepLogsOfFailuresIn, `broker-${nodeId}.log`)).catch(
          () => {}
        )
      }
      say(`logs kept in ${options.keepLogsOfFailuresIn}`)
    }
    await stack.stop()
  }
  return reports
}
