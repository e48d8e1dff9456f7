import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startCifService } from '../cif/service.ts'
import { topics } from '../contracts/topics.ts'
import { type Config, devOperator, devSourceSystem, hasKey } from '../platform/config.ts'
import type { HttpServer } from '../platform/http/server.ts'
import { onShutdown, stopWithParent } from '../platform/lifecycle.ts'
import { startInfrastructure } from '../platform/local/infrastructure.ts'
import type { Logger } from '../platform/logger.ts'
import { reloadOnHangup } from '../platform/reload.ts'
import { startSimulator } from '../simulator/service.ts'
import { startSyncer } from '../syncer/service.ts'
import { migrations } from './migrations.ts'

/**
 * The banner's sample customer, with an identifier of its own each start: the local stack keeps its
 * customers, and a second create with the same identifier is (rightly) a 409.
 */
export function demoCustomer(random: () => number = Math.random) {
  const digits = String(Math.floor(random() * 10_000_000)).padStart(7, '0')
  return {
    legalForm: 'PERSON',
    firstName: 'Ada',
    lastName: 'Lovelace',
    dateOfBirth: '1990-12-10',
    mobileNumber: '+6591234567',
    email: 'ada@example.com',
    identifiers: [{ type: 'NATIONAL_ID', value: `S${digits}D`, issuingCountry: 'SG' }]
  }
}

/** How long the banner waits for every service to say it is ready before it says where to look. */
const READY_WITHIN_MS = 120_000

/** Waits until each server's `/health/ready` answers 200; false if one is not ready within `withinMs`. */
async function allReady(apps: HttpServer[], withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs
  for (const app of apps) {
    while ((await app.inject({ method: 'GET', url: '/health/ready' })).statusCode !== 200) {
      if (Date.now() >= deadline) return false
      await sleep(100)
    }
  }
  return true
}

/** The simulated core banking system wants a bearer token, as a real one would; locally it is this one. */
const DEV_CORE_BANKING_TOKEN = 'local-core-banking-token'

/** Where `cif-syncer up` serves each service's metrics unless CIF_METRICS_PORT or SYNCER_METRICS_PORT says otherwise. */
const LOCAL_METRICS_PORTS = { cif: 9464, syncer: 9465 }

/** `cif-syncer up`: PostgreSQL, Kafka, the CIF service, the syncer and the simulated end systems, wired together. */
export async function runLocalStack(configured: Config, log: Logger): Promise<void> {
  const { telemetry } = configured
  const config: Config = {
    ...configured,
    telemetry: {
      ...telemetry,
      cifMetricsPort: telemetry.cifMetricsPort ?? LOCAL_METRICS_PORTS.cif,
      syncerMetricsPort: telemetry.syncerMetricsPort ?? LOCAL_METRICS_PORTS.syncer
    }
  }
  const started = Date.now()
  process.env.CORE_BANKING_TOKEN ??= DEV_CORE_BANKING_TOKEN
  const infrastructure = await startInfrastructure(config, log, migrations)
  const simulator = await startSimulator(
    {
      ...config.simulator,
      requiredAuthorization: { 'core-banking': `Bearer ${process.env.CORE_BANKING_TOKEN}` },
      logEveryRequest: config.logFormat !== 'pretty',
      // Beside PostgreSQL's data: the end systems hold what the syncer delivered to them before.
      dataDir: join(config.dataDir, 'simulator')
    },
    log.child({ service: 'simulator' })
  )
  const cif = await startCifService(config, infrastructure, log.child({ service: 'cif-service' }))
  const syncer = await startSyncer(config, infrastructure, log.child({ service: 'syncer' }))
  // The services before the servers they stand on: stopped the other way round, they would warn of a lost
  // database or broker on their way out.
  onShutdown(log, async () => {
    await cif.close()
    await syncer.close()
    await simulator.close()
    await infrastructure.stop()
  })
  stopWithParent(log)
  // Both services hold the same settings: one reload serves them both.
  reloadOnHangup(config, [cif.app, syncer.app], log)
  // The documented development keys are shown only where they are accepted.
  const key = hasKey(config.sourceSystemKeyHashes, devSourceSystem.apiKey) ? devSourceSystem.apiKey : '<your source system key>'
  const operatorKey = hasKey(config.operatorKeyHashes, devOperator.apiKey) ? devOperator.apiKey : '<your operator key>'
  const auth = `-H 'Authorization: Bearer ${key}'`
  const docs = (url: string) => (config.publicApiDocs ? `docs: ${url}/docs` : '(API_DOCS=off)')
  // The banner promises a working stack: the syncer listens about a second after the CIF service is ready.
  if (!(await allReady([simulator.app, cif.app, syncer.app], READY_WITHIN_MS))) {
    log.warn(`not every service is ready after ${READY_WITHIN_MS / 1000} s; each one's /health/ready says what it waits for`)
  }
  process.stdout.write(
    [
      '',
      `CIF Syncer local stack is up (${((Date.now() - started) / 1000).toFixed(1)} s). Ctrl-C stops it.`,
      `  CIF API        ${cif.url}   ${docs(cif.url)}`,
      `  Syncer API     ${syncer.url}   ${docs(syncer.url)}`,
      `  Console        ${syncer.url}/console   (sign in with the operator key below)`,
      `  Simulator      ${simulator.url}/systems   (${[...simulator.systems.values()].map((s) => `${s.shape.name} ${s.url}`).join(', ')})`,
      `  Metrics        ${cif.metricsUrl}   ${syncer.metricsUrl}   (Prometheus text format)`,
      `  Kafka          ${infrastructure.kafka.brokers.join(',')}   topics: ${topics.customerEvents}, ${topics.syncStatus}`,
      `  PostgreSQL     ${infrastructure.databaseUrl.replace(/:[^:@/]+@/, ':***@')}`,
      `  API keys       source system "${devSourceSystem.name}": ${key}   operator "${devOperator.name}": ${operatorKey}   (local use only)`,
      '',
      'Create a customer:',
      `  curl -i -X POST ${cif.url}/v1/customers ${auth} -H 'Content-Type: application/json' \\`,
      `    -d '${JSON.stringify(demoCustomer())}'`,
      'Where it stands in every end system:',
      `  curl -s ${syncer.url}/v1/sync/customers/<cifId> ${auth}`,
      'What the simulated systems hold:',
      `  curl -s ${simulator.url}/systems/core-banking/records`,
      'Watch the topics: npm run tail:events    npm run tail:status',
      '',
      ''
    ].join('\n')
  )
}
