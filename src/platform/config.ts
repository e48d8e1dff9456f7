import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { type SourceSystemGrant, sourceSystemGrants } from '../contracts/access.ts'
import { apiKeyHash } from './http/api-key-auth.ts'
import { defaultHttpLimits, type HttpLimits } from './http/server.ts'

/** Why the process cannot start: a wrong setting, named so an operator can fix it in one go. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** Where a service finds PostgreSQL and Kafka. */
export interface Connections {
  databaseUrl: string
  kafkaBrokers: string[]
}

export interface Config {
  production: boolean
  logLevel: string
  /** Where the local stack keeps PostgreSQL data and the Kafka broker (jars, storage, logs). */
  dataDir: string
  cif: { host: string; port: number; bodyLimitBytes: number }
  /** What every API server allows a client: see HttpLimits (platform/http/server.ts). */
  http: HttpLimits
  /** HTTPS for the APIs when both are set (PEM files); plain HTTP otherwise. */
  tls: { certFile: string; keyFile: string } | undefined
  /** Unset: the local stack starts an embedded PostgreSQL on `localPostgresPort`. */
  databaseUrl: string | undefined
  localPostgresPort: number
  /** Unset: the local stack starts a single-node Kafka on `localKafkaPort`. */
  kafkaBrokers: string[] | undefined
  localKafkaPort: number
  /**
   * `stallMs`: unsent messages and nothing published for this long while Kafka answers, and the relay
   * replaces its producer; `unreadyAfterMs`: readiness fails once the relay has been unable to publish
   * for this long.
   */
  outbox: { batchSize: number; pollIntervalMs: number; retentionHours: number; stallMs: number; unreadyAfterMs: number }
  /** Source systems allowed to call the CIF API and the callback API: name → SHA-256 of its API key (hex). */
  sourceSystemKeyHashes: Map<string, string>
  /** What each source system may do with other source systems' customers (contracts/access.ts); none by default. */
  sourceSystemGrants: Map<string, Set<SourceSystemGrant>>
  /**
   * `intakeStallMs`: the intake's consumer makes no progress for this long and is replaced (see
   * syncer/intake/intake-watchdog.ts); `intakeUnreadyAfterMs`: readiness fails once it has been unable to
   * consume for this long.
   */
  syncer: {
    host: string
    port: number
    endSystemsFile: string
    groupId: string
    pollIntervalMs: number
    intakeStallMs: number
    intakeUnreadyAfterMs: number
  }
  /** Operators allowed on the syncer's admin API: name → SHA-256 of their key. */
  operatorKeyHashes: Map<string, string>
  simulator: { host: string; port: number }
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
 * API keys are configured as `name=sha256hex` pairs separated by commas. Only hashes are configured,
 * so a leaked configuration does not leak a key (`cif-syncer hash-key <key>` computes one).
 */
export function parseApiKeys(raw: string, variable: string): Map<string, string> {
  const callers = new Map<string, string>()
  for (const entry of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const match = /^([a-z][a-z0-9-]{1,62})=([0-9a-f]{64})$/.exec(entry)
    if (!match) {
      throw new ConfigError(`${variable} entry "${entry.slice(0, 80)}" must look like name=<64 hex chars of SHA-256(key)>.`)
    }
    const [, name, hash] = match as unknown as [string, string, string]
    if (callers.has(name)) throw new ConfigError(`${variable} names "${name}" twice.`)
    callers.set(name, hash)
  }
  return callers
}

/**
 * Grants as `name:grant` pairs separated by commas (`reporting:read-all,reporting:see-duplicates`), each
 * for a configured source system.
 */
export function parseGrants(
  raw: string,
  sourceSystems: ReadonlyMap<string, string>,
  variable = 'CIF_SOURCE_SYSTEM_GRANTS'
): Map<string, Set<SourceSystemGrant>> {
  const grants = new Map<string, Set<SourceSystemGrant>>()
  for (const entry of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [name = '', grant = ''] = entry.split(':').map((s) => s.trim())
    if (!Object.hasOwn(sourceSystemGrants, grant)) {
      throw new ConfigError(
        `${variable} entry "${entry.slice(0, 80)}" must look like name:grant, grant one of ${Object.keys(sourceSystemGrants).join(', ')}.`
      )
    }
    if (!sourceSystems.has(name))
      throw new ConfigError(`${variable} names "${name.slice(0, 80)}", which is not a source system of CIF_SOURCE_SYSTEMS.`)
    grants.set(name, (grants.get(name) ?? new Set()).add(grant as SourceSystemGrant))
  }
  return grants
}

/** Documented in the README so a newcomer can call the APIs at once; refused in production. */
export const devSourceSystem = { name: 'branch-portal', apiKey: 'local-branch-portal-key' } as const
export const devOperator = { name: 'local-operator', apiKey: 'local-operator-key' } as const

/** Outside production an empty list means the documented dev key; in production, never. */
function apiKeys(env: Env, variable: string, dev: { name: string; apiKey: string }, production: boolean, required: boolean): Map<string, string> {
  const callers = parseApiKeys(env[variable] ?? '', variable)
  const devHash = apiKeyHash(dev.apiKey)
  if (production) {
    if ([...callers.values()].includes(devHash)) {
      throw new ConfigError(`${variable} holds a public development key; give each caller its own key.`)
    }
    if (required && callers.size === 0) throw new ConfigError(`${variable} must name at least one caller in production.`)
  } else if (callers.size === 0) {
    callers.set(dev.name, devHash)
  }
  return callers
}

function tlsFiles(env: Env): Config['tls'] {
  const certFile = env.TLS_CERT_FILE || undefined
  const keyFile = env.TLS_KEY_FILE || undefined
  if (!certFile && !keyFile) return undefined
  if (!certFile || !keyFile) throw new ConfigError('Set both TLS_CERT_FILE and TLS_KEY_FILE (PEM) for HTTPS, or neither.')
  return { certFile: resolve(certFile), keyFile: resolve(keyFile) }
}

/** The APIs' TLS certificate and key, read once at start. */
export function tlsOptions(config: Config): { cert: Buffer; key: Buffer } | undefined {
  return config.tls && { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }
}

export function loadConfig(env: Env = process.env): Config {
  const production = env.NODE_ENV === 'production'
  const sourceSystemKeyHashes = apiKeys(env, 'CIF_SOURCE_SYSTEMS', devSourceSystem, production, true)
  const kafkaBrokers = env.KAFKA_BROKERS?.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  return {
    production,
    logLevel: env.LOG_LEVEL ?? 'info',
    dataDir: resolve(env.CIF_DATA_DIR ?? '.local'),
    cif: {
      host: env.CIF_HOST ?? '127.0.0.1',
      port: integer(env, 'CIF_PORT', 8080, 0, 65535),
      bodyLimitBytes: integer(env, 'CIF_BODY_LIMIT_BYTES', 64 * 1024, 1024, 10 * 1024 * 1024)
    },
    http: {
      requestTimeoutMs: integer(env, 'HTTP_REQUEST_TIMEOUT_MS', defaultHttpLimits.requestTimeoutMs, 1000, 600_000),
      keepAliveTimeoutMs: integer(env, 'HTTP_KEEP_ALIVE_TIMEOUT_MS', defaultHttpLimits.keepAliveTimeoutMs, 1000, 600_000),
      maxConnections: integer(env, 'HTTP_MAX_CONNECTIONS', defaultHttpLimits.maxConnections, 1, 1_000_000),
      rateLimitPerMinute: integer(env, 'HTTP_RATE_LIMIT_PER_MINUTE', defaultHttpLimits.rateLimitPerMinute, 1, 10_000_000),
      authFailuresBeforeLockout: integer(env, 'AUTH_FAILURES_BEFORE_LOCKOUT', defaultHttpLimits.authFailuresBeforeLockout, 1, 100_000),
      lockoutMs: integer(env, 'AUTH_LOCKOUT_MS', defaultHttpLimits.lockoutMs, 1000, 86_400_000)
    },
    tls: tlsFiles(env),
    databaseUrl: env.DATABASE_URL || undefined,
    localPostgresPort: integer(env, 'LOCAL_POSTGRES_PORT', 54320, 1, 65535),
    kafkaBrokers: kafkaBrokers?.length ? kafkaBrokers : undefined,
    localKafkaPort: integer(env, 'KAFKA_PORT', 9092, 1, 65535),
    outbox: {
      batchSize: integer(env, 'OUTBOX_BATCH_SIZE', 500, 1, 10_000),
      pollIntervalMs: integer(env, 'OUTBOX_POLL_INTERVAL_MS', 1000, 10, 60_000),
      retentionHours: integer(env, 'OUTBOX_RETENTION_HOURS', 168, 0, 24 * 365),
      stallMs: integer(env, 'OUTBOX_STALL_MS', 30_000, 1000, 3_600_000),
      unreadyAfterMs: integer(env, 'OUTBOX_UNREADY_AFTER_MS', 60_000, 1000, 3_600_000)
    },
    sourceSystemKeyHashes,
    sourceSystemGrants: parseGrants(env.CIF_SOURCE_SYSTEM_GRANTS ?? '', sourceSystemKeyHashes),
    syncer: {
      host: env.SYNCER_HOST ?? '127.0.0.1',
      port: integer(env, 'SYNCER_PORT', 8081, 0, 65535),
      endSystemsFile: resolve(env.SYNCER_END_SYSTEMS_FILE ?? 'config/end-systems.yaml'),
      groupId: env.SYNCER_GROUP_ID ?? 'cif-syncer',
      pollIntervalMs: integer(env, 'SYNCER_POLL_INTERVAL_MS', 250, 10, 60_000),
      // Below 5 s an ordinary pause (a rebalance, a slow batch) would look like a stall.
      intakeStallMs: integer(env, 'SYNCER_INTAKE_STALL_MS', 30_000, 5000, 3_600_000),
      intakeUnreadyAfterMs: integer(env, 'SYNCER_INTAKE_UNREADY_AFTER_MS', 60_000, 1000, 3_600_000)
    },
    operatorKeyHashes: apiKeys(env, 'SYNCER_OPERATORS', devOperator, production, false),
    simulator: { host: env.SIMULATOR_HOST ?? '127.0.0.1', port: integer(env, 'SIMULATOR_PORT', 8090, 0, 65535) }
  }
}
