import { type Attributes, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, TraceFlags, type Tracer, trace } from '@opentelemetry/api'
import { parseTraceParent } from '@opentelemetry/core'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type SpanProcessor,
  TracerProvider
} from '@opentelemetry/sdk-trace'

export { type Span, SpanKind, SpanStatusCode }

/** The W3C Trace Context header, as HTTP requests, Kafka headers and the stored rows carry it. */
export const TRACEPARENT = 'traceparent'

/**
 * A service's spans. Trace context always flows (a create's trace id reaches every end system, and is
 * stored with the event and each attempt for the console), whether or not spans are exported:
 *
 * - exporting (OTEL_EXPORTER_OTLP_ENDPOINT set): every span is recorded and sent by OTLP/HTTP in batches;
 * - not exporting: no span is recorded (the AlwaysOff sampler hands out ids and nothing else), so a
 *   span costs a couple of random ids. Such spans are marked not sampled in the traceparent they pass on.
 *
 * Context is passed explicitly (a traceparent from a header or a row), never through a context manager:
 * no async hooks on the hot paths.
 */
export class Tracing {
  readonly exporting: boolean
  readonly #provider: TracerProvider
  readonly #tracer: Tracer

  /** `spanProcessors`: where recorded spans go; none, and nothing is recorded. */
  constructor(service: string, spanProcessors: SpanProcessor[]) {
    this.exporting = spanProcessors.length > 0
    this.#provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': service }),
      sampler: this.exporting ? new ParentBasedSampler({ root: new AlwaysOnSampler() }) : new AlwaysOffSampler(),
      spanProcessors
    })
    this.#tracer = this.#provider.getTracer('cif-syncer')
  }

  /**
   * A span under the `parent` traceparent (a new trace when there is none, it cannot be read, or a request
   * sent the header twice).
   */
  start(name: string, kind: SpanKind, parent: string | readonly string[] | null | undefined, attributes: Attributes): Span {
    const parentContext = typeof parent === 'string' ? parseTraceParent(parent) : null
    const context = parentContext ? trace.setSpanContext(ROOT_CONTEXT, parentContext) : ROOT_CONTEXT
    return this.#tracer.startSpan(name, { kind, attributes }, context)
  }

  async close(): Promise<void> {
    await this.#provider.shutdown()
  }
}

/** The traceparent that makes the next hop a child of `span`. */
export function traceparentOf(span: Span): string {
  const { traceId, spanId, traceFlags } = span.spanContext()
  return `00-${traceId}-${spanId}-${(traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00'}`
}

/** The trace id in a traceparent, if it holds a valid one. */
export function traceIdOf(traceparent: string | null | undefined): string | null {
  return (traceparent && parseTraceParent(traceparent)?.traceId) || null
}

/** The span id in a traceparent, if it holds a valid one. */
export function spanIdOf(traceparent: string | null | undefined): string | null {
  return (traceparent && parseTraceParent(traceparent)?.spanId) || null
}

/** Ends a span as failed when `failure` says why. */
export function endSpan(span: Span, failure?: string): void {
  if (failure !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: failure })
  span.end()
}

/**
 * The tracing a service runs with: spans sent in batches by OTLP/HTTP (JSON) to `otlpTracesUrl`
 * (platform/config.ts; the exporter reads OTEL_EXPORTER_OTLP_HEADERS and the timeout itself), or ids only.
 */
export async function startTracing(service: string, otlpTracesUrl: string | undefined): Promise<Tracing> {
  if (!otlpTracesUrl) return new Tracing(service, [])
  // Imported only to export: with its encoders it took about a second to load on the shared 2-core machine,
  // a second longer for every service start (a restart after a crash among them).
  const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http')
  return new Tracing(service, [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: otlpTracesUrl }) })])
}
