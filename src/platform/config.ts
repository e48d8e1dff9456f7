import { resolve } from 'node:path'
import { apiKeyHash } from './http/api-key-auth.ts'

/** Why the process cannot start: a wrong setting, named so an operator can fix it in one go. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

export interface Config {
  production: boolean
  logLevel: string
  /** Where the local stack keeps PostgreSQL data and the Kafka broker (jars, storage, logs). */
  dataDir: string
  cif: { host: string; port: number; bodyLimitBytes: number }
  /** Unset: the local stack starts an embedded PostgreSQL on `localPostgresPort`. */
  databaseUrl: string | undefined
  localPostgresPort: number
  /** Unset: the local stack starts a single-node Kafka on `localKafkaPort`. */
  kafkaBrokers: string[] | undefined
  localKafkaPort: number
  outbox: { batchSize: number; pollIntervalMs: number; retentionHours: number }
  /** Source systems allowed to call the CIF API: name → SHA-256 of its API key (hex). */
  sourceSystemKeyHashes: Map<string, string>
}

type Env = Record<string, string | undefined>

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, got "${raw}".`)
  }
  return value
}

/**
 * `CIF_SOURCE_SYSTEMS` is `name=sha256hex` pairs separated by commas. Only hashes are configured,
 * so a leaked configuration does not leak a key (`cif-syncer hash-key <key>` computes one).
 */
export function parseSourceSystems(raw: string): Map<string, string> {
  const systems = new Map<string, string>()
  for (const entry of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const match = /^([a-z][a-z0-9-]{1,62})=([0-9a-f]{64})$/.exec(entry)
    if (!match) {
      throw new ConfigError(
        `CIF_SOURCE_SYSTEMS entry "${entry.slice(0, 80)}" must look like name=<64 hex chars of SHA-256(key)>.`
      )
    }
    const [, name, hash] = match as unknown as [string, string, string]
    if (systems.has(name)) throw new ConfigError(`CIF_SOURCE_SYSTEMS names "${name}" twice.`)
    systems.set(name, hash)
  }
  return systems
}

/** Documented in the README so a newcomer can call the API at once; refused in production. */
export const devSourceSystem = { name: 'branch-portal', apiKey: 'local-branch-portal-key' } as const

function sourceSystems(env: Env, production: boolean): Map<string, string> {
  const systems = parseSourceSystems(env.CIF_SOURCE_SYSTEMS ?? '')
  const devHash = apiKeyHash(devSourceSystem.apiKey)
  if (production) {
    if ([...systems.values()].includes(devHash)) {
      throw new ConfigError('CIF_SOURCE_SYSTEMS holds the public development key; give each source system its own key.')
    }
    if (systems.size === 0) throw new ConfigError('CIF_SOURCE_SYSTEMS must name at least one source system in production.')
  } else if (systems.size === 0) {
    systems.set(devSourceSystem.name, devHash)
  }
  return systems
}

export function loadConfig(env: Env = process.env): Config {
  const production = env.NODE_ENV === 'production'
  const kafkaBrokers = env.KAFKA_BROKERS?.split(',').map((s) => s.trim()).filter(Boolean)
  return {
    production,
    logLevel: env.LOG_LEVEL ?? 'info',
    dataDir: resolve(env.CIF_DATA_DIR ?? '.local'),
    cif: {
      host: env.CIF_HOST ?? '127.0.0.1',
      port: integer(env, 'CIF_PORT', 8080, 0, 65535),
      bodyLimitBytes: integer(env, 'CIF_BODY_LIMIT_BYTES', 64 * 1024, 1024, 10 * 1024 * 1024)
    },
    databaseUrl: env.DATABASE_URL || undefined,
    localPostgresPort: integer(env, 'LOCAL_POSTGRES_PORT', 54320, 1, 65535),
    kafkaBrokers: kafkaBrokers?.length ? kafkaBrokers : undefined,
    localKafkaPort: integer(env, 'KAFKA_PORT', 9092, 1, 65535),
    outbox: {
      batchSize: integer(env, 'OUTBOX_BATCH_SIZE', 500, 1, 10_000),
      pollIntervalMs: integer(env, 'OUTBOX_POLL_INTERVAL_MS', 1000, 10, 60_000),
      retentionHours: integer(env, 'OUTBOX_RETENTION_HOURS', 168, 0, 24 * 365)
    },
    sourceSystemKeyHashes: sourceSystems(env, production)
  }
}
