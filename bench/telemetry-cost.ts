// What metrics and tracing cost on the create path (docs/performance.md, "Metrics and tracing: what they
// cost"): two CIF service processes on one stack, one plain (no metrics port, spans not exported) and one
// observed (metrics served and scraped every 5 s, every span exported by OTLP to a sink in this process),
// loaded in turn at saturation, alternating, so that both see the same machine and the same database.
//
//   npx node bench/telemetry-cost.ts        (the project's Node; TELEMETRY_COST_ROUNDS=3, TELEMETRY_COST_SECONDS=15)
import { createServer } from 'node:http'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../test/integration/free-port.ts'
import { percentiles, runLoad } from '../test/support/load.ts'
import { ServiceProcess } from '../test/support/service-process.ts'
import { sourceKey, startProcessStack } from '../test/support/stack.ts'

const rounds = Number(process.env.TELEMETRY_COST_ROUNDS ?? 3)
const durationMs = Number(process.env.TELEMETRY_COST_SECONDS ?? 15) * 1000
const concurrency = 32
const say = (text: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`)
const load1 = () => Number(loadavg()[0]!.toFixed(2))

// An OTLP receiver that takes and drops what it is sent: the exporter's cost, not a collector's.
let spansBytes = 0
const sink = createServer((request, response) => {
  request.on('data', (chunk: Buffer) => {
    spansBytes += chunk.length
  })
  request.on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end('{}'))
})
await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve))
const otlp = `http://127.0.0.1:${(sink.address() as { port: number }).port}`

const stack = await startProcessStack({ nodeOptions: '--max-old-space-size=192 --max-semi-space-size=16' })
const [plainPort, observedPort, metricsPort] = [await freePort(), await freePort(), await freePort()]
const plain = new ServiceProcess(
  'cif-service',
  `http://127.0.0.1:${plainPort}/health/ready`,
  { ...stack.env, CIF_PORT: String(plainPort) },
  join(stack.dir, 'plain.log')
)
const observed = new ServiceProcess(
  'cif-service',
  `http://127.0.0.1:${observedPort}/health/ready`,
  { ...stack.env, CIF_PORT: String(observedPort), CIF_METRICS_PORT: String(metricsPort), OTEL_EXPORTER_OTLP_ENDPOINT: otlp },
  join(stack.dir, 'observed.log')
)
const results: Record<string, { round: number; createsPerSecond: number; p50Ms: number; p99Ms: number; errors: number; load1: number }[]> = {
  plain: [],
  observed: []
}
try {
  await Promise.all([plain.start(), observed.start()])
  const urls = { plain: `http://127.0.0.1:${plainPort}`, observed: `http://127.0.0.1:${observedPort}` }
  for (const [name, cifUrl] of Object.entries(urls)) {
    say(`warming up ${name}`)
    await runLoad({ cifUrl, apiKey: sourceKey, durationMs: 5000, concurrency })
  }
  for (let round = 1; round <= rounds; round++) {
    // Which goes first alternates too: a slow drift of the machine falls on both.
    const order = round % 2 ? (['plain', 'observed'] as const) : (['observed', 'plain'] as const)
    for (const name of order) {
      const scraping =
        name === 'observed'
          ? setInterval(() => {
              fetch(`http://127.0.0.1:${metricsPort}/metrics`).then(
                (r) => r.text(),
                () => ''
              )
            }, 5000)
          : undefined
      const traffic = await runLoad({ cifUrl: urls[name], apiKey: sourceKey, durationMs, concurrency })
      clearInterval(scraping)
      const createLatencyMs = percentiles(traffic.createLatency)
      const result = {
        round,
        createsPerSecond: Math.round(traffic.creates / (traffic.elapsedMs / 1000)),
        p50Ms: createLatencyMs.p50,
        p99Ms: createLatencyMs.p99,
        errors: traffic.errors,
        load1: load1()
      }
      results[name]!.push(result)
      say(`${name}: ${JSON.stringify(result)}`)
      // Let the relays and the syncer catch up, so the next run starts from the same backlog.
      await sleep(5000)
    }
  }
  const mean = (name: string) => Math.round(results[name]!.reduce((sum, r) => sum + r.createsPerSecond, 0) / results[name]!.length)
  say(`mean creates/s: plain ${mean('plain')}, observed ${mean('observed')}; OTLP bytes received ${spansBytes}`)
  process.stdout.write(`${JSON.stringify({ results, otlpBytes: spansBytes }, null, 2)}\n`)
} finally {
  await Promise.all([plain.stop(), observed.stop()])
  await stack.stop()
  sink.close()
}
