// The drain phase of `npm run bench`: a backlog of customer events already on the topic when the syncer
// starts, delivered to the three simulated systems until every delivery is SUCCESS; then, on the same
// events, the baseline forwarder (bench/baseline-forwarder.ts), a pipe with no database. CPU per delivery
// is read from /proc for each process, so the cost of recording every attempt is a measured ratio.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { sql } from 'kysely'
import { newCustomer } from '../src/cif/customer-store.ts'
import { cifIdFromNumber } from '../src/contracts/cif-id.ts'
import { customerEvent, customerEventTypes } from '../src/contracts/customer-events.ts'
import { topics } from '../src/contracts/topics.ts'
import { outboxMessage } from '../src/outbox/messages.ts'
import { createIdempotentProducer } from '../src/platform/kafka.ts'
import { devSigningKey } from '../test/support/event-keys.ts'
import { person } from '../test/support/load.ts'
import { ProcessMonitor, type ProcessUsage } from '../test/support/process-stats.ts'
import { configuredEndSystems } from '../test/support/soak-checker.ts'
import type { ProcessStack } from '../test/support/stack.ts'
import { resetStatements, type TopStatement, topStatements } from './statements.ts'

/** Far above the CIF service's own sequence (it starts at 1,000,000,000): the backlog's CIF IDs are its own. */
const FIRST_NUMBER = 9_000_000_000
/** The source system the stack's CIF service knows (CIF_SOURCE_SYSTEMS in test/support/stack.ts). */
const SOURCE_SYSTEM = 'branch-portal'
const TICKS_PER_SECOND = 100 // Linux USER_HZ

/** Busy CPU time of the whole machine so far, in ms: whatever runs on it, this benchmark or not. */
function machineBusyMs(): number {
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]!
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number)
  return ((user! + nice! + system! + irq! + softirq! + steal!) / TICKS_PER_SECOND) * 1000
}

/**
 * The backlog, put on the topic the way the CIF service does it: the same customer record (`toCustomer`
 * of a stored row), the same signed event (`customerEvent`, the development key the stack's CIF service
 * signs with), the same message (`outboxMessage`: keyed by CIF ID, the same header) and the same idempotent
 * producer as the outbox relay. Only the CIF database is skipped, which the syncer never reads.
 */
async function produceBacklog(stack: ProcessStack, customers: number): Promise<void> {
  const producer = createIdempotentProducer(stack.infrastructure.kafka, 'bench-backlog')
  try {
    const now = new Date()
    for (let from = 0; from < customers; from += 500) {
      const messages = []
      for (let i = from; i < Math.min(customers, from + 500); i++) {
        const input = person()
        const customer = newCustomer(cifIdFromNumber(FIRST_NUMBER + i), input, SOURCE_SYSTEM, now)
        const row = outboxMessage(topics.customerEvents, customerEvent(customerEventTypes.created, customer, SOURCE_SYSTEM, devSigningKey))
        messages.push({ topic: row.topic, key: row.message_key, value: row.payload, headers: JSON.parse(row.headers!) as Record<string, string> })
      }
      await producer.send({ messages })
    }
  } finally {
    await producer.close()
  }
}

interface Run {
  deliveries: number
  /** From the process's start (its start-up included) to the last delivery done. */
  seconds: number
  deliveriesPerSecond: number
  /** From the first delivery done to the last: the rate once running. */
  deliveriesPerSecondRunning: number
  processes: (ProcessUsage & { cpuMsPerDelivery: number })[]
  cpuMsPerDelivery: {
    /** The pipe itself: the syncer or the baseline, PostgreSQL and Kafka. */
    pipe: number
    simulator: number
    /** /proc/stat over the window: the benchmark's own process and anything else on the machine count too. */
    machine: number
  }
  /** The 1-minute load average at the end: above 2 on this machine, something else was running too. */
  loadAverageAtEnd: number
}

