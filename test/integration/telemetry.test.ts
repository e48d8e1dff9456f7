import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { gunzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CifService } from '../../src/cif/service.ts'
import { type DatabaseHandle, openDatabase } from '../../src/platform/database/index.ts'
import type { Simulator } from '../../src/simulator/service.ts'
import type { Syncer } from '../../src/syncer/service.ts'
import type { TestDatabase } from '../support/database.ts'
import { call, connections, newPerson, startTestCifService } from './helpers.ts'
import { deliveriesOf, eventually, operatorKey, startTestSimulator, startTestSyncer } from './syncer-helpers.ts'

// The whole path observed: metrics scraped from both services before and after a create, and the create's
// trace followed (its traceparent given by the caller) through the outbox, Kafka and the intake to each end
// system, with the spans sent by OTLP to a collector of the test's own.

interface ReceivedSpan {
  service: string
  name: string
  traceId: string
  spanId: string
  parentSpanId: string
  attributes: Record<string, unknown>
}

/** An OTLP/HTTP (JSON) receiver: what the services' exporters send, flattened to spans. */
class Collector {
  readonly spans: ReceivedSpan[] = []
  readonly #server: Server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      const raw = Buffer.concat(chunks)
      const body = JSON.parse((request.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8'))
      for (const resourceSpans of body.resourceSpans ?? []) {
        const service = resourceSpans.resource?.attributes?.find((a: { key: string }) => a.key === 'service.name')?.value?.stringValue
        for (const scope of resourceSpans.scopeSpans ?? []) {
          for (const span of scope.spans ?? []) {
            this.spans.push({
              service,
              name: span.name,
              traceId: span.traceId,
              spanId: span.spanId,
              parentSpanId: span.parentSpanId ?? '',
              attributes: Object.fromEntries(
                (span.attributes ?? []).map((a: { key: string; value: Record<string, unknown> }) => [a.key, Object.values(a.value)[0]])
              )
            })
          }
        }
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(this.#server.address() as { port: number }).port}`
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

/** The value of one sample in a Prometheus text exposition, undefined when absent. */
function found(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match || match[1] !== name) continue
    const given = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([key, value]) => given[key] === value)) return Number(match[3])
  }
  return undefined
}

/** The value of one sample, 0 when absent (a counter not yet moved). */
const sample = (text: string, name: string, labels: Record<string, string> = {}): number => found(text, name, labels) ?? 0

const scrape = async (url: string): Promise<string> => {
  const response = await fetch(url)
  expect(response.status).toBe(200)
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
  return response.text()
}

const systems = ['cards', 'core-banking', 'crm']
let collector: Collector
let cif: CifService
let simulator: Simulator
let syncer: Syncer
let database: DatabaseHandle<TestDatabase>

beforeAll(async () => {
  collector = new Collector()
  const otlp = await collector.start()
  // Port 0: each service's metrics on a free port of its own; spans to the collector above.
  const env = { CIF_METRICS_PORT: '0', SYNCER_METRICS_PORT: '0', OTEL_EXPORTER_OTLP_ENDPOINT: otlp }
  database = openDatabase<TestDatabase>(connections().databaseUrl, { maxConnections: 2 })
  cif = await startTestCifService({}, env)
  simulator = await startTestSimulator()
  syncer = await startTestSyncer(simulator, {}, { env })
})
afterAll(async () => {
  await syncer?.close()
  await cif?.close()
  await simulator?.close()
  await database?.close()
  await collector?.stop()
})

describe('metrics and traces of a create', () => {
  it('moves the metrics of both services and carries the create’s trace id to every end system', async () => {
    const [cifBefore, syncerBefore] = await Promise.all([scrape(cif.metricsUrl!), scrape(syncer.metricsUrl!)])
    const traceId = randomBytes(16).toString('hex')
    const created = await call(cif.url, 'POST', '/v1/customers', {
      body: newPerson(),
      headers: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` }
    })
    expect(created.status).toBe(201)
    const { cifId } = created.body
    await eventually(
      () => deliveriesOf(database, cifId),
      (rows) => rows.length === 3 && rows.every((row) => row.state === 'SUCCESS')
    )

    // Each end system got a request whose traceparent continues the create's trace.
    for (const name of systems) {
      const record = simulator.systems.get(name)!.recordForCif(cifId)
      expect(record?.traceparent, name).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`))
    }
    // ...and the admin API shows it, for each delivery and attempt.
    const admin = (path: string) => call(syncer.url, 'GET', path, { key: operatorKey })
    const { attempts } = (await admin(`/v1/admin/attempts?cifId=${cifId}`)).body
    expect(attempts.map((a: { traceId: string }) => a.traceId)).toEqual([traceId, traceId, traceId])
    expect(attempts.map((a: { spanId: string; endSystem: string }) => `00-${traceId}-${a.spanId}-01`).sort()).toEqual(
      systems.map((name) => simulator.systems.get(name)!.recordForCif(cifId)!.traceparent).sort()
    )
    const { deliveries } = (await admin(`/v1/admin/deliveries?cifId=${cifId}`)).body
    expect(deliveries.map((d: { traceId: string }) => d.traceId)).toEqual([traceId, traceId, traceId])

    // The metrics moved, and name no customer.
    const [cifAfter, syncerAfter] = await Promise.all([scrape(cif.metricsUrl!), scrape(syncer.metricsUrl!)])
    const moved = (before: string, after: string, name: string, labels?: Record<string, string>) =>
      sample(after, name, labels) - sample(before, name, labels)
    expect(moved(cifBefore, cifAfter, 'cif_customer_create_requests_total', { outcome: 'created', status: '201' })).toBe(1)
    expect(moved(cifBefore, cifAfter, 'cif_customer_create_duration_seconds_count', { outcome: 'created' })).toBe(1)
    expect(moved(cifBefore, cifAfter, 'outbox_published_messages_total', { relay: 'cif-service' })).toBeGreaterThanOrEqual(1)
    expect(sample(cifAfter, 'outbox_pending_messages', { relay: 'cif-service' })).toBe(0)
    expect(found(cifAfter, 'outbox_oldest_pending_age_seconds', { relay: 'cif-service' })).toBeGreaterThanOrEqual(0)
    expect(moved(syncerBefore, syncerAfter, 'syncer_events_consumed_total')).toBeGreaterThanOrEqual(1)
    for (const end_system of systems) {
      expect(moved(syncerBefore, syncerAfter, 'syncer_delivery_attempts_total', { end_system, outcome: 'success' })).toBeGreaterThanOrEqual(1)
      expect(
        moved(syncerBefore, syncerAfter, 'syncer_delivery_attempt_duration_seconds_count', { end_system, outcome: 'success' })
      ).toBeGreaterThanOrEqual(1)
      expect(moved(syncerBefore, syncerAfter, 'syncer_delivery_outcomes_total', { end_system, state: 'SUCCESS' })).toBeGreaterThanOrEqual(1)
      expect(moved(syncerBefore, syncerAfter, 'syncer_in_sync_duration_seconds_count', { end_system })).toBeGreaterThanOrEqual(1)
      expect(sample(syncerAfter, 'syncer_circuit_state', { end_system, state: 'closed' })).toBe(1)
      expect(found(syncerAfter, 'syncer_deliveries', { end_system, state: 'FAILED' })).toBeGreaterThanOrEqual(0)
    }
    expect(sample(syncerAfter, 'process_cpu_seconds_total', { service: 'cif-syncer' })).toBeGreaterThan(0)
    // Wired to the in-sync deadline's count (status/overdue.ts): nothing here is five minutes old.
    expect(found(syncerAfter, 'syncer_customer_versions_overdue')).toBe(0)
    expect(sample(cifAfter, 'nodejs_eventloop_lag_seconds', { service: 'cif-service' })).toBeGreaterThanOrEqual(0)
    expect(cifAfter + syncerAfter).not.toContain(cifId)
    // The lag is measured by the intake's watchdog, every few seconds.
    await eventually(
      () => scrape(syncer.metricsUrl!),
      (text) => found(text, 'syncer_consumer_lag_messages') !== undefined
    )

    // The spans, sent by OTLP: one trace from the create to each attempt, with the CIF ID and end system on them.
    const trace = await eventually(
      async () => collector.spans.filter((span) => span.traceId === traceId),
      (spans) => spans.filter((span) => span.attributes['cif.end_system']).length === 3,
      15_000
    )
    const named = (name: string) => trace.filter((span) => span.name === name)
    const [create] = named('create customer')
    const [publish] = named('publish cif.customer.events')
    const [receive] = named('receive cif.customer.events')
    expect(create).toMatchObject({ service: 'cif-service', attributes: { 'cif.id': cifId } })
    expect(publish).toMatchObject({ service: 'cif-service', parentSpanId: create!.spanId, attributes: { 'cif.id': cifId } })
    expect(receive).toMatchObject({ service: 'cif-syncer', parentSpanId: publish!.spanId, attributes: { 'cif.id': cifId } })
    const deliveredTo = trace.filter((span) => span.attributes['cif.end_system'])
    expect(deliveredTo.map((span) => span.attributes['cif.end_system']).sort()).toEqual(systems)
    for (const span of deliveredTo) expect(span).toMatchObject({ parentSpanId: receive!.spanId, attributes: { 'cif.id': cifId } })
    // Nothing of the person in any attribute.
    expect(JSON.stringify(trace)).not.toMatch(/Lovelace|ada@example|6591234567/)
  })
})
