import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseDocument } from 'yaml'
import { loadConfig } from '../../src/platform/config.ts'
import { type DatabaseHandle, openDatabase } from '../../src/platform/database/index.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import { type Infrastructure, startInfrastructure } from '../../src/platform/local/infrastructure.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { migrations } from '../../src/roles/migrations.ts'
import { simulatedSystems } from '../../src/simulator/end-system-simulator.ts'
import type { RetryPolicy } from '../../src/syncer/delivery/end-systems-config.ts'
import { freePort, freePortRange } from '../integration/free-port.ts'
import type { TestDatabase } from './database.ts'
import { type Network, planNetwork, startNetwork } from './network.ts'
import { ServiceProcess } from './service-process.ts'

export const sourceKey = 'stack-branch-portal-key'
export const operatorKey = 'stack-operator-key'

export interface StackOptions {
  /** Overrides of the shipped retry policy for every end system. */
  retry?: Partial<RetryPolicy>
  circuitBreaker?: { consecutiveFailures: number; halfOpenAfterMs: number }
  concurrency?: number
  logLevel?: string
  /** NODE_OPTIONS for the service processes. */
  nodeOptions?: string
  /** Every system's `reconcile.ratePerSecond`: reads of a reconciliation (and backfill deliveries) per second. */
  readBackRatePerSecond?: number
  /** How many local Kafka brokers (LOCAL_KAFKA_BROKERS): 3 for a KRaft cluster; the services get every address. */
  kafkaBrokers?: number
  /** CIF service instances, each relaying the outbox, on ports of their own (default 1). */
  cifInstances?: number
  /** Syncer instances sharing the consumer group and the delivery claims (default 1). */
  syncerInstances?: number
  /**
   * Toxiproxy between the services and PostgreSQL, Kafka and each end system, a proxy per link
   * (`ProcessStack.network`); needs the Go toolchain to build it the first time.
   */
  networkFaults?: boolean
}

/** PostgreSQL, Kafka, and the CIF service, syncer and simulator each as a process of its own. */
export interface ProcessStack {
  dir: string
  infrastructure: Infrastructure
  database: DatabaseHandle<TestDatabase>
  /** The first CIF service instance (`cifs[0]`). */
  cif: ServiceProcess
  /** The first syncer instance (`syncers[0]`). */
  syncer: ServiceProcess
  cifs: ServiceProcess[]
  syncers: ServiceProcess[]
  simulator: ServiceProcess
  cifUrl: string
  syncerUrl: string
  /** Each CIF instance's URL, in the order of `cifs`: a load spreads its requests over them. */
  cifUrls: string[]
  syncerUrls: string[]
  simulatorUrl: string
  /** The environment the services run with (a benchmark's own processes use it too). */
  env: Record<string, string>
  /** With `networkFaults`: the links between the services and the rest, to put faults on. */
  network?: Network
  /** Another syncer in the same consumer group, on a port of its own; not started. Stopped with the stack. */
  anotherSyncer(): Promise<ServiceProcess>
  stop(): Promise<void>
}

