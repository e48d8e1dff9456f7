import { cifProblems } from '../contracts/problems.ts'
import { topics } from '../contracts/topics.ts'
import { OutboxRelay, outboxQueue } from '../outbox/relay.ts'
import { type Config, type Connections, requireEventSigningKey, tlsOptions } from '../platform/config.ts'
import { openDatabase } from '../platform/database/index.ts'
import { dependencyChecks } from '../platform/health.ts'
import { createHttpServer, type HttpServer, type HttpServerOptions } from '../platform/http/server.ts'
import type { Logger } from '../platform/logger.ts'
import { type MetricsServer, newMetricsRegistry, startMetricsServer } from '../platform/metrics.ts'
import { inBatches, startPeriodic } from '../platform/periodic.ts'
import { FailureLog } from '../platform/retry.ts'
import { startTracing } from '../platform/tracing.ts'
import { purgeIdempotencyKeys } from './idempotency.ts'
import { type CifTelemetry, cifMetrics, unobservedCifTelemetry } from './metrics.ts'
import { cifApi } from './routes.ts'
import type { CifDatabase, CifDb, CifTables } from './tables.ts'

export interface CifService {
  app: HttpServer
  /** Base URL the API listens on, e.g. http://127.0.0.1:8080 */
  url: string
  /** Where Prometheus scrapes it, when CIF_METRICS_PORT is set. */
  metricsUrl: string | undefined
  close(): Promise<void>
}

const RETENTION_EVERY_MS = 60_000

/** The CIF service's HTTP API on `db`, not yet listening (tests call it with `inject`). */
export async function createCifApp(
  config: Config,
  db: CifDb,
  log: Logger,
  readinessChecks: HttpServerOptions['readinessChecks'],
  telemetry: CifTelemetry = unobservedCifTelemetry()
): Promise<HttpServer> {
  const app = await createHttpServer({
    logger: log,
    bodyLimitBytes: config.cif.bodyLimitBytes,
    limits: config.http,
    publicApiDocs: config.publicApiDocs,
    tls: tlsOptions(config),
    title: 'CIF service',
    description: 'Create and change customers under a CIF ID; every change is published to Kafka (cif.customer.events).',
    readinessChecks,
    problemTypes: cifProblems,
    apiKeySchemes: ['sourceSystemKey'],
    logEveryRequest: config.logFormat !== 'pretty'
  })
  await app.register(cifApi, {
    prefix: '/v1',
    db,
    sourceSystemKeyHashes: config.sourceSystemKeyHashes,
    sourceSystemGrants: config.sourceSystemGrants,
    eventSigningKey: requireEventSigningKey(config),
    telemetry
  })
  return app
}

/** The CIF service: the customer API and the relay that publishes its outbox to Kafka. */
export async function startCifService(config: Config, connections: Connections, log: Logger): Promise<CifService> {
  // Before anything is opened: a CIF service without its signing key must not start at all.
  requireEventSigningKey(config)
  const database = openDatabase<CifDatabase>(connections.databaseUrl, { maxConnections: 20 })
  const dependencies = dependencyChecks(database.db, connections.kafka)
  const telemetry: CifTelemetry = {
    metrics: cifMetrics(newMetricsRegistry('cif-service')),
    tracing: await startTracing('cif-service', config.telemetry.otlpTracesUrl)
  }
  const relay = new OutboxRelay({
    // The relay sees the outbox table only.
    db: database.db.$omitTables<keyof CifTables>(),
    databaseUrl: connections.databaseUrl,
    kafka: connections.kafka,
    clientId: 'cif-service',
    queue: outboxQueue([topics.customerEvents]),
    ...config.outbox,
    retentionBatchSize: config.retentionBatchSize,
    log: log.child({ component: 'outbox-relay' }),
    telemetry: { registry: telemetry.metrics.registry, tracing: telemetry.tracing }
  })
  const app = await createCifApp(config, database.db, log, { ...dependencies.checks, outboxRelay: async () => relay.health() }, telemetry)

  relay.start()
  const { idempotencyRetentionHours } = config.cif
  const { retentionBatchSize } = config
  const retentionLog = new FailureLog(log, 'idempotency key purge failed')
  const retention = startPeriodic(RETENTION_EVERY_MS, async () => {
    try {
      const purged = await inBatches(() => purgeIdempotencyKeys(database.db, idempotencyRetentionHours, retentionBatchSize), retentionBatchSize)
      retentionLog.succeeded()
      if (purged) log.info({ purged }, 'purged idempotency keys past retention')
    } catch (error) {
      retentionLog.failed(error)
    }
  })

  const address = await app.listen({ host: config.cif.host, port: config.cif.port })
  const { metricsHost, cifMetricsPort } = config.telemetry
  const metricsServer: MetricsServer | undefined =
    cifMetricsPort === undefined ? undefined : await startMetricsServer(telemetry.metrics.registry, metricsHost, cifMetricsPort, log)
  return {
    app,
    url: address,
    metricsUrl: metricsServer?.url,
    close: async () => {
      await retention.stop()
      await metricsServer?.close()
      await app.close()
      await relay.stop()
      await telemetry.tracing.close()
      await dependencies.close()
      await database.close()
    }
  }
}
