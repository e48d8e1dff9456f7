// `npm run bench`: throughput and latency of the whole pipeline on this machine. Starts its own stack
// (PostgreSQL, Kafka, and the CIF service, syncer and simulator as processes), drives the CIF API, and
// writes a table and bench/results/<time>.json. Everything shares this machine's cores: say so with figures.
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import * as hdr from 'hdr-histogram-js'
import { sql } from 'kysely'
import { stateList } from '../src/syncer/delivery/delivery-store.ts'
import { settledStates, transitions } from '../src/syncer/delivery/states.ts'
import { waitUntilDrained } from '../test/support/invariants.ts'
import { type LoadOptions, type LoadResult, percentiles, runLoad } from '../test/support/load.ts'
import { ProcessMonitor, type ProcessUsage } from '../test/support/process-stats.ts'
import { type ProcessStack, setFault, sourceKey, startProcessStack } from '../test/support/stack.ts'
import { drainPhase } from './drain.ts'
import { historyPhase } from './history.ts'
import { reconcilePhase } from './reconcile.ts'
import { resetStatements, topStatements } from './statements.ts'

const started = Date.now()
const say = (text: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${text}\n`)
const scale = Number(process.env.BENCH_SCALE ?? 1)
const only = new Set(process.argv.slice(2))
const runs = (part: string) => only.size === 0 || only.has(part)
const seconds = (s: number) => Math.round(s * 1000 * scale)

function histogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 })
}

/** Create (or update) request → SUCCESS at every end system (or at `endSystem`), from the stored completion times. */
async function endToEnd(
  stack: ProcessStack,
  load: LoadResult,
  since: Date,
  endSystem?: string
): Promise<{ latency: hdr.Histogram; unfinished: number }> {
  const { rows } = await sql<{ cif_id: string; customer_version: number; done: Date | null }>`
    select cif_id, customer_version, case when bool_and(state = 'SUCCESS') then max(completed_at) end as done
    from delivery where created_at >= ${since} ${endSystem ? sql`and end_system = ${endSystem}` : sql``}
    group by cif_id, customer_version`.execute(stack.database.db)
  const latency = histogram()
  let unfinished = 0
  for (const row of rows) {
    const requestedAt = load.requestedAt.get(`${row.cif_id}:${row.customer_version}`)
    if (requestedAt === undefined) continue
    if (!row.done) unfinished++
    else latency.recordValue(Math.max(1, Math.round((row.done.getTime() - requestedAt) * 1000)))
  }
  return { latency, unfinished }
}

/** Where work waits: events not yet on Kafka, events not yet taken by the syncer, deliveries not yet done. */
async function backlog(stack: ProcessStack): Promise<string> {
  const { rows } = await sql<{ outbox: string; statuses: string; deliveries: string }>`
    select (select count(*) from outbox_message where status = 'PENDING') as outbox,
           (select count(*) from sync_status_update where published_at is null) as statuses,
           (select count(*) from delivery where state not in (${stateList([...settledStates, transitions.fail.to])})) as deliveries`.execute(
    stack.database.db
  )
  const { outbox, statuses, deliveries } = rows[0]!
  return `outbox pending ${outbox}, statuses unpublished ${statuses}, deliveries open ${deliveries}`
}

async function load(stack: ProcessStack, label: string, options: Omit<LoadOptions, 'cifUrl' | 'apiKey'>): Promise<LoadResult> {
  return runLoad({
    cifUrl: stack.cifUrl,
    apiKey: sourceKey,
    ...options,
    onTick: (p) => {
      void backlog(stack).then((queued) =>
        say(`${label}: ${(p.elapsedMs / 1000).toFixed(0)} s, ${p.creates} creates, ${p.updates} updates, ${p.errors} errors; ${queued}`)
      )
    }
  })
}

function monitor(stack: ProcessStack): ProcessMonitor {
  return new ProcessMonitor(
    {
      'cif-service': () => stack.cif.pid,
      syncer: () => stack.syncer.pid,
      simulator: () => stack.simulator.pid,
      kafka: () => stack.infrastructure.localKafka?.pid(),
      postgresql: () => stack.infrastructure.localPostgres?.pid(),
      'load generator': () => process.pid
    },
    ['postgresql']
  )
}

async function deliveriesDone(stack: ProcessStack, since: Date): Promise<number> {
  const { n } = await stack.database.db
    .selectFrom('delivery')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('created_at', '>=', since)
    .where('state', '=', 'SUCCESS')
    .executeTakeFirstOrThrow()
  return Number(n)
}

/** The machine and the versions of what runs on it, said next to every phase's figures. */
async function conditions(stack: ProcessStack): Promise<Record<string, unknown>> {
  const { rows } = await sql<{ server_version: string }>`show server_version`.execute(stack.database.db)
  const brokerLog = await readFile(join(stack.dir, 'kafka', 'broker.log'), 'utf8').catch(() => '')
  const java = spawnSync('java', ['-version'], { encoding: 'utf8' })
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    postgresql: rows[0]?.server_version,
    kafka: `${/Kafka version: (\S+)/.exec(brokerLog)?.[1] ?? 'unknown'} (single KRaft node), ${/^\S+ version "([^"]+)"/m.exec(java.stderr)?.[0] ?? 'java unknown'}`,
    note: 'Kafka, PostgreSQL, the services, the simulator and the load generator all share these cores'
  }
}

