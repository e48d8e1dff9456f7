// `npm run test:faults`: the full fault suite (longer outages, more kills, more load than the short run
// in the default tests, and more shapes of a Kafka outage). Prints a summary, writes it to
// test/faults/results/, exits 1 if anything was lost or did not recover.
//
//   npm run test:faults                                          every scenario once
//   npm run test:faults -- Kafka                                 the scenarios whose name starts with "Kafka"
//   npm run test:faults -- --repeat 20 'Kafka broker stopped and restarted'   one scenario 20 times in a row
//   npm run test:faults -- Cluster                              the three-broker cluster's scenarios (named only: a stack of their own)
//   npm run test:faults -- network                              the network faults, through Toxiproxy (named only; needs Go)
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { clusterScenarios, kafkaVariants, networkScenarios, runFaultSuite, type ScenarioReport, scenarios } from '../support/fault-suite.ts'
import { misbehaviourScenario } from '../support/misbehaving-end-systems.ts'

const started = Date.now()
const say = (text: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${text}\n`)
const { values, positionals } = parseArgs({ options: { repeat: { type: 'string', default: '1' } }, allowPositionals: true })
const repeat = Number(values.repeat)
if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`--repeat must be a whole number of at least 1, got "${values.repeat}"`)
const ratePerSecond = Number(process.env.FAULTS_RATE ?? 50)
const scale = Number(process.env.FAULTS_SCALE ?? 3)
// Several of each, as a bank runs them: kills hit any instance, partitions move between the syncers.
const cifInstances = Number(process.env.FAULTS_CIF_INSTANCES ?? 2)
const syncerInstances = Number(process.env.FAULTS_SYNCER_INSTANCES ?? 2)
const picked = (s: { name: string }) => positionals.length === 0 || positionals.some((p) => s.name.startsWith(p))
const chosen = [...scenarios(scale), ...kafkaVariants(), misbehaviourScenario()].filter(picked)
// The cluster's scenarios need three brokers, the network's a proxy on every link: they run, when named, on
// stacks of their own (one instance of each service), after the others.
const chosenOnCluster = positionals.length ? clusterScenarios().filter(picked) : []
const chosenOnNetwork = positionals.length ? networkScenarios(scale).filter(picked) : []
if (chosen.length + chosenOnCluster.length + chosenOnNetwork.length === 0) {
  throw new Error(`no scenario starts with ${positionals.map((p) => JSON.stringify(p)).join(' or ')}`)
}
const repeated = <T>(list: T[]) => Array.from({ length: repeat }, () => list).flat()
const [plan, planOnCluster, planOnNetwork] = [repeated(chosen), repeated(chosenOnCluster), repeated(chosenOnNetwork)]
say(
  `fault suite: ${plan.length + planOnCluster.length + planOnNetwork.length} scenario runs, ${ratePerSecond} requests/s (70% creates, 30% updates), scale ${scale}, ` +
    `${cifInstances} CIF service and ${syncerInstances} syncer instances, on ${cpus().length} cores (${cpus()[0]?.model}) / ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`
)
const runId = new Date().toISOString().replaceAll(':', '-')
const keepLogsOfFailuresIn = fileURLToPath(new URL(`results/logs-${runId}/`, import.meta.url))
const instances = { cifInstances, syncerInstances }
const reports = [
  ...(plan.length ? await runFaultSuite({ ratePerSecond, scale, say, scenarios: plan, keepLogsOfFailuresIn, ...instances }) : []),
  ...(planOnCluster.length
    ? await runFaultSuite({ ratePerSecond, scale, say, scenarios: planOnCluster, keepLogsOfFailuresIn, kafkaBrokers: 3 })
    : []),
  ...(planOnNetwork.length ? await runFaultSuite({ ratePerSecond, scale, say, scenarios: planOnNetwork, keepLogsOfFailuresIn }) : [])
]
console.table(
  reports.map(({ problems: _problems, health: _health, lastRestarts: _last, restarts, ...report }) => ({
    ...report,
    restarts: Object.values(restarts).join('/')
  }))
)

const failed = (r: ScenarioReport) => r.lost > 0 || r.recoveryMs < 0
const byScenario = Map.groupBy(reports, (r) => r.scenario)
/** Median and worst of a figure over runs; 'never' when a run never got there. */
function spread(values: number[]): { median: number | null; worst: number | 'never' | null } {
  const reached = values.filter((v) => v >= 0).sort((a, b) => a - b)
  return {
    median: reached.length ? reached[Math.floor((reached.length - 1) / 2)]! : null,
    worst: values.some((v) => v < 0) ? 'never' : (reached.at(-1) ?? null)
  }
}
const summary = [...byScenario].map(([scenario, runs]) => {
  const recovery = spread(runs.map((r) => r.recoveryMs))
  const consuming = spread(runs.map((r) => r.consumingAgainMs))
  return {
    scenario,
    runs: runs.length,
    passed: runs.filter((r) => !failed(r)).length,
    recoveryMedianMs: recovery.median,
    recoveryWorstMs: recovery.worst,
    consumingAgainMedianMs: consuming.median,
    consumingAgainWorstMs: consuming.worst
  }
})
if (repeat > 1) console.table(summary)
mkdirSync(new URL('results/', import.meta.url), { recursive: true })
const file = new URL(`results/faults-${runId}.json`, import.meta.url)
writeFileSync(
  file,
  JSON.stringify(
    {
      ratePerSecond,
      scale,
      cifInstances,
      syncerInstances,
      repeat,
      machine: { cores: cpus().length, cpu: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30) },
      node: process.version,
      summary,
      reports
    },
    null,
    2
  )
)
const bad = reports.filter(failed).length
say(`${reports.length - bad} passed, ${bad} failed; lost ${reports.reduce((sum, r) => sum + r.lost, 0)} (must be 0); written to ${file.pathname}`)
process.exitCode = bad === 0 ? 0 : 1