export async function startProcessStack(options: StackOptions = {}): Promise<ProcessStack> {
  const dir = await mkdtemp(join(tmpdir(), 'cif-syncer-stack-'))
  await chmod(dir, 0o755) // PostgreSQL runs as the postgres user when we are root
  const logs = join(dir, 'logs')
  await mkdir(logs)
  const log = createLogger(options.logLevel ?? 'warn', 'stack')
  const networkPlan = options.networkFaults ? await planNetwork(options.kafkaBrokers) : undefined
  const infrastructure = await startInfrastructure(
    loadConfig({
      CIF_DATA_DIR: dir,
      LOCAL_POSTGRES_PORT: String(await freePort()),
      KAFKA_PORT: String(await freePortRange(2 * (options.kafkaBrokers ?? 1))),
      LOCAL_KAFKA_BROKERS: String(options.kafkaBrokers ?? 1)
    }),
    log,
    migrations,
    { kafkaListeners: networkPlan?.kafkaListeners }
  )
  const [cifPort, syncerPort] = [await freePort(), await freePort()]
  const morePorts = async (count: number | undefined) => Promise.all(Array.from({ length: Math.max(0, (count ?? 1) - 1) }, () => freePort()))
  const [cifPorts, syncerPorts] = [
    [cifPort, ...(await morePorts(options.cifInstances))],
    [syncerPort, ...(await morePorts(options.syncerInstances))]
  ]
  // The simulator's systems take the ports after its own, one each: all free, and none handed out already (to an
  // instance, or a proxy or listener of the network plan).
  const simulatorPort = await freePortRange(simulatedSystems.length + 1)
  const systemUrl = (i: number) => `http://127.0.0.1:${simulatorPort + i}`

  const endSystems = parseDocument(await readFile('config/end-systems.yaml', 'utf8'))
  if (options.retry) endSystems.setIn(['defaults', 'retry'], { ...(endSystems.getIn(['defaults', 'retry']) as object), ...options.retry })
  if (options.circuitBreaker) endSystems.setIn(['defaults', 'circuitBreaker'], options.circuitBreaker)
  if (options.concurrency) {
    endSystems.setIn(['defaults', 'concurrency'], options.concurrency)
    endSystems.deleteIn(['endSystems', 2, 'concurrency'])
  }
  if (options.readBackRatePerSecond) {
    const count = (endSystems.get('endSystems') as { items: unknown[] }).items.length
    for (let i = 0; i < count; i++) endSystems.setIn(['endSystems', i, 'reconcile', 'ratePerSecond'], options.readBackRatePerSecond)
  }
  const endSystemsFile = join(dir, 'end-systems.yaml')
  await writeFile(endSystemsFile, endSystems.toString())

  const env = {
    // e.g. a heap limit, as a deployment would set per process (the benchmark's BENCH_NODE_OPTIONS).
    NODE_OPTIONS: options.nodeOptions ?? '',
    NODE_ENV: 'development',
    LOG_LEVEL: options.logLevel ?? 'warn',
    DATABASE_URL: infrastructure.databaseUrl,
    KAFKA_BROKERS: infrastructure.kafka.brokers.join(','),
    CIF_PORT: String(cifPort),
    SYNCER_PORT: String(syncerPort),
    SIMULATOR_PORT: String(simulatorPort),
    SYNCER_END_SYSTEMS_FILE: endSystemsFile,
    CORE_BANKING_URL: systemUrl(1),
    CRM_URL: systemUrl(2),
    CARDS_URL: systemUrl(3),
    CORE_BANKING_TOKEN: 'stack-core-banking-token',
    CIF_SOURCE_SYSTEMS: `branch-portal=${apiKeyHash(sourceKey)}`,
    SYNCER_OPERATORS: `stack-operator=${apiKeyHash(operatorKey)}`
  }
  const cifUrl = `http://127.0.0.1:${cifPort}`
  const syncerUrl = `http://127.0.0.1:${syncerPort}`
  const simulatorUrl = `http://127.0.0.1:${simulatorPort}`
  const networked = networkPlan
    ? await startNetwork({
        plan: networkPlan,
        databaseUrl: infrastructure.databaseUrl,
        endSystemPorts: { 'core-banking': simulatorPort + 1, crm: simulatorPort + 2, cards: simulatorPort + 3 },
        logFile: join(logs, 'toxiproxy.log')
      }).catch(async (error) => {
        await infrastructure.stop()
        throw error
      })
    : undefined
  const network = networked?.network
  const syncerEnv = { ...env, ...networked?.syncerEnv }
  const simulator = new ServiceProcess('simulator', `${simulatorUrl}/systems`, env, join(logs, 'simulator.log'))
  // The first instance of each keeps the names it had alone (cif-service.log); the others are numbered from 2.
  // With network faults every instance of a service goes through that service's proxies.
  const instances = (role: string, portVariable: string, ports: number[], roleEnv: Record<string, string>) =>
    ports.map(
      (port, i) =>
        new ServiceProcess(
          role,
          `http://127.0.0.1:${port}/health/ready`,
          { ...roleEnv, [portVariable]: String(port) },
          join(logs, `${role}${i === 0 ? '' : `-${i + 1}`}.log`)
        )
    )
  const cifs = instances('cif-service', 'CIF_PORT', cifPorts, { ...env, ...networked?.cifEnv })
  const syncers = instances('syncer', 'SYNCER_PORT', syncerPorts, syncerEnv)
  const [cif, syncer] = [cifs[0]!, syncers[0]!]
  try {
    await simulator.start()
    await Promise.all([cif.start(), syncer.start()])
    // One at a time: several Node processes starting at once on a crowded machine each took over a minute.
    for (const service of [...cifs.slice(1), ...syncers.slice(1)]) await service.start(180_000)
  } catch (error) {
    await Promise.all([...cifs, ...syncers, simulator].map((service) => service.stop()))
    await network?.toxiproxy.stop()
    await infrastructure.stop()
    throw error
  }
  const database = openDatabase<TestDatabase>(infrastructure.databaseUrl, { maxConnections: 4 })
  const extraSyncers: ServiceProcess[] = []
  return {
    dir,
    infrastructure,
    database,
    cif,
    syncer,
    cifs,
    syncers,
    simulator,
    cifUrl,
    syncerUrl,
    cifUrls: cifPorts.map((port) => `http://127.0.0.1:${port}`),
    syncerUrls: syncerPorts.map((port) => `http://127.0.0.1:${port}`),
    simulatorUrl,
    env,
    ...(network ? { network } : {}),
    anotherSyncer: async () => {
      const port = await freePort()
      const name = `syncer-${syncers.length + extraSyncers.length + 1}`
      const another = new ServiceProcess(
        'syncer',
        `http://127.0.0.1:${port}/health/ready`,
        { ...syncerEnv, SYNCER_PORT: String(port) },
        join(logs, `${name}.log`)
      )
      extraSyncers.push(another)
      return another
    },
    stop: async () => {
      await Promise.all([...cifs, ...syncers, simulator, ...extraSyncers].map((service) => service.stop()))
      await database.close()
      await network?.toxiproxy.stop()
      await infrastructure.stop()
      if (!process.env.KEEP_STACK_DIR) await rm(dir, { recursive: true, force: true })
    }
  }
}

export async function setFault(stack: ProcessStack, system: string, fault: Record<string, unknown>): Promise<void> {
  const response = await fetch(`${stack.simulatorUrl}/systems/${system}/fault`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(fault)
  })
  if (!response.ok) throw new Error(`setting a fault on ${system} failed: ${response.status} ${await response.text()}`)
}