const oneMinuteLoad = () => Number(loadavg()[0]!.toFixed(2))

/**
 * A stack of its own for `phases`: an empty database and an empty topic. The drain leaves 45,000 deliveries,
 * 15,000 records per simulated system and tables for autovacuum to catch up with; on a shared stack the phases
 * after it paid for them (create p50 2.4 s at 100/s instead of 0.35 s).
 */
async function onStack(phases: string, run: (stack: ProcessStack) => Promise<void>, readBackRatePerSecond?: number, heapMb = 192): Promise<void> {
  say(`${phases}: starting a stack (BENCH_SCALE=${scale})`)
  // The recovery scenario keeps one system down for a minute: a retry budget that outlasts it (policy is configuration).
  const stack = await startProcessStack({
    ...(readBackRatePerSecond ? { readBackRatePerSecond } : {}),
    retry: { retries: 20, backoffMs: 1000, maxBackoffMs: 10_000 },
    ...(process.env.BENCH_CONCURRENCY ? { concurrency: Number(process.env.BENCH_CONCURRENCY) } : {}),
    // Heap limits as a deployment would set them (README, "Running in production"): without a cap on the young
    // generation V8 grows it to 2 × 64 MB, and under a 192 MB cap a process holding as much as the simulator
    // then runs a full collection every few requests (docs/performance.md, "Simulator").
    nodeOptions: process.env.BENCH_NODE_OPTIONS ?? `--max-old-space-size=${heapMb} --max-semi-space-size=16`
  })
  try {
    const machine = await conditions(stack)
    const loadAverageAtStart = oneMinuteLoad()
    say(`${phases}: ${machineLine(machine)}; 1-minute load average ${loadAverageAtStart}`)
    const before = new Set(Object.keys(results))
    await run(stack)
    const loadAverageAtEnd = oneMinuteLoad()
    say(`${phases}: done; 1-minute load average ${loadAverageAtEnd}`)
    for (const phase of Object.keys(results).filter((name) => !before.has(name))) {
      results[phase] = { machine: { ...machine, loadAverageAtStart, loadAverageAtEnd }, ...(results[phase] as object) }
    }
  } finally {
    await stack.stop()
  }
}

const machineLine = (m: Record<string, unknown>) =>
  `${m.cores} × ${m.cpu}, ${m.memoryGiB} GiB, Node.js ${m.node}, PostgreSQL ${m.postgresql}, Kafka ${m.kafka}`

/** Each phase's result has `machine`: the machine, the versions, and the 1-minute load average before and after (above the cores' count, something else ran too). */
const results: Record<string, unknown> = {}
if (runs('drain')) {
  await onStack('drain', async (stack) => {
    results.drain = await drainPhase(stack, Math.round(15_000 * scale), say)
  })
}

