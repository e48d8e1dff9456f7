import { syncerProblems } from '../contracts/problems.ts'
import { OutboxRelay } from '../outbox/relay.ts'
import type { OutboxTables } from '../outbox/tables.ts'
import { type Config, type Connections, requireTrustedEventKeys, tlsOptions } from '../platform/config.ts'
import { openDatabase } from '../platform/database/index.ts'
import { dependencyChecks } from '../platform/health.ts'
import { createHttpServer, type HttpServer, type HttpServerOptions } from '../platform/http/server.ts'
import type { Logger } from '../platform/logger.ts'
import { type MetricsServer, newMetricsRegistry, startMetricsServer } from '../platform/metrics.ts'
import { startPeriodic } from '../platform/periodic.ts'
import { FailureLog } from '../platform/retry.ts'
import { startTracing } from '../platform/tracing.ts'
import { adminApi } from './api/admin-api.ts'
import { callbackApi } from './api/callback-api.ts'
import { reconciliationApi } from './api/reconciliation-api.ts'
import { CONSOLE_PREFIX, type LiveState, operatorConsole } from './console/console.ts'
import { AttemptRecorder } from './delivery/attempt-recorder.ts'
import { MARK_HELD_TOO_LONG_MS, rollUpSettledCounts } from './delivery/delivery-counts.ts'
import { recoverExpiredLeases } from './delivery/delivery-store.ts'
import { EndSystemClient } from './delivery/end-system-client.ts'
import { retireRemovedEndSystems } from './delivery/end-system-store.ts'
import { type EndSystemConfig, loadEndSystems } from './delivery/end-systems-config.ts'
import { DeliveryLane } from './delivery/lane.ts'
import { EventIntake } from './intake/event-intake.ts'
import { SyncerMetrics, type SyncerTelemetry } from './metrics.ts'
import { Reconciler } from './reconciliation/reconciler.ts'
import { applyRetention, prepareAttemptMonths, retireAttemptMonths } from './retention.ts'
import { overdueVersions, tellOverdue } from './status/overdue.ts'
import { sequenceStatusUpdates, statusQueue } from './status/sync-status.ts'
import type { SyncerDatabase, SyncerDb } from './tables.ts'

export interface Syncer {
  app: HttpServer
  url: string
  /** Where Prometheus scrapes it, when SYNCER_METRICS_PORT is set. */
  metricsUrl: string | undefined
  close(): Promise<void>
}

const LEASE_CHECK_EVERY_MS = 5000
const RETENTION_EVERY_MS = 60_000
/** How often versions past the in-sync deadline are looked for: often enough to tell one within 10 s of it. */
const OVERDUE_CHECK_EVERY_MS = 10_000
/** How often a syncer starts the scheduled runs due and takes up a run nobody works on (new, or its worker gone). */
const RUNS_EVERY_MS = 5000

/** What the syncer's HTTP APIs need of the running syncer. */
export interface SyncerAppParts {
  /** The end systems it delivers to: those an operator may pause, and those runs read back or backfill. */
  endSystems: readonly EndSystemConfig[]
  /** Called when the admin API creates a reconciliation or backfill run, so that it is worked at once. */
  onRunCreated?: () => void
  /** What it knows of itself now, for the operators' console: without it, no console is served. */
  live?: () => LiveState
}

/**
 * The syncer's HTTP APIs (callback and admin, and the operators' console when `parts.live` is given) on `db`,
 * not yet listening (tests call it with `inject`).
 */
export async function createSyncerApp(
  config: Config,
  db: SyncerDb,
  log: Logger,
  readinessChecks: HttpServerOptions['readinessChecks'],
  parts: SyncerAppParts
): Promise<HttpServer> {
  const { endSystems, onRunCreated = () => {}, live } = parts
  const app = await createHttpServer({
    logger: log,
    bodyLimitBytes: 16 * 1024,
    limits: config.http,
    publicApiDocs: config.publicApiDocs,
    tls: tlsOptions(config),
    title: 'CIF Syncer',
    description: 'Where each customer stands in every end system: callback API for source systems, admin API for operators.',
    readinessChecks,
    problemTypes: syncerProblems,
    apiKeySchemes: ['sourceSystemKey', 'operatorKey'],
    logEveryRequest: config.logFormat !== 'pretty'
  })
  await app.register(callbackApi, {
    prefix: '/v1/sync',
    db,
    sourceSystemKeyHashes: config.sourceSystemKeyHashes,
    sourceSystemGrants: config.sourceSystemGrants
  })
  await app.register(adminApi, {
    prefix: '/v1/admin',
    db,
    operatorKeyHashes: config.operatorKeyHashes,
    operatorRoles: config.operatorRoles,
    actionRequestExpiryMs: config.syncer.actionRequestExpiryMs,
    bulkRedriveLimit: config.syncer.bulkRedriveLimit,
    endSystems,
    inSyncDeadlineMs: config.syncer.inSyncDeadlineMs
  })
  if (live) {
    await app.register(operatorConsole, {
      prefix: CONSOLE_PREFIX,
      db,
      operatorKeyHashes: config.operatorKeyHashes,
      operatorRoles: config.operatorRoles,
      actionRequestExpiryMs: config.syncer.actionRequestExpiryMs,
      bulkRedriveLimit: config.syncer.bulkRedriveLimit,
      sessionSecret: config.syncer.consoleSessionSecret,
      inSyncDeadlineMs: config.syncer.inSyncDeadlineMs,
      secureCookies: config.tls !== undefined,
      endSystems,
      live
    })
  }
  await app.register(reconciliationApi, {
    prefix: '/v1/admin',
    db,
    operatorKeyHashes: config.operatorKeyHashes,
    operatorRoles: config.operatorRoles,
    endSystems,
    onRunCreated
  })
  return app
}

