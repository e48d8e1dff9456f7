import type { InjectOptions } from 'fastify'
import { afterAll, beforeAll } from 'vitest'
import { createCifApp } from '../../src/cif/service.ts'
import { type Config, loadConfig } from '../../src/platform/config.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import type { HttpServer } from '../../src/platform/http/server.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { loadEndSystems } from '../../src/syncer/delivery/end-systems-config.ts'
import { createSyncerApp } from '../../src/syncer/service.ts'
import { keys, operatorKey } from '../integration/helpers.ts'
import { asCif, asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'

export { approverKey, keys, newPerson, operatorKey, problemType, withApprover } from '../integration/helpers.ts'

/** Two source systems and one operator, known by the hashes of their keys as in production. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    CIF_SOURCE_SYSTEMS: `branch-portal=${apiKeyHash(keys.branchPortal)},onboarding-app=${apiKeyHash(keys.onboardingApp)}`,
    SYNCER_OPERATORS: `test-operator=${apiKeyHash(operatorKey)}`,
    ...env
  })
}

const log = () => createLogger(process.env.LOG_LEVEL ?? 'warn', 'api-test')

/** The CIF API on the file's own database, without Kafka, not listening: requests go through `inject`. */
export async function cifApp(database: OwnDatabase, config = testConfig(), logger = log()): Promise<HttpServer> {
  return createCifApp(config, asCif(database.db), logger, {})
}

/** The end systems the syncer's APIs are told of: the three the shipped file has, cards coalescing. */
export const testEndSystems = loadEndSystems('config/end-systems.yaml', { CORE_BANKING_TOKEN: 'x' }).map((system) =>
  system.name === 'cards' ? { ...system, coalesce: true } : system
)

/** The syncer's callback and admin APIs on the file's own database, without Kafka, not listening. */
export async function syncerApp(database: OwnDatabase, config = testConfig()): Promise<HttpServer> {
  return createSyncerApp(config, asSyncer(database.db), log(), {}, { endSystems: testEndSystems })
}

export interface ApiResponse {
  status: number
  headers: Headers
  body: any
}

/**
 * One request through Fastify's `inject`, answered like the network tests' `call` (integration/helpers.ts):
 * the branch portal's key unless another (or `null`, none) is given; `body` is sent as JSON, `raw` as it is.
 */
export async function call(
  app: HttpServer,
  method: InjectOptions['method'],
  url: string,
  options: { body?: unknown; raw?: string; key?: string | null; headers?: Record<string, string> } = {}
): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...options.headers }
  const key = options.key === undefined ? keys.branchPortal : options.key
  if (key !== null) headers.authorization = `Bearer ${key}`
  let payload: string | undefined = options.raw
  if (options.body !== undefined) {
    payload = JSON.stringify(options.body)
    headers['content-type'] ??= 'application/json'
  }
  // inject leaves an empty payload without Content-Length; fetch, as a real client, sends `0`.
  if (payload === '') headers['content-length'] ??= '0'
  const response = await app.inject({ method, url, headers, ...(payload !== undefined ? { payload } : {}) })
  const answered = new Headers()
  for (const [name, value] of Object.entries(response.headers)) {
    for (const one of Array.isArray(value) ? value : [value]) if (one !== undefined) answered.append(name, String(one))
  }
  let parsed: unknown = response.body
  try {
    parsed = response.body ? JSON.parse(response.body) : undefined
  } catch {
    // leave it as text
  }
  return { status: response.statusCode, headers: answered, body: parsed }
}

/**
 * The CIF API on a database of the file's own, opened before the file's tests and closed after them:
 * `database` and `app` are there once `beforeAll` has run.
 */
export function cifAppPerFile(): { readonly database: OwnDatabase; readonly app: HttpServer } {
  const opened: { database?: OwnDatabase; app?: HttpServer } = {}
  beforeAll(async () => {
    opened.database = await ownDatabase()
    opened.app = await cifApp(opened.database)
  })
  afterAll(async () => {
    await opened.app?.close()
    await opened.database?.close()
  })
  return {
    get database() {
      return opened.database!
    },
    get app() {
      return opened.app!
    }
  }
}