const loadPhases = ['rate', 'saturation', 'isolation', 'recovery'].filter(runs)
if (loadPhases.length > 0) {
  await onStack(loadPhases.join(', '), async (stack) => {
    say('warming up')
    await load(stack, 'warm-up', { ratePerSecond: 100, durationMs: 5000 })

    if (process.env.BENCH_DIAGNOSE_ASYNC_COMMIT) {
      // A diagnosis only (how much of the time is waiting for the WAL flush), never a setting to run with.
      await sql`alter system set synchronous_commit = off`.execute(stack.database.db)
      await sql`select pg_reload_conf()`.execute(stack.database.db)
      say('DIAGNOSIS: synchronous_commit = off')
    }

    // 1. Fixed rates: latency of the API and end to end, below and at what this machine takes.
    if (runs('rate')) {
      const fixedRates: Record<string, unknown> = {}
      for (const ratePerSecond of [100, 200]) {
        const since = new Date()
        const usage = monitor(stack)
        usage.start()
        const traffic = await load(stack, `${ratePerSecond}/s`, { ratePerSecond, durationMs: seconds(20), updateShare: 0.2 })
        const drainMs = await waitUntilDrained(stack, since, 120_000)
        const e2e = await endToEnd(stack, traffic, since)
        fixedRates[ratePerSecond] = {
          ratePerSecond,
          durationS: traffic.elapsedMs / 1000,
          creates: traffic.creates,
          updates: traffic.updates,
          errors: traffic.errors,
          createLatencyMs: percentiles(traffic.createLatency),
          updateLatencyMs: percentiles(traffic.updateLatency),
          endToEndMs: percentiles(e2e.latency),
          unfinished: e2e.unfinished,
          drainMs,
          processes: usage.stop()
        }
        say(`${ratePerSecond}/s: create ${JSON.stringify(percentiles(traffic.createLatency))}, e2e ${JSON.stringify(percentiles(e2e.latency))}`)
      }
      results.fixedRates = fixedRates
    }

    // 2. Saturation: as many creates as the API takes, and whether the deliveries keep up.
    if (runs('saturation')) {
      await resetStatements(stack.database.db)
      const since = new Date()
      const usage = monitor(stack)
      usage.start()
      const traffic = await load(stack, 'saturation', { concurrency: 64, durationMs: seconds(30), updateShare: 0.2 })
      const loadEnded = Date.now()
      const deliveredDuringLoad = await deliveriesDone(stack, since)
      const drainMs = await waitUntilDrained(stack, since, 600_000)
      const delivered = await deliveriesDone(stack, since)
      const processes = usage.stop()
      const e2e = await endToEnd(stack, traffic, since)
      results.saturation = {
        concurrency: 64,
        durationS: traffic.elapsedMs / 1000,
        requestsPerSecond: Math.round(((traffic.creates + traffic.updates) / traffic.elapsedMs) * 1000),
        createsPerSecond: Math.round((traffic.creates / traffic.elapsedMs) * 1000),
        errors: traffic.errors,
        createLatencyMs: percentiles(traffic.createLatency),
        deliveriesPerSecondDuringLoad: Math.round((deliveredDuringLoad / (loadEnded - since.getTime())) * 1000),
        deliveriesPerSecondOverall: Math.round((delivered / (loadEnded - since.getTime() + Math.max(0, drainMs))) * 1000),
        backlogDrainMs: drainMs,
        endToEndMs: percentiles(e2e.latency),
        processes,
        topStatements: await topStatements(stack.database.db)
      }
      say(`saturation: ${JSON.stringify(results.saturation, null, 1)}`)
    }

    // 3. Isolation: the healthy system's latency with another down and a third answering after 2 s.
    if (runs('isolation')) {
      const measure = async (label: string) => {
        const since = new Date()
        const traffic = await load(stack, label, { ratePerSecond: 100, durationMs: seconds(20) })
        await sleep(3000)
        return percentiles((await endToEnd(stack, traffic, since, 'cards')).latency)
      }
      const baseline = await measure('isolation baseline')
      await setFault(stack, 'crm', { mode: 'down' })
      await setFault(stack, 'core-banking', { mode: 'slow', delayMs: 2000 })
      const degraded = await measure('isolation, crm down, core banking slow')
      await setFault(stack, 'crm', { mode: 'none' })
      await setFault(stack, 'core-banking', { mode: 'none' })
      await waitUntilDrained(stack, new Date(started), 600_000)
      results.isolation = {
        healthySystem: 'cards',
        baselineMs: baseline,
        degradedMs: degraded,
        p99Ratio: Number((degraded.p99 / baseline.p99).toFixed(2))
      }
      say(`isolation: ${JSON.stringify(results.isolation)}`)
    }

    // 4. Recovery: one system down for 60 s under steady load, then back.
    if (runs('recovery')) {
      const since = new Date()
      const traffic = load(stack, 'recovery', { ratePerSecond: 100, durationMs: seconds(90), updateShare: 0.2 })
      await sleep(seconds(10))
      await setFault(stack, 'crm', { mode: 'down' })
      say('recovery: crm down')
      await sleep(seconds(60))
      await setFault(stack, 'crm', { mode: 'none' })
      const backAt = Date.now()
      say('recovery: crm back')
      await traffic
      const drainMs = await waitUntilDrained(stack, since, 600_000)
      const { rows: states } = await sql<{ state: string; n: string }>`
      select state, count(*) as n from delivery where created_at >= ${since} group by state`.execute(stack.database.db)
      results.recovery = {
        downForS: seconds(60) / 1000,
        backlogClearedMsAfterSystemBack: drainMs < 0 ? null : Date.now() - backAt,
        finalStates: Object.fromEntries(states.map((s) => [s.state, Number(s.n)]))
      }
      say(`recovery: ${JSON.stringify(results.recovery)}`)
    }
  })
}

