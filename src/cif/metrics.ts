import { Counter, callSecondsBuckets, Histogram, Registry } from '../platform/metrics.ts'
import { Tracing } from '../platform/tracing.ts'

/** What a create came to, as the metrics tell it: a handful of values, never anything of the customer. */
export type CreateOutcome = 'created' | 'replayed' | 'refused' | 'failed'

export function createOutcome(status: number, replayed: boolean): CreateOutcome {
  if (replayed) return 'replayed'
  if (status < 400) return 'created'
  return status < 500 ? 'refused' : 'failed'
}

/** The CIF service's own metrics, each declared here once (the outbox relay declares its own). */
export interface CifMetrics {
  registry: Registry
  createRequests: Counter<'outcome' | 'status'>
  createSeconds: Histogram<'outcome'>
}

export function cifMetrics(registry: Registry): CifMetrics {
  return {
    registry,
    createRequests: new Counter({
      name: 'cif_customer_create_requests_total',
      help: 'POST /v1/customers answered, by outcome (created, replayed, refused, failed) and HTTP status',
      labelNames: ['outcome', 'status'],
      registers: [registry]
    }),
    createSeconds: new Histogram({
      name: 'cif_customer_create_duration_seconds',
      help: 'Time to answer POST /v1/customers, by outcome',
      labelNames: ['outcome'],
      buckets: callSecondsBuckets,
      registers: [registry]
    })
  }
}

/** What the CIF API reports to: its metrics and its spans. */
export interface CifTelemetry {
  metrics: CifMetrics
  tracing: Tracing
}

/** For an API that is not scraped or exported (tests with `inject`): figures kept in a registry of its own, spans not recorded. */
export function unobservedCifTelemetry(): CifTelemetry {
  return { metrics: cifMetrics(new Registry()), tracing: new Tracing('cif-service', []) }
}
