import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createOutcome } from '../../src/cif/metrics.ts'
import { ConfigError, loadConfig } from '../../src/platform/config.ts'
import { SpanKind, spanIdOf, Tracing, traceIdOf, traceparentOf } from '../../src/platform/tracing.ts'

const hex = (length: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${length}}$`)).filter((id) => !/^0+$/.test(id))

describe('trace context', () => {
  it('continues the trace of any valid traceparent, with a span of its own, whether or not spans are exported', () => {
    const quiet = new Tracing('test', [])
    const exported = new InMemorySpanExporter()
    const loud = new Tracing('test', [new SimpleSpanProcessor({ exporter: exported })])
    fc.assert(
      fc.property(hex(32), hex(16), fc.constantFrom('00', '01'), (traceId, spanId, flags) => {
        for (const tracing of [quiet, loud]) {
          const span = tracing.start('a', SpanKind.CLIENT, `00-${traceId}-${spanId}-${flags}`, {})
          span.end()
          const next = traceparentOf(span)
          expect(traceIdOf(next)).toBe(traceId)
          expect(spanIdOf(next)).not.toBe(spanId)
          expect(next).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
        }
      })
    )
  })

  it('records nothing and says "not sampled" when not exporting; records each span with its parent when exporting', () => {
    const exported = new InMemorySpanExporter()
    const loud = new Tracing('test', [new SimpleSpanProcessor({ exporter: exported })])
    const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    const quietSpan = new Tracing('test', []).start('quiet', SpanKind.SERVER, parent, { 'cif.id': '10000000009' })
    quietSpan.end()
    expect(traceparentOf(quietSpan)).toMatch(/-00$/)
    expect(quietSpan.isRecording()).toBe(false)

    const span = loud.start('loud', SpanKind.SERVER, parent, { 'cif.id': '10000000009' })
    span.end()
    expect(traceparentOf(span)).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/)
    const [finished] = exported.getFinishedSpans()
    expect(finished?.name).toBe('loud')
    expect(finished?.parentSpanContext?.spanId).toBe('b7ad6b7169203331')
    expect(finished?.attributes).toEqual({ 'cif.id': '10000000009' })
  })

  it('starts a new trace when the parent is missing, unreadable or given twice', () => {
    const tracing = new Tracing('test', [])
    const ids = [undefined, null, '', 'garbage', '00-00000000000000000000000000000000-b7ad6b7169203331-01', ['a', 'b']].map((parent) =>
      traceIdOf(traceparentOf(tracing.start('a', SpanKind.SERVER, parent, {})))
    )
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/)
    expect(new Set(ids).size).toBe(ids.length)
    expect(traceIdOf('not a traceparent')).toBeNull()
    expect(spanIdOf(null)).toBeNull()
  })
})

describe('telemetry settings', () => {
  it('sends spans where the standard OpenTelemetry variables say, and nowhere by default', () => {
    expect(loadConfig({}).telemetry).toEqual({
      metricsHost: '127.0.0.1',
      cifMetricsPort: undefined,
      syncerMetricsPort: undefined,
      otlpTracesUrl: undefined
    })
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).telemetry.otlpTracesUrl).toBe('http://collector:4318/v1/traces')
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example/otlp' })
        .telemetry.otlpTracesUrl
    ).toBe('https://traces.example/otlp')
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }).telemetry.otlpTracesUrl).toBeUndefined()
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toThrow(ConfigError)
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'grpc://collector' })).toThrow(/OTEL_EXPORTER_OTLP_TRACES_ENDPOINT must be an http/)
  })

  it('serves metrics on the ports given, and refuses a port that is not one', () => {
    const { telemetry } = loadConfig({ CIF_METRICS_PORT: '9464', SYNCER_METRICS_PORT: '0', METRICS_HOST: '0.0.0.0' })
    expect(telemetry).toMatchObject({ metricsHost: '0.0.0.0', cifMetricsPort: 9464, syncerMetricsPort: 0 })
    expect(() => loadConfig({ SYNCER_METRICS_PORT: '70000' })).toThrow(/SYNCER_METRICS_PORT must be a whole number from 0 to 65535/)
  })
})

describe('the outcome of a create, as counted', () => {
  it('tells a replay from a create, and our failures from the caller’s', () => {
    expect(createOutcome(201, false)).toBe('created')
    expect(createOutcome(201, true)).toBe('replayed')
    expect(createOutcome(409, true)).toBe('replayed')
    expect(createOutcome(400, false)).toBe('refused')
    expect(createOutcome(429, false)).toBe('refused')
    expect(createOutcome(500, false)).toBe('failed')
  })
})