// 5. History: on a stack of its own, last, since it leaves millions of rows behind it.
if (runs('history')) {
  await onStack('history', async (stack) => {
    results.history = await historyPhase(stack, scale, say)
  })
}

// 6. Drift: reconciliation over 100,000 customers in three systems, 1% of each drift kind; on a stack of its own.
if (runs('reconcile')) {
  await onStack(
    'reconcile',
    async (stack) => {
      results.reconcile = await reconcilePhase(stack, Math.round(100_000 * scale), say)
    },
    // The phase measures how fast a run can compare, not the gentle rate a bank would configure.
    10_000,
    // The simulator stands in for three real systems and holds every record in memory: 300,000 at full scale
    // ran it out of a 192 MB heap while the second system was seeded.
    Math.max(192, Math.round(1536 * scale))
  )
}

const file = new URL(`results/bench-${new Date().toISOString().replaceAll(':', '-')}.json`, import.meta.url)
writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`)
const usageTable = (processes: ProcessUsage[]) => processes.map((p) => `${p.name} ${p.peakRssMb} MB ${p.cpuCores} cores`).join('; ')
const { drain, fixedRates, saturation, isolation, recovery, history, reconcile } = results as Record<string, any>
const pct = (p: { p50: number; p95: number; p99: number } | undefined) => (p ? `${p.p50} / ${p.p95} / ${p.p99}` : '-')
console.table({
  'drain: syncer deliveries/s (pipe CPU ms per delivery)': drain
    ? `${drain.syncer.deliveriesPerSecond} (${drain.syncer.cpuMsPerDelivery.pipe})`
    : '-',
  'drain: baseline deliveries/s (pipe CPU ms per delivery)': drain
    ? `${drain.baseline.deliveriesPerSecond} (${drain.baseline.cpuMsPerDelivery.pipe})`
    : '-',
  'drain: syncer / baseline deliveries/s': drain?.ratio.deliveriesPerSecond ?? '-',
  'create API at 100/s (p50/p95/p99 ms)': pct(fixedRates?.[100]?.createLatencyMs),
  'end to end at 100/s (p50/p95/p99 ms)': pct(fixedRates?.[100]?.endToEndMs),
  'create API at 200/s (p50/p95/p99 ms)': pct(fixedRates?.[200]?.createLatencyMs),
  'end to end at 200/s (p50/p95/p99 ms)': pct(fixedRates?.[200]?.endToEndMs),
  'saturation: requests/s (creates/s)': saturation ? `${saturation.requestsPerSecond} (${saturation.createsPerSecond})` : '-',
  'saturation: deliveries/s during load': saturation?.deliveriesPerSecondDuringLoad ?? '-',
  'saturation: backlog drained after (ms)': saturation?.backlogDrainMs ?? '-',
  'isolation: healthy p99 ratio': isolation?.p99Ratio ?? '-',
  'recovery: backlog cleared after system back (ms)': recovery?.backlogClearedMsAfterSystemBack ?? '-',
  'recovery: final states': recovery ? JSON.stringify(recovery.finalStates) : '-',
  'history: filled / empty (claim p50, drain rate, worst API p50)': history
    ? `${history.ratios.claimP50}, ${history.ratios.drainDeliveriesPerSecond}, ${Math.max(...Object.values<number>(history.ratios.apiP50))}`
    : '-',
  'reconcile: drift found (false findings), records compared/s, repair s': reconcile
    ? `${reconcile.foundShare}% (${reconcile.falseFindings}), ${reconcile.recordsComparedPerSecond}, ${(reconcile.repairMs / 1000).toFixed(1)}`
    : '-'
})
if (drain) say(`processes in the drain: ${usageTable(drain.syncer.processes)}`)
if (saturation) say(`processes at saturation: ${usageTable(saturation.processes)}`)
say(`written to ${file.pathname}`)