function measured(
  deliveries: number,
  window: { startedAt: number; firstAt: number; lastAt: number },
  processes: ProcessUsage[],
  machineMs: number
): Run {
  const per = (ms: number) => Number((ms / deliveries).toFixed(3))
  const cpuMs = (names: string[]) => processes.filter((p) => names.includes(p.name)).reduce((total, p) => total + p.cpuMs, 0)
  const seconds = (window.lastAt - window.startedAt) / 1000
  return {
    deliveries,
    seconds: Number(seconds.toFixed(1)),
    deliveriesPerSecond: Math.round(deliveries / seconds),
    deliveriesPerSecondRunning: Math.round((deliveries / Math.max(1, window.lastAt - window.firstAt)) * 1000),
    processes: processes.map((p) => ({ ...p, cpuMsPerDelivery: per(p.cpuMs) })),
    cpuMsPerDelivery: {
      pipe: per(cpuMs(processes.map((p) => p.name).filter((name) => name !== 'simulator' && name !== 'benchmark'))),
      simulator: per(cpuMs(['simulator'])),
      machine: per(machineMs)
    },
    loadAverageAtEnd: Number(loadavg()[0]!.toFixed(2))
  }
}

/** Sampled once a second (start with 1000): CPU time is cumulative, and reading /proc often costs the benchmark's process. */
function monitor(stack: ProcessStack, pipe: Record<string, () => number | undefined>): ProcessMonitor {
  return new ProcessMonitor(
    {
      ...pipe,
      postgresql: () => stack.infrastructure.localPostgres?.pid(),
      kafka: () => stack.infrastructure.localKafka?.pid(),
      simulator: () => stack.simulator.pid,
      // It polls the delivery table once a second (syncer) or waits (baseline): its share, shown apart.
      benchmark: () => process.pid
    },
    ['postgresql']
  )
}

/** The records each end system the syncer delivers to holds (the simulator also runs lending, which no shipped file names). */
async function simulatorRecords(stack: ProcessStack): Promise<Record<string, number>> {
  const configured = new Set(configuredEndSystems(stack))
  const systems = (await (await fetch(`${stack.simulatorUrl}/systems`)).json()) as { name: string; records: number }[]
  return Object.fromEntries(systems.filter((s) => configured.has(s.name)).map((s) => [s.name, s.records]))
}

async function resetSimulator(stack: ProcessStack): Promise<void> {
  for (const name of Object.keys(await simulatorRecords(stack))) {
    const response = await fetch(`${stack.simulatorUrl}/systems/${name}/reset`, { method: 'POST' })
    if (!response.ok) throw new Error(`resetting ${name} failed: ${response.status}`)
  }
}

async function drainWithSyncer(
  stack: ProcessStack,
  expected: number,
  timeoutMs: number
): Promise<Run & { states: Record<string, number>; intake: Awaited<ReturnType<typeof intakeBatches>>; topStatements: TopStatement[] }> {
  await resetStatements(stack.database.db)
  const since = new Date()
  const usage = monitor(stack, { syncer: () => stack.syncer.pid })
  const machineFrom = machineBusyMs()
  usage.start(1000)
  const startedAt = Date.now()
  await stack.syncer.start()
  const deadline = startedAt + timeoutMs
  let done = 0
  while (done < expected) {
    if (Date.now() > deadline) throw new Error(`the syncer delivered ${done} of ${expected} in ${timeoutMs} ms`)
    await sleep(1000)
    const { rows } = await sql<{ n: string }>`
      select count(*) as n from delivery where created_at >= ${since} and state = 'SUCCESS'`.execute(stack.database.db)
    done = Number(rows[0]!.n)
  }
  const processes = usage.stop()
  const machineMs = machineBusyMs() - machineFrom
  const { rows } = await sql<{ first: Date; last: Date; state: string; n: string }>`
    select min(completed_at) over () as first, max(completed_at) over () as last, state, count(*) over (partition by state) as n
    from delivery where created_at >= ${since}`.execute(stack.database.db)
  const states = Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]))
  const window = { startedAt, firstAt: rows[0]!.first.getTime(), lastAt: rows[0]!.last.getTime() }
  return {
    ...measured(done, window, processes, machineMs),
    states,
    intake: await intakeBatches(stack, since),
    topStatements: await topStatements(stack.database.db)
  }
}

/** The intake stores a batch of events in one transaction, so one batch's events share their `received_at` (now()). */
async function intakeBatches(stack: ProcessStack, since: Date): Promise<{ transactions: number; eventsPerTransaction: number }> {
  const { rows } = await sql<{ transactions: string; events: string }>`
    select count(distinct received_at) as transactions, count(*) as events from sync_event where received_at >= ${since}`.execute(stack.database.db)
  const transactions = Number(rows[0]!.transactions)
  return { transactions, eventsPerTransaction: Math.round(Number(rows[0]!.events) / Math.max(1, transactions)) }
}

