// `npm run test:soak -- --minutes N [--rate R] [--seed S]`: steady load over two CIF service instances
// while faults drawn at random from the soak's registry (test/support/soak.ts) kill and restart instances and
// Kafka brokers, restart PostgreSQL, cut and slow the network and make end systems misbehave; then the independent checker
// (test/support/soak-checker.ts). Prints progress every minute, writes a JSON report to test/soak/results/,
// exits 1 if the checker found anything.
//
//   npm run test:soak -- --minutes 60                  the documented run: 50 requests/s, over 1,000 kills
//   npm run test:soak -- --minutes 10 --rate 20 --seed 7
//
// SOAK_CIF_INSTANCES (2), SOAK_SYNCER_INSTANCES (3), SOAK_KAFKA_BROKERS (3: a KRaft cluster) and
// SOAK_FAULT_INTERVAL_MS (mean time between faults, 2,000) shape the run; Toxiproxy sits on every link for the
// network kinds (needs Go; a proxy per broker on the links to Kafka), SOAK_NETWORK=off leaves it out.
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { parseArgs } from 'node:util'
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64'
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus'
import { DEFAULT_FAULT_INTERVAL_MS, runSoak } from '../support/soak.ts'
import { passed } from '../support/soak-checker.ts'

const { values } = parseArgs({
  options: { minutes: { type: 'string', default: '10' }, rate: { type: 'string', default: '50' }, seed: { type: 'string' } }
})
const number = (name: string, text: string | undefined, min: number): number => {
  const value = Number(text)
  if (!Number.isFinite(value) || value < min) throw new Error(`${name} must be a number of at least ${min}, got ${JSON.stringify(text)}`)
  return value
}
const minutes = number('--minutes', values.minutes, 0.1)
const ratePerSecond = number('--rate', values.rate, 1)
// Math.random drives every draw (the faults, their targets and lengths, the load's choices): a seed replaces it.
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : number('--seed', values.seed, 0)
const generator = xoroshiro128plus(seed)
Math.random = () => uniformFloat64(generator)

const started = Date.now()
const say = (text: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${text}\n`)
const options = {
  minutes,
  ratePerSecond,
  meanFaultIntervalMs: number('SOAK_FAULT_INTERVAL_MS', process.env.SOAK_FAULT_INTERVAL_MS ?? String(DEFAULT_FAULT_INTERVAL_MS), 100),
  cifInstances: number('SOAK_CIF_INSTANCES', process.env.SOAK_CIF_INSTANCES ?? '2', 1),
  syncerInstances: number('SOAK_SYNCER_INSTANCES', process.env.SOAK_SYNCER_INSTANCES ?? '3', 1),
  kafkaBrokers: number('SOAK_KAFKA_BROKERS', process.env.SOAK_KAFKA_BROKERS ?? '3', 1)
}
say(
  `soak: ${minutes} min at ${ratePerSecond} requests/s (70% creates, 30% updates), ${options.cifInstances} CIF service and ` +
    `${options.syncerInstances} syncer instances, ${options.kafkaBrokers} Kafka broker(s), a fault every ${options.meanFaultIntervalMs} ms on average, seed ${seed}, ` +
    `on ${cpus().length} cores (${cpus()[0]?.model}) / ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`
)
const loadAverages: number[][] = []
const sampling = setInterval(() => loadAverages.push(loadavg()), 60_000)
const report = await runSoak({ ...options, say, stack: { networkFaults: process.env.SOAK_NETWORK !== 'off' } })
clearInterval(sampling)
const { problems, ...counts } = report.findings
console.table({ ...counts, kills: report.kills, redriven: report.redriven, drainMs: report.drainMs })
for (const text of problems) say(`! ${text}`)
mkdirSync(new URL('results/', import.meta.url), { recursive: true })
const file = new URL(`results/soak-${new Date(started).toISOString().replaceAll(':', '-')}.json`, import.meta.url)
const loadAverage = loadavg()
writeFileSync(
  file,
  JSON.stringify(
    {
      seed,
      machine: { cores: cpus().length, cpu: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30) },
      node: process.version,
      // The 1-minute load average sampled each minute of the run, and the 1/5/15-minute ones at its end.
      loadAverage: { perMinute: loadAverages.map((l) => Math.round(l[0]! * 100) / 100), atEnd: loadAverage.map((l) => Math.round(l * 100) / 100) },
      ...report
    },
    null,
    2
  )
)
const ok = passed(report.findings) && report.drainMs >= 0
say(
  `${ok ? 'passed' : 'FAILED'}: ${report.kills} kills, lost ${counts.lost}, duplicates ${counts.duplicates}, order violations ${counts.orderViolations}; written to ${file.pathname}`
)
process.exitCode = ok ? 0 : 1
