import { syncerProblems } from '../contracts/problems.ts'
import { OutboxRelay } from '../outbox/relay.ts'
import type { OutboxTables } from '../outbox/tables.ts'
import { type Config, type Connections, requireTrustedEventKeys, tlsOptions } from '../platform/config.ts'
import { openDatabase } from '../platform/database/index.ts'
import { dependencyChecks } from '../platform/health.ts'
import { createHttpServer, type HttpServer, type HttpServerOptions } from '../platform/http/server.ts'
import type { Logger } from '../platform/logger.ts'
import { startPeriodic } from '../platform/periodic.ts'
import { FailureLog } from '../platform/retry.ts'
import { adminApi } from './api/admin-api.ts'
import { callbackApi } from './api/callback-api.ts'
import { reconciliationApi } from './api/reconciliation-api.ts'
import { AttemptRecorder } from './delivery/attempt-recorder.ts'
import { recoverExpiredLeases } from './delivery/delivery-store.ts'
import { EndSystemClient } from './delivery/end-system-client.ts'
import { type EndSystemConfig, loadEndSystems } from './delivery/end-systems-config.ts'
import { DeliveryLane } from './delivery/lane.ts'
import { EventIntake } from './intake/event-intake.ts'
import { Reconciler } from './reconciliation/reconciler.ts'
import { applyRetention, prepareAttemptMonths, retireAttemptMonths } from './retention.ts'
import { sequenceStatusUpdates, statusQueue } from './status/sync-status.ts'
import type { SyncerDatabase, SyncerDb } from './tables.ts'

export interface Syncer {
  app: HttpServer
  url: string
  close(): Promise<void>
}

const LEASE_CHECK_EVERY_MS = 5000
const RETENTION_EVERY_MS = 60_000
/** How often a syncer starts the scheduled runs due and takes up a run nobody works on (new, or its worker gone). */
const RUNS_EVERY_MS = 5000

/** The syncer's HTTP APIs (callback and admin) on `db`, not yet listening (tests call it with `inject`). */
export async function createSyncerApp(
  config: Config,
  db: SyncerDb,
  log: Logger,
  readinessChecks: HttpServerOptions['readinessChecks'],
  reconciliation: { endSystems: readonly EndSystemConfig[]; onRunCreated: () => void } = { endSystems: [], onRunCreated: () => {} }
): Promise<HttpServer> {
  const app = await createHttpServer({
    logger: log,
    bodyLimitBytes: 16 * 1024,
    limits: config.http,
    publicApiDocs: config.publicApiDocs,
    tls: tlsOptions(config),
    title: 'CIF Syncer',
    description: 'Where each customer stands in every end system: callback API for source systems, admin API for operators.',
    readinessChecks,
    problemTypes: syncerProblems
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
    bulkRedriveLimit: config.syncer.bulkRedriveLimit
  })
  await app.register(reconciliationApi, {
    prefix: '/v1/admin',
    db,
    operatorKeyHashes: config.operatorKeyHashes,
    operatorRoles: config.operatorRoles,
    ...reconciliation
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
  const lanes = new Map(
    endSystems.map((system) => [
      system.name,
      new DeliveryLane(system, db, clients.get(system.name)!, recorder, log.child({ endSystem: system.name }))
    ])
  )
  const wakeAll = (): void => {
    for (const lane of lanes.values()) lane.wake()
  }

  const intake = new EventIntake({
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
    unreadyAfterMs: config.syncer.intakeUnreadyAfterMs
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
    log: log.child({ component: 'status-relay' })
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
  const retention = startPeriodic(RETENTION_EVERY_MS, async () => {
    try {
      const purged = await applyRetention(db, config.syncer.eventPayloadRetentionHours, config.retentionBatchSize)
      retentionLog.succeeded()
      if (purged.eventPayloads || purged.unreadableMessages) log.info(purged, 'purged payloads past retention')
    } catch (error) {
      retentionLog.failed(error)
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
    { endSystems, onRunCreated: workRuns }
  )
  const url = await app.listen({ host: config.syncer.host, port: config.syncer.port })

  return {
    app,
    url,
    close: async () => {
      clearInterval(poll)
      clearInterval(leases)
      clearInterval(runsTimer)
      await reconciler.stop()
      await runsRound
      await retention.stop()
      await app.close()
      await intake.stop()
      await Promise.all([...lanes.values()].map((lane) => lane.stop()))
      await relay.stop()
      await Promise.all([dependencies.close(), ...[...clients.values()].map((c) => c.close())])
      await database.close()
    }
  }
}
