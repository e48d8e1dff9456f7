// What metrics and tracing add to one delivery attempt, in this process alone (docs/performance.md, "Metrics
// and tracing: what they cost"): the attempt's span (started under the event's traceparent, its own
// traceparent taken for the request, ended) and its metric updates, with spans not exported and with every
// span exported in batches (to an exporter that drops them: the SDK's cost, not the network's). Alternated,
// several times.
//
//   npx node bench/attempt-telemetry-cost.ts
import { performance } from 'node:perf_hooks'
import { ExportResultCode } from '@opentelemetry/core'
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace'
import { Registry } from '../src/platform/metrics.ts'
import { SpanKind, Tracing, traceparentOf } from '../src/platform/tracing.ts'
import { SyncerMetrics } from '../src/syncer/metrics.ts'

const ATTEMPTS = 200_000
const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
// Scrape-time sources are not read here: only the per-attempt updates are measured.
const metrics = new SyncerMetrics(new Registry(), {
  db: undefined as never,
  endSystems: [],
  clients: new Map(),
  consumerLag: () => undefined,
  overdueVersions: async () => 0
})
const dropping = {
  export: (_spans: unknown, done: (result: { code: number }) => void) => done({ code: ExportResultCode.SUCCESS }),
  shutdown: async () => {}
}
const variants = {
  'spans not exported': new Tracing('bench', []),
  'spans exported': new Tracing('bench', [new BatchSpanProcessor({ exporter: dropping, maxQueueSize: 65_536, maxExportBatchSize: 4096 })])
}

function attempts(tracing: Tracing): number {
  const started = performance.now()
  let sink = 0
  for (let i = 0; i < ATTEMPTS; i++) {
    const span = tracing.start('update crm', SpanKind.CLIENT, parent, {
      'cif.id': '10000000009',
      'cif.end_system': 'crm',
      'cif.customer_version': 2,
      'cif.delivery_id': String(i),
      'cif.attempt': 1
    })
    sink += traceparentOf(span).length
    span.setAttribute('http.response.status_code', 200)
    span.end()
    metrics.attempted('crm', 'success', 3)
    metrics.moved('crm', 'SUCCESS', new Date(Date.now() - 500), new Date())
  }
  // Read, so that the traceparents are not optimised away.
  if (sink === 0) throw new Error('no traceparent was made')
  return ((performance.now() - started) * 1000) / ATTEMPTS
}

for (let round = 1; round <= 5; round++) {
  for (const [name, tracing] of Object.entries(variants)) {
    process.stdout.write(`round ${round}: ${name}: ${attempts(tracing).toFixed(2)} µs per attempt\n`)
  }
}
