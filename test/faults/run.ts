// `npm run test:faults`: the full fault suite (longer outages, more kills, more load than the short run
// in the default tests). Prints a summary, writes it to test/faults/results/, exits 1 if anything was lost.
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { runFaultSuite } from '../support/fault-suite.ts'

const started = Date.now()
const say = (text: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${text}\n`)
const ratePerSecond = Number(process.env.FAULTS_RATE ?? 50)
const scale = Number(process.env.FAULTS_SCALE ?? 3)
say(`fault suite: ${ratePerSecond} requests/s (70% creates, 30% updates), scale ${scale}, on ${cpus().length} cores / ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`)
const reports = await runFaultSuite({ ratePerSecond, scale, say, only: process.argv.slice(2) })
console.table(reports.map(({ problems: _problems, ...report }) => report))
const lost = reports.reduce((sum, r) => sum + r.lost, 0)
mkdirSync(new URL('results/', import.meta.url), { recursive: true })
const file = new URL(`results/faults-${new Date().toISOString().replaceAll(':', '-')}.json`, import.meta.url)
writeFileSync(file, JSON.stringify({ ratePerSecond, scale, machine: { cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30) }, node: process.version, reports }, null, 2))
say(`lost: ${lost} (must be 0); written to ${file.pathname}`)
process.exitCode = lost === 0 ? 0 : 1
