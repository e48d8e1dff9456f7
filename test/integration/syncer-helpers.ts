import { setTimeout as sleep } from 'node:timers/promises'
import type { Connections } from '../../src/platform/config.ts'
import { loadConfig } from '../../src/platform/config.ts'
import type { DatabaseHandle } from '../../src/platform/database/index.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import { createLogger, type Logger } from '../../src/platform/logger.ts'
import { type Simulator, startSimulator } from '../../src/simulator/service.ts'
import { type EndSystemConfig, loadEndSystems, type RetryPolicy } from '../../src/syncer/delivery/end-systems-config.ts'
import { type Syncer, startSyncer } from '../../src/syncer/service.ts'
import type { TestDatabase } from '../support/database.ts'
import { connections, keys, withApprover } from './helpers.ts'

export { approverKey, operatorKey } from './helpers.ts'
export const CORE_BANKING_TOKEN = 'test-core-banking-token'

/** Short enough that a test sees every retry; the shape (growth, jitter, budget) is the production one. */
export const testRetry: RetryPolicy = { retries: 3, timeoutMs: 1000, timeoutMultiplier: 2, maxTimeoutMs: 8000, backoffMs: 100, maxBackoffMs: 400 }

export async function startTestSimulator(): Promise<Simulator> {
  return startSimulator(
    { host: '127.0.0.1', port: 0, requiredAuthorization: { 'core-banking': `Bearer ${CORE_BANKING_TOKEN}` } },
    createLogger(process.env.LOG_LEVEL ?? 'warn', 'simulator-test')
  )
}

/**
 * The syncer with the shipped end systems file, pointed at `simulator`, with `retry` for every system;
 * `systems` changes the file's systems as a test needs (one removed, one coalescing).
 */
export async function startTestSyncer(
  simulator: Simulator,
  retry: Partial<RetryPolicy> = {},
  overrides: {
    connections?: Partial<Connections>
    env?: Record<string, string>
    log?: Logger
    systems?: (systems: EndSystemConfig[]) => EndSystemConfig[]
  } = {}
): Promise<Syncer> {
  const url = (name: string) => simulator.systems.get(name)!.url
  const env = { CORE_BANKING_URL: url('core-banking'), CRM_URL: url('crm'), CARDS_URL: url('cards'), CORE_BANKING_TOKEN }
  const endSystems = loadEndSystems('config/end-systems.yaml', env).map((system) => ({
    ...system,
    retry: { ...testRetry, ...retry },
    circuitBreaker: { consecutiveFailures: 50, halfOpenAfterMs: 1000 }
  }))
  const config = loadConfig({
    SYNCER_PORT: '0',
    SYNCER_GROUP_ID: 'cif-syncer-test',
    SYNCER_POLL_INTERVAL_MS: '50',
    OUTBOX_POLL_INTERVAL_MS: '100',
    CIF_SOURCE_SYSTEMS: `branch-portal=${apiKeyHash(keys.branchPortal)},onboarding-app=${apiKeyHash(keys.onboardingApp)}`,
    ...withApprover,
    ...overrides.env
  })
  const log = overrides.log ?? createLogger(process.env.LOG_LEVEL ?? 'warn', 'syncer-test')
  return startSyncer(config, { ...connections(), ...overrides.connections }, log, overrides.systems?.(endSystems) ?? endSystems)
}

export async function eventually<T>(probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (done(value)) return value
    if (Date.now() > deadline) throw new Error(`not reached within ${timeoutMs} ms; last: ${JSON.stringify(value).slice(0, 2000)}`)
    await sleep(50)
  }
}

export async function deliveriesOf(database: DatabaseHandle<TestDatabase>, cifId: string) {
  return database.db.selectFrom('delivery').selectAll().where('cif_id', '=', cifId).orderBy('end_system').orderBy('customer_version').execute()
}

export async function attemptsOf(database: DatabaseHandle<TestDatabase>, cifId: string, endSystem: string) {
  return database.db
    .selectFrom('delivery_attempt')
    .selectAll()
    .where('cif_id', '=', cifId)
    .where('end_system', '=', endSystem)
    .orderBy('id')
    .execute()
}