async function drainWithBaseline(stack: ProcessStack, expected: number, timeoutMs: number): Promise<Run & { calls: number }> {
  const script = fileURLToPath(new URL('baseline-forwarder.ts', import.meta.url))
  let pid: number | undefined
  const usage = monitor(stack, { 'baseline forwarder': () => pid })
  const machineFrom = machineBusyMs()
  usage.start(1000)
  const startedAt = Date.now()
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, ...stack.env, BASELINE_GROUP: `bench-baseline-${startedAt}`, BASELINE_DELIVERIES: String(expected) },
    stdio: ['pipe', 'pipe', 'inherit']
  })
  pid = child.pid
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  // One line when done; the forwarder then waits for its stdin to close, so that its CPU time can still be read.
  const line = await new Promise<string | undefined>((resolve) => {
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('\n')) resolve(output.trim())
    })
    void exited.then(() => resolve(undefined))
  })
  const processes = usage.stop()
  const machineMs = machineBusyMs() - machineFrom
  child.stdin.end()
  const code = await exited
  clearTimeout(timer)
  if (line === undefined || code !== 0) throw new Error(`the baseline forwarder exited with ${code} after ${Date.now() - startedAt} ms`)
  const result = JSON.parse(line) as { deliveries: number; calls: number; refused: number; firstAt: number; lastAt: number }
  if (result.refused > 0) throw new Error(`the baseline forwarder refused ${result.refused} events as unsigned`)
  return { ...measured(result.deliveries, { startedAt, firstAt: result.firstAt, lastAt: result.lastAt }, processes, machineMs), calls: result.calls }
}

/**
 * Runs on a stack of its own, whose topic holds no customer events yet: the baseline reads the topic from its
 * start. The syncer is stopped for the backlog and for the baseline's run, and left stopped.
 */
export async function drainPhase(stack: ProcessStack, customers: number, say: (text: string) => void): Promise<Record<string, unknown>> {
  const expected = customers * Object.keys(await simulatorRecords(stack)).length
  const timeoutMs = Math.max(600_000, expected * 20)
  await stack.syncer.stop()
  const producing = Date.now()
  await produceBacklog(stack, customers)
  const backlogSeconds = (Date.now() - producing) / 1000
  say(`drain: ${customers} customer events on ${topics.customerEvents} in ${backlogSeconds.toFixed(1)} s; starting the syncer`)

  const syncer = await drainWithSyncer(stack, expected, timeoutMs)
  const syncerRecords = await simulatorRecords(stack)
  say(
    `drain: syncer ${syncer.deliveriesPerSecond} deliveries/s, CPU ms per delivery ${JSON.stringify(syncer.cpuMsPerDelivery)}, ` +
      `intake ${syncer.intake.eventsPerTransaction} events per transaction; ${JSON.stringify(syncerRecords)}`
  )
  await stack.syncer.stop()
  await resetSimulator(stack)

  const baseline = await drainWithBaseline(stack, expected, timeoutMs)
  const baselineRecords = await simulatorRecords(stack)
  say(
    `drain: baseline ${baseline.deliveriesPerSecond} deliveries/s, CPU ms per delivery ${JSON.stringify(baseline.cpuMsPerDelivery)}; ${JSON.stringify(baselineRecords)}`
  )

  for (const [label, records] of [
    ['syncer', syncerRecords],
    ['baseline', baselineRecords]
  ] as const) {
    if (Object.values(records).some((n) => n !== customers)) throw new Error(`after the ${label}'s drain the systems hold ${JSON.stringify(records)}`)
  }
  return {
    customers,
    deliveries: expected,
    backlog: `produced directly (signed customer events as the CIF service writes them), ${backlogSeconds.toFixed(1)} s`,
    syncer: { ...syncer, simulatorRecords: syncerRecords },
    baseline: { ...baseline, simulatorRecords: baselineRecords },
    ratio: {
      deliveriesPerSecond: Number((syncer.deliveriesPerSecond / baseline.deliveriesPerSecond).toFixed(2)),
      deliveriesPerSecondRunning: Number((syncer.deliveriesPerSecondRunning / baseline.deliveriesPerSecondRunning).toFixed(2)),
      pipeCpuMsPerDelivery: Number((syncer.cpuMsPerDelivery.pipe / baseline.cpuMsPerDelivery.pipe).toFixed(2))
    }
  }
}
