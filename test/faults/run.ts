// `npm run test:faults`: the full fault suite (longer outages, more kills, more load than the short run
// in the default tests, and more shapes of a Kafka outage). Prints a summary, writes it to
// test/faults/results/, exits 1 if anything was lost or did not recover.
//
//   npm run test:faults                                          every scenario once
//   npm run test:faults -- Kafka                                 the scenarios whose name starts with "Kafka"
//   npm run test:faults -- --repeat 20 'Kafka broker stopped and restarted'   one scenario 20 times in a row
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { kafkaVariants, runFaultSuite, type ScenarioReport, scenarios } from '../support/fault-suite.ts'
import { misbehaviourScenario } from '../support/misbehaving-end-systems.ts'

const started = Date.now()
const say = (text: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${text}\n`)
const { values, positionals } = parseArgs({ options: { repeat: { type: 'string', default: '1' } }, allowPositionals: true })
const repeat = Number(values.repeat)
if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`--repeat must be a whole number of at least 1, got "${values.repeat}"`)
const ratePerSecond = Number(process.env.FAULTS_RATE ?? 50)
const scale = Number(process.env.FAULTS_SCALE ?? 3)
const chosen = [...scenarios(scale), ...kafkaVariants(), misbehaviourScenario()].filter(
  (s) => positionals.length === 0 || positionals.some((p) => s.name.startsWith(p))
)
if (chosen.length === 0) throw new Error(`no scenario starts with ${positionals.map((p) => JSON.stringify(p)).join(' or ')}`)
const plan = Array.from({ length: repeat }, () => chosen).flat()
say(
  `fault suite: ${plan.length} scenario runs, ${ratePerSecond} requests/s (70% creates, 30% updates), scale ${scale}, ` +
    `on ${cpus().length} cores (${cpus()[0]?.model}) / ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`
)
const runId = new Date().toISOString().replaceAll(':', '-')
const reports = await runFaultSuite({
  ratePerSecond,
  scale,
  say,
  scenarios: plan,
  keepLogsOfFailuresIn: fileURLToPath(new URL(`results/logs-${runId}/`, import.meta.url))
})
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
