import { Counter, callSecondsBuckets, Gauge, Histogram, type Registry, seconds } from '../platform/metrics.ts'
import type { Tracing } from '../platform/tracing.ts'
import type { EndSystemClient } from './delivery/end-system-client.ts'
import { openStates } from './delivery/states.ts'
import type { SyncerDb } from './tables.ts'

/** What the syncer's gauges read when scraped. */
export interface SyncerMetricSources {
  db: SyncerDb
  endSystems: string[]
  /** Each end system's client, for its circuit's state. */
  clients: ReadonlyMap<string, EndSystemClient>
  /** The intake's lag per partition at its last look; undefined when it could not say. */
  consumerLag: () => ReadonlyMap<number, number> | undefined
  /** Customer versions past the in-sync deadline and not yet in every end system (status/overdue.ts). */
  overdueVersions: () => Promise<number>
}

/** From the create of a version in the CIF service to its SUCCESS in a system: seconds to hours. */
const inSyncBuckets = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600]

/**
 * The syncer's metrics, each declared here once (the status relay declares the outbox relay's). Labels are
 * end system names, states and outcomes, never a CIF ID or anything of a customer. Delivery counts come
 * from the open deliveries only (an index's worth of rows); what settled is counted as it happens, never by
 * counting the delivery table (docs/performance.md, "History").
 */
export class SyncerMetrics {
  readonly registry: Registry
  readonly eventsConsumed: Counter
  readonly attempts: Counter<'end_system' | 'outcome'>
  readonly attemptSeconds: Histogram<'end_system' | 'outcome'>
  readonly settled: Counter<'end_system' | 'state'>
  readonly retriesScheduled: Counter<'end_system'>
  readonly inSyncSeconds: Histogram<'end_system'>

  constructor(registry: Registry, sources: SyncerMetricSources) {
    this.registry = registry
    const registers = [registry]
    this.eventsConsumed = new Counter({
      name: 'syncer_events_consumed_total',
      help: 'Messages taken from cif.customer.events and stored (offsets committed after)',
      registers
    })
    this.attempts = new Counter({
      name: 'syncer_delivery_attempts_total',
      help: 'Attempts to deliver to an end system, by outcome (success, error)',
      labelNames: ['end_system', 'outcome'],
      registers
    })
    this.attemptSeconds = new Histogram({
      name: 'syncer_delivery_attempt_duration_seconds',
      help: "An attempt's call to the end system, by outcome",
      labelNames: ['end_system', 'outcome'],
      buckets: callSecondsBuckets,
      registers
    })
    this.settled = new Counter({
      name: 'syncer_delivery_outcomes_total',
      help: 'Deliveries an attempt moved to SUCCESS, RETRY_SCHEDULED or FAILED',
      labelNames: ['end_system', 'state'],
      registers
    })
    this.retriesScheduled = new Counter({
      name: 'syncer_delivery_retries_scheduled_total',
      help: 'Retries scheduled after a failed attempt',
      labelNames: ['end_system'],
      registers
    })
    this.inSyncSeconds = new Histogram({
      name: 'syncer_in_sync_duration_seconds',
      help: 'From the change of a customer in the CIF service to its SUCCESS in an end system',
      labelNames: ['end_system'],
      buckets: inSyncBuckets,
      registers
    })
    this.#gauges(sources)
  }

  /** What an attempt came to. */
  attempted(endSystem: string, outcome: 'success' | 'error', durationMs: number): void {
    this.attempts.inc({ end_system: endSystem, outcome })
    this.attemptSeconds.observe({ end_system: endSystem, outcome }, seconds(durationMs))
  }

  /** Where a recorded attempt moved its delivery; `changedAt`: when the CIF service made the version. */
  moved(endSystem: string, state: 'SUCCESS' | 'RETRY_SCHEDULED' | 'FAILED', changedAt: Date, now: Date): void {
    this.settled.inc({ end_system: endSystem, state })
    if (state === 'RETRY_SCHEDULED') this.retriesScheduled.inc({ end_system: endSystem })
    if (state === 'SUCCESS') this.inSyncSeconds.observe({ end_system: endSystem }, Math.max(0, seconds(now.getTime() - changedAt.getTime())))
  }

  #gauges(sources: SyncerMetricSources): void {
    const registers = [this.registry]
    const { db, endSystems, clients } = sources
    new Gauge({
      name: 'syncer_deliveries',
      help: `Deliveries waiting or needing a person, by end system and state (${openStates.join(', ')})`,
      labelNames: ['end_system', 'state'],
      registers,
      async collect() {
        const rows = await db
          .selectFrom('delivery')
          .select(['end_system', 'state', (eb) => eb.fn.countAll<string>().as('deliveries')])
          .where('state', 'in', openStates)
          .groupBy(['end_system', 'state'])
          .execute()
          .catch(() => undefined)
        if (!rows) return // the database does not answer: the last figures stay
        // Every pair is set, to 0 when none: a series that vanished would read as "unknown", not "none".
        for (const system of endSystems) for (const state of openStates) this.set({ end_system: system, state }, 0)
        for (const row of rows) this.set({ end_system: row.end_system, state: row.state }, Number(row.deliveries))
      }
    })
    new Gauge({
      name: 'syncer_circuit_state',
      help: "Each end system's circuit breaker: 1 for the state it is in (closed, open, half-open, isolated), 0 for the others",
      labelNames: ['end_system', 'state'],
      registers,
      collect() {
        for (const [system, client] of clients) {
          for (const state of ['closed', 'open', 'half-open', 'isolated'] as const) {
            this.set({ end_system: system, state }, client.circuitState === state ? 1 : 0)
          }
        }
      }
    })
    new Gauge({
      name: 'syncer_consumer_lag_messages',
      help: "Messages on cif.customer.events beyond the group's committed offsets, per partition this syncer reads",
      labelNames: ['partition'],
      registers,
      collect() {
        const lag = sources.consumerLag()
        this.reset()
        for (const [partition, waiting] of lag ?? []) this.set({ partition: String(partition) }, waiting)
      }
    })
    const { overdueVersions } = sources
    new Gauge({
      name: 'syncer_customer_versions_overdue',
      help: 'Customer versions not in every end system within the in-sync deadline (SYNCER_IN_SYNC_DEADLINE_MS)',
      registers,
      async collect() {
        await overdueVersions().then(
          (overdue) => this.set(overdue),
          () => {}
        )
      }
    })
  }
}

/** What the syncer reports to: its metrics and its spans. */
export interface SyncerTelemetry {
  metrics: SyncerMetrics
  tracing: Tracing
}