/**
 * The syncer: takes CIF events from Kafka, delivers each to every end system, records every attempt, and
 * tells source systems how it went (status topic, callback API).
 */
export async function startSyncer(
  config: Config,
  connections: Connections,
  log: Logger,
  endSystems: EndSystemConfig[] = loadEndSystems(config.syncer.endSystemsFile)
): Promise<Syncer> {
  // Before anything is opened: a syncer that trusts no key of the CIF service must not start at all.
  const trustedEventKeys = requireTrustedEventKeys(config)
  const database = openDatabase<SyncerDatabase>(connections.databaseUrl, { maxConnections: 20 })
  const { db } = database
  const clients = new Map(endSystems.map((system) => [system.name, new EndSystemClient(system)]))
  const recorder = new AttemptRecorder(db)
  let intake: EventIntake | undefined
  const telemetry: SyncerTelemetry = {
    metrics: new SyncerMetrics(newMetricsRegistry('cif-syncer'), {
      db,
      endSystems: endSystems.map((s) => s.name),
      clients,
      consumerLag: () => intake?.lagByPartition(),
      overdueVersions: async () => (await overdueVersions(db, config.syncer.inSyncDeadlineMs)).count
    }),
    tracing: await startTracing('cif-syncer', config.telemetry.otlpTracesUrl)
  }
  const lanes = new Map(
    endSystems.map((system) => [
      system.name,
      new DeliveryLane(system, db, clients.get(system.name)!, recorder, log.child({ endSystem: system.name }), telemetry)
    ])
  )
  const wakeAll = (): void => {
    for (const lane of lanes.values()) lane.wake()
  }

  intake = new EventIntake({
    db,
    kafka: connections.kafka,
    groupId: config.syncer.groupId,
    endSystems: endSystems.map((s) => s.name),
    trustedEventKeys,
    log: log.child({ component: 'intake' }),
    onStored: (systems) => {
      for (const name of systems) lanes.get(name)?.wake()
    },
    stallMs: config.syncer.intakeStallMs,
    unreadyAfterMs: config.syncer.intakeUnreadyAfterMs,
    telemetry
  })
  await intake.start()

  const relay = new OutboxRelay({
    // The feed is the queue: each status row is also its message.
    db: db.$omitTables<keyof OutboxTables>(),
    databaseUrl: connections.databaseUrl,
    kafka: connections.kafka,
    clientId: 'cif-syncer-status',
    queue: statusQueue,
    ...config.outbox,
    retentionBatchSize: config.retentionBatchSize,
    log: log.child({ component: 'status-relay' }),
    telemetry: { registry: telemetry.metrics.registry, tracing: telemetry.tracing }
  })
  relay.start()

  // Retries come due and other syncers store deliveries: look regularly, not only when told.
  let sequencing = false
  const sequencingLog = new FailureLog(log, 'cannot sequence status updates', 40)
  const leaseLog = new FailureLog(log, 'lease recovery failed')
  const poll = setInterval(() => {
    wakeAll()
    if (sequencing) return
    sequencing = true
    sequenceStatusUpdates(db)
      .then(
        () => sequencingLog.succeeded(),
        (error: unknown) => sequencingLog.failed(error)
      )
      .finally(() => {
        sequencing = false
      })
  }, config.syncer.pollIntervalMs)
  const leases = setInterval(() => {
    recoverExpiredLeases(db).then(
      (recovered) => {
        leaseLog.succeeded()
        if (recovered) {
          log.warn({ recovered }, 'attempts lost by a stopped syncer are retried')
          wakeAll()
        }
      },
      (error: unknown) => leaseLog.failed(error)
    )
  }, LEASE_CHECK_EVERY_MS)
  const retentionLog = new FailureLog(log, 'retention round failed')
  // Without its round, attempts of a month with no partition go to the default one: nothing is lost.
  const partitionLog = new FailureLog(log, 'transaction table partitions not maintained')
  // Without its round, the summary counts more of the table live: slower, never wrong.
  const countsLog = new FailureLog(log, 'settled delivery counts not rolled up')
  const retention = startPeriodic(RETENTION_EVERY_MS, async () => {
    try {
      const purged = await applyRetention(db, config.syncer.eventPayloadRetentionHours, config.retentionBatchSize)
      retentionLog.succeeded()
      if (purged.eventPayloads || purged.unreadableMessages) log.info(purged, 'purged payloads past retention')
    } catch (error) {
      retentionLog.failed(error)
    }
    try {
      const { heldBy } = await rollUpSettledCounts(db)
      countsLog.succeeded()
      if (heldBy)
        log.warn(
          heldBy,
          `a database transaction open for more than ${MARK_HELD_TOO_LONG_MS / 60_000} minutes holds back the settled delivery counts ` +
            '(the summary counts live since it began: slower, still right); unless it is a backup or a known long job, end it'
        )
    } catch (error) {
      countsLog.failed(error)
    }
    try {
      const made = await prepareAttemptMonths(db)
      const retired = await retireAttemptMonths(db, config.syncer.attemptRetention)
      partitionLog.succeeded()
      if (made.length || retired.length)
        log.info({ made, retired, action: config.syncer.attemptRetention.action }, 'transaction table months made or retired')
    } catch (error) {
      partitionLog.failed(error)
    }
  })
  // Nothing waits for ever on a system no syncer will deliver to again. Beside the lanes, not before them
  // (they serve configured systems only), and tried again until PostgreSQL answers, so that a syncer starts
  // while it is away, as it otherwise does. Safe to overlap: each delivery is retired once.
  let retired = false
  const retireLog = new FailureLog(log, 'cannot retire the deliveries of end systems no longer configured')
  const retireRemoved = async (): Promise<void> => {
    if (retired) return
    try {
      const removed = await retireRemovedEndSystems(
        db,
        endSystems.map((s) => s.name)
      )
      retired = true
      retireLog.succeeded()
      for (const [endSystem, deliveries] of removed) {
        log.warn({ endSystem, deliveries }, 'end system no longer configured: its open deliveries are RETIRED')
      }
    } catch (error) {
      retireLog.failed(error)
    }
  }
  const retirement = startPeriodic(LEASE_CHECK_EVERY_MS, retireRemoved)
  const firstRetirement = retireRemoved()
  const deadlineLog = new FailureLog(log, 'cannot look for versions past the in-sync deadline')
  const overdue = startPeriodic(Math.min(OVERDUE_CHECK_EVERY_MS, config.syncer.inSyncDeadlineMs), async () => {
    try {
      const told = await tellOverdue(db, config.syncer.inSyncDeadlineMs)
      deadlineLog.succeeded()
      if (told) log.warn({ versions: told, deadlineMs: config.syncer.inSyncDeadlineMs }, 'customer versions past the in-sync deadline')
    } catch (error) {
      deadlineLog.failed(error)
    }
  })
  wakeAll()

  // Reconciliation and backfill runs: one at a time per syncer, taken from the database, so any syncer works a
  // run another one left (crash, restart). Their repairs and backfill deliveries go through the lanes above.
  const reconciler = new Reconciler({ db, endSystems, log: log.child({ component: 'reconciliation' }) })
  const runsLog = new FailureLog(log, 'reconciliation runs not worked; will retry')
  let runsRound: Promise<void> | undefined
  const workRuns = (): void => {
    if (runsRound) return
    runsRound = (async () => {
      try {
        await reconciler.startScheduledRuns()
        while (await reconciler.workOne(undefined, wakeAll));
        runsLog.succeeded()
      } catch (error) {
        runsLog.failed(error)
      }
    })().finally(() => {
      runsRound = undefined
    })
  }
  const runsTimer = setInterval(workRuns, RUNS_EVERY_MS)

  const dependencies = dependencyChecks(db, connections.kafka)
  const app = await createSyncerApp(
    config,
    db,
    log,
    {
      ...dependencies.checks,
      intake: async () => intake.health(),
      statusRelay: async () => relay.health()
    },
    {
      endSystems,
      onRunCreated: workRuns,
      live: () => ({
        circuits: new Map([...clients].map(([name, client]) => [name, client.circuitState])),
        intake: intake.health(),
        statusRelay: relay.health()
      })
    }
  )
  const url = await app.listen({ host: config.syncer.host, port: config.syncer.port })
  const { metricsHost, syncerMetricsPort } = config.telemetry
  const metricsServer: MetricsServer | undefined =
    syncerMetricsPort === undefined ? undefined : await startMetricsServer(telemetry.metrics.registry, metricsHost, syncerMetricsPort, log)

  return {
    app,
    url,
    metricsUrl: metricsServer?.url,
    close: async () => {
      clearInterval(poll)
      clearInterval(leases)
      clearInterval(runsTimer)
      await reconciler.stop()
      await runsRound
      await retention.stop()
      await metricsServer?.close()
      await overdue.stop()
      await retirement.stop()
      await firstRetirement
      await app.close()
      await intake.stop()
      await Promise.all([...lanes.values()].map((lane) => lane.stop()))
      await relay.stop()
      await Promise.all([dependencies.close(), ...[...clients.values()].map((c) => c.close())])
      await telemetry.tracing.close()
      await database.close()
    }
  }
}
