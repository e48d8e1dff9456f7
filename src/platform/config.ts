import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { type OperatorRole, operatorRoles, type SourceSystemGrant, sourceSystemGrants } from '../contracts/access.ts'
import { type EventSigningKey, SIGNING_KEY_ID_PATTERN, type TrustedEventKeys } from '../contracts/event-signature.ts'
import { type ApiKey, apiKeyHash, Callers, certificateFingerprint } from './http/api-key-auth.ts'
import { defaultHttpLimits, type HttpLimits } from './http/server.ts'
import { type KafkaCluster, type KafkaSaslMechanism, type KafkaSecurity, kafkaSaslMechanisms } from './kafka.ts'
import { type LogFormat, logFormats } from './logger.ts'

/** Why the process cannot start: a wrong setting, named so an operator can fix it in one go. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** Where a service finds PostgreSQL and Kafka. */
export interface Connections {
  databaseUrl: string
  kafka: KafkaCluster
}

export interface Config {
  production: boolean
  logLevel: string
  /** LOG_FORMAT; unset, each command chooses (cli.ts): pretty for the local stack, JSON for the process roles. */
  logFormat: LogFormat | undefined
  /** Where the local stack keeps PostgreSQL data and the Kafka broker (jars, storage, logs). */
  dataDir: string
  /**
   * `eventSigningKey` signs every customer event (CIF_EVENT_SIGNING_KEY, CIF_EVENT_SIGNING_KEY_ID); unset
   * only in production without them, and then the CIF service refuses to start (requireEventSigningKey).
   */
  cif: { host: string; port: number; bodyLimitBytes: number; eventSigningKey: EventSigningKey | undefined; idempotencyRetentionHours: number }
  /** What every API server allows a client: see HttpLimits (platform/http/server.ts). */
  http: HttpLimits
  /**
   * Whether the APIs serve their documentation (`/docs`, `/openapi.json`) to anyone: by default outside
   * production only, since it maps every route and field for whoever can reach the port (API_DOCS).
   */
  publicApiDocs: boolean
  /**
   * HTTPS for the APIs when both are set (PEM files); plain HTTP otherwise. `clientCaFile`: the authorities
   * client certificates must chain to, asked of every caller (TLS_CLIENT_CA_FILE).
   */
  tls: { certFile: string; keyFile: string; clientCaFile: string | undefined } | undefined
  /** Unset: the local stack starts an embedded PostgreSQL on `localPostgresPort`. */
  databaseUrl: string | undefined
  localPostgresPort: number
  /** Unset: the local stack starts a single-node Kafka on `localKafkaPort`. */
  kafkaBrokers: string[] | undefined
  /**
   * How this process's Kafka clients reach KAFKA_BROKERS (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_TLS_*):
   * each process has its own, so the CIF service and the syncer are different principals.
   */
  kafkaSecurity: KafkaSecurity
  localKafkaPort: number
  /** How many brokers the local stack starts (LOCAL_KAFKA_BROKERS): one, or a KRaft cluster of three to test failover. */
  localKafkaBrokers: number
  /**
   * `stallMs`: unsent messages and nothing published for this long while Kafka answers, and the relay
   * replaces its producer; `unreadyAfterMs`: readiness fails once the relay has been unable to publish
   * for this long.
   */
  outbox: { batchSize: number; pollIntervalMs: number; retentionHours: number; stallMs: number; unreadyAfterMs: number }
  /** How many rows one statement of a retention job deletes or clears at most (docs/security.md, "Personal data at rest"). */
  retentionBatchSize: number
  /**
   * Source systems allowed to call the CIF API and the callback API: name → SHA-256 of its API keys (hex),
   * and their pinned client certificates. This, the grants, the operators and their roles are replaced in
   * place on a reload (reloadAccess), so the APIs that hold them see the new ones.
   */
  sourceSystemKeyHashes: Callers
  /** What each source system may do with other source systems' customers (contracts/access.ts); none by default. */
  sourceSystemGrants: Map<string, Set<SourceSystemGrant>>
  /**
   * `intakeStallMs`: the intake's consumer makes no progress for this long and is replaced (see
   * syncer/intake/intake-watchdog.ts); `intakeUnreadyAfterMs`: readiness fails once it has been unable to
   * consume for this long. `trustedEventKeys`: the CIF service's public keys the intake accepts events
   * signed by (SYNCER_EVENT_KEYS); unset only in production without them, and then the syncer refuses to
   * start (requireTrustedEventKeys). `actionRequestExpiryMs`: a skip or bulk redrive nobody approved or
   * rejected within this time expires; `bulkRedriveLimit`: the most deliveries one bulk redrive may select.
   * `eventPayloadRetentionHours`: how long an event's payload (the customer's data) is kept once every
   * delivery of it is settled, and an unreadable message's content. `attemptRetention`: how many whole months
   * of the transaction table are kept before the current one (0: all, for ever), and whether an older month is
   * detached (kept as a table of its own, out of the syncer's reach, for the bank to archive) or dropped.
   * `inSyncDeadlineMs`: how long after its creation a customer version may take to be held by every end
   * system before it is told overdue (syncer/status/overdue.ts).
   */
  syncer: {
    host: string
    port: number
    endSystemsFile: string
    groupId: string
    pollIntervalMs: number
    intakeStallMs: number
    intakeUnreadyAfterMs: number
    trustedEventKeys: TrustedEventKeys | undefined
    actionRequestExpiryMs: number
    bulkRedriveLimit: number
    eventPayloadRetentionHours: number
    attemptRetention: { months: number; action: AttemptRetentionAction }
    /**
     * What signs the console's session cookies (SYNCER_CONSOLE_SESSION_SECRET); unset, each process makes its
     * own, so sessions end with the process and one syncer does not know another's.
     */
    consoleSessionSecret: string | undefined
    inSyncDeadlineMs: number
  }
  /** Operators allowed on the syncer's admin API: name → SHA-256 of their keys, and their pinned certificates. */
  operatorKeyHashes: Callers
  /** Each operator's role (contracts/access.ts): `operator` unless SYNCER_OPERATOR_ROLES says otherwise. */
  operatorRoles: Map<string, OperatorRole>
  simulator: { host: string; port: number }
  /**
   * Metrics and traces (docs/observability.md). `cifMetricsPort`, `syncerMetricsPort`: each service's
   * `GET /metrics` on a port of its own at `metricsHost`, none when unset (`cif-syncer up` takes 9464 and
   * 9465 then). `otlpTracesUrl`: where spans are sent by OTLP/HTTP (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
   * OTEL_EXPORTER_OTLP_ENDPOINT, unless OTEL_SDK_DISABLED); none, and trace context still flows.
   */
  telemetry: { metricsHost: string; cifMetricsPort: number | undefined; syncerMetricsPort: number | undefined; otlpTracesUrl: string | undefined }
}

type Env = Record<string, string | undefined>

/**
 * The most deliveries SYNCER_BULK_REDRIVE_LIMIT may allow: 1000 listed ids of up to 10 digits, with a reason, still
 * fit the admin API's 16 KiB body.
 */
export const BULK_REDRIVE_LIMIT_MAX = 1000

/** SYNCER_IN_SYNC_DEADLINE_MS when not set (the history benchmark measures the overdue count at it). */
export const DEFAULT_IN_SYNC_DEADLINE_MS = 5 * 60_000

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, got "${raw}".`)
  }
  return value
}

function optionalPort(env: Env, name: string): number | undefined {
  return env[name] ? integer(env, name, 0, 0, 65535) : undefined
}

/**
 * Where spans are sent by OTLP/HTTP, as the OpenTelemetry specification reads its variables: the traces
 * endpoint as given, or the base endpoint with /v1/traces; none when OTEL_SDK_DISABLED is true.
 */
function otlpTracesUrl(env: Env): string | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return undefined
  const [name, path] = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    ? ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', '']
    : env.OTEL_EXPORTER_OTLP_ENDPOINT
      ? ['OTEL_EXPORTER_OTLP_ENDPOINT', 'v1/traces']
      : []
  if (!name) return undefined
  const raw = env[name]!.trim()
  if (!URL.canParse(raw) || !/^https?:$/.test(new URL(raw).protocol)) {
    throw new ConfigError(`${name} must be an http(s) URL such as http://127.0.0.1:4318, got "${raw.slice(0, 80)}".`)
  }
  return path ? `${raw.replace(/\/+$/, '')}/${path}` : raw
}

/**
 * `text` is an ISO 8601 date-time with a zone, on a day the calendar has: `Date` reads 2027-02-30 as
 * 2 March, and an expiry a month later than written is a key that works a month too long.
 */
function isDateTime(text: string, parsed: Date): boolean {
  const match = /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}(:\d{2})?(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(text)
  if (!match || Number.isNaN(parsed.getTime())) return false
  const [year, month, day] = match.slice(1, 4).map(Number) as [number, number, number]
  const calendarDay = new Date(Date.UTC(year, month - 1, day))
  return calendarDay.getUTCMonth() === month - 1 && calendarDay.getUTCDate() === day
}

/**
 * API keys are configured as `name=sha256hex` pairs separated by commas, each optionally with an expiry
 * (`name=sha256hex@2027-01-31T00:00:00Z`). A caller may have several keys, so that a new one can be given
 * out before the old one stops working. Only hashes are configured, so a leaked configuration does not
 * leak a key (`cif-syncer hash-key <key>` computes one).
 */
export function parseApiKeys(raw: string, variable: string): Map<string, ApiKey[]> {
  const callers = new Map<string, ApiKey[]>()
  const seen = new Set<string>()
  for (const entry of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const match = /^([a-z][a-z0-9-]{1,62})=([0-9a-f]{64})(?:@(\S+))?$/.exec(entry)
    if (!match) {
      throw new ConfigError(`${variable} entry "${entry.slice(0, 80)}" must look like name=<64 hex chars of SHA-256(key)>, optionally @<expiry>.`)
    }
    const [, name, hash, expiry] = match as unknown as [string, string, string, string | undefined]
    // One key, one caller: a key two callers share would say nothing about who called.
    if (seen.has(hash)) throw new ConfigError(`${variable} holds the key of "${name}" twice, or for two callers.`)
    seen.add(hash)
    const expiresAt = expiry === undefined ? undefined : new Date(expiry)
    if (expiresAt && !isDateTime(expiry!, expiresAt)) {
      throw new ConfigError(
        `${variable} entry of "${name}" has an expiry "${expiry!.slice(0, 40)}" that is not a date-time such as 2027-01-31T00:00:00Z.`
      )
    }
    callers.set(name, [...(callers.get(name) ?? []), { hash, ...(expiresAt ? { expiresAt } : {}) }])
  }
  return callers
}

/**
 * Grants as `name:grant` pairs separated by commas (`reporting:read-all,reporting:see-duplicates`), each
 * for a configured source system.
 */
export function parseGrants(
  raw: string,
  sourceSystems: ReadonlyMap<string, unknown>,
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

/** Roles as `name:role` pairs (`auditor:viewer`), each for a configured operator; the others are `operator`. */
export function parseOperatorRoles(
  raw: string,
  operators: ReadonlyMap<string, unknown>,
  variable = 'SYNCER_OPERATOR_ROLES'
): Map<string, OperatorRole> {
  const roles = new Map<string, OperatorRole>([...operators.keys()].map((name) => [name, 'operator']))
  for (const entry of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [name = '', role = ''] = entry.split(':').map((s) => s.trim())
    if (!Object.hasOwn(operatorRoles, role)) {
      throw new ConfigError(
        `${variable} entry "${entry.slice(0, 80)}" must look like name:role, role one of ${Object.keys(operatorRoles).join(', ')}.`
      )
    }
    if (!operators.has(name)) throw new ConfigError(`${variable} names "${name.slice(0, 80)}", which is not an operator of SYNCER_OPERATORS.`)
    roles.set(name, role as OperatorRole)
  }
  return roles
}

/** Documented in the README so a newcomer can call the APIs at once; refused in production. */
export const devSourceSystem = { name: 'branch-portal', apiKey: 'local-branch-portal-key' } as const
export const devOperator = { name: 'local-operator', apiKey: 'local-operator-key' } as const

/**
 * A list setting from the environment, or from the file `<name>_FILE` names: entries one a line or separated
 * by commas, `#` starting a comment. A file can be changed while a service runs, and SIGHUP reads it again
 * (platform/reload.ts); the environment of a running process cannot be. `variable` names where it came from.
 */
function listSetting(env: Env, name: string): { raw: string; variable: string } {
  const file = env[`${name}_FILE`] || undefined
  if (!file) return { raw: env[name] ?? '', variable: name }
  if (env[name]) throw new ConfigError(`Set ${name} or ${name}_FILE, not both.`)
  let text: string
  try {
    text = readFileSync(resolve(file), 'utf8')
  } catch (error) {
    throw new ConfigError(`Cannot read ${name}_FILE: ${(error as Error).message}`)
  }
  const entries = text.split('\n').map((line) => line.replace(/#.*/, '').trim())
  return { raw: entries.filter(Boolean).join(','), variable: `${name}_FILE (${file})` }
}

/** Outside production an empty list means the documented dev key; in production, never. */
function apiKeys(setting: { raw: string; variable: string }, dev: { name: string; apiKey: string }, production: boolean): Map<string, ApiKey[]> {
  const { raw, variable } = setting
  const callers = parseApiKeys(raw, variable)
  if (production) {
    if (hasKey(callers, dev.apiKey)) {
      throw new ConfigError(`${variable} holds a public development key; give each caller its own key.`)
    }
  } else if (callers.size === 0) {
    callers.set(dev.name, [{ hash: apiKeyHash(dev.apiKey) }])
  }
  return callers
}

/**
 * Client certificates pinned per caller, as `name=<SHA-256 fingerprint>` pairs separated by commas (hex, with
 * or without the colons of `openssl x509 -noout -fingerprint -sha256`). Several per caller, so that a renewed
 * certificate is pinned before the old one expires.
 */
export function parseCertificates(raw: string, variable: string): Map<string, string[]> {
  const callers = new Map<string, string[]>()
  const seen = new Set<string>()
  for (const entry of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const match = /^([a-z][a-z0-9-]{1,62})=((?:[0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2}|[0-9a-fA-F]{64})$/.exec(entry)
    if (!match) throw new ConfigError(`${variable} entry "${entry.slice(0, 120)}" must look like name=<SHA-256 fingerprint of the certificate>.`)
    const [, name, printed] = match as unknown as [string, string, string]
    const fingerprint = certificateFingerprint(printed)
    if (seen.has(fingerprint)) throw new ConfigError(`${variable} pins the certificate of "${name}" twice, or for two callers.`)
    seen.add(fingerprint)
    callers.set(name, [...(callers.get(name) ?? []), fingerprint])
  }
  return callers
}

/**
 * Who may call the APIs, what each may do, and how each authenticates: everything a reload (SIGHUP) reads
 * again. A caller with a pinned certificate presents it with its key, unless TLS_CLIENT_CERTIFICATE_SUFFICES.
 */
export interface Access {
  sourceSystemKeyHashes: Callers
  sourceSystemGrants: Map<string, Set<SourceSystemGrant>>
  operatorKeyHashes: Callers
  operatorRoles: Map<string, OperatorRole>
}

function loadCallers(env: Env, name: string, certificatesName: string, dev: { name: string; apiKey: string }, production: boolean): Callers {
  const keys = apiKeys(listSetting(env, name), dev, production)
  const setting = listSetting(env, certificatesName)
  const certificates = parseCertificates(setting.raw, setting.variable)
  if (certificates.size && !env.TLS_CLIENT_CA_FILE) {
    throw new ConfigError(`${setting.variable} pins client certificates, but TLS_CLIENT_CA_FILE is not set: no certificate is asked for.`)
  }
  const suffices = env.TLS_CLIENT_CERTIFICATE_SUFFICES === 'true'
  for (const caller of certificates.keys()) {
    if (!suffices && !keys.has(caller)) {
      throw new ConfigError(
        `${setting.variable} pins a certificate for "${caller}", which has no key: give it one, or set TLS_CLIENT_CERTIFICATE_SUFFICES=true.`
      )
    }
  }
  return new Callers(keys, certificates, suffices)
}

/** The access settings as they are now: from the environment, and from the files of the `_FILE` variables. */
export function loadAccess(env: Env, production: boolean): Access {
  if (!['true', 'false', '', undefined].includes(env.TLS_CLIENT_CERTIFICATE_SUFFICES)) {
    throw new ConfigError(`TLS_CLIENT_CERTIFICATE_SUFFICES must be true or false, got "${env.TLS_CLIENT_CERTIFICATE_SUFFICES!.slice(0, 40)}".`)
  }
  const sourceSystemKeyHashes = loadCallers(env, 'CIF_SOURCE_SYSTEMS', 'CIF_SOURCE_SYSTEM_CERTIFICATES', devSourceSystem, production)
  if (production && sourceSystemKeyHashes.size === 0) throw new ConfigError('CIF_SOURCE_SYSTEMS must name at least one caller in production.')
  const operatorKeyHashes = loadCallers(env, 'SYNCER_OPERATORS', 'SYNCER_OPERATOR_CERTIFICATES', devOperator, production)
  const grants = listSetting(env, 'CIF_SOURCE_SYSTEM_GRANTS')
  const roles = listSetting(env, 'SYNCER_OPERATOR_ROLES')
  return {
    sourceSystemKeyHashes,
    sourceSystemGrants: parseGrants(grants.raw, sourceSystemKeyHashes, grants.variable),
    operatorKeyHashes,
    operatorRoles: parseOperatorRoles(roles.raw, operatorKeyHashes, roles.variable)
  }
}

/** What a reload changed, by caller name (never a key or a hash). */
export interface AccessChanges {
  sourceSystems: CallerChanges
  operators: CallerChanges
  /** Source systems whose grants, operators whose role changed. */
  grants: string[]
  roles: string[]
}
export interface CallerChanges {
  added: string[]
  removed: string[]
  /** Callers whose keys or certificates changed. */
  credentialsChanged: string[]
}

function callerChanges(before: Callers, after: Callers): CallerChanges {
  const credentials = (callers: Callers, name: string) =>
    JSON.stringify([callers.get(name)?.map((key) => [key.hash, key.expiresAt?.getTime()]), callers.certificatesOf(name)])
  return {
    added: [...after.keys()].filter((name) => !before.has(name)),
    removed: [...before.keys()].filter((name) => !after.has(name)),
    credentialsChanged: [...after.keys()].filter((name) => before.has(name) && credentials(before, name) !== credentials(after, name))
  }
}

function changedNames<T>(before: ReadonlyMap<string, T>, after: ReadonlyMap<string, T>, same: (a: T, b: T) => boolean): string[] {
  const names = new Set([...before.keys(), ...after.keys()])
  return [...names].filter((name) => !before.has(name) || !after.has(name) || !same(before.get(name)!, after.get(name)!))
}

/**
 * Reads the access settings again and, if they are valid, puts them in place of `config`'s, all at once; the
 * APIs hold the same objects, so the next request sees them. Invalid settings throw a ConfigError and change
 * nothing, and so do settings that would leave no source system or no operator where there were some: a
 * half-written file must not lock everyone out.
 */
export function reloadAccess(config: Config, env: Env): AccessChanges {
  const next = loadAccess(env, config.production)
  for (const [what, before, after] of [
    ['source system', config.sourceSystemKeyHashes, next.sourceSystemKeyHashes],
    ['operator', config.operatorKeyHashes, next.operatorKeyHashes]
  ] as const) {
    if (before.size > 0 && after.size === 0) throw new ConfigError(`The new settings name no ${what}, which would lock every ${what} out.`)
  }
  const changes: AccessChanges = {
    sourceSystems: callerChanges(config.sourceSystemKeyHashes, next.sourceSystemKeyHashes),
    operators: callerChanges(config.operatorKeyHashes, next.operatorKeyHashes),
    grants: changedNames(config.sourceSystemGrants, next.sourceSystemGrants, (a, b) => [...a].sort().join() === [...b].sort().join()),
    roles: changedNames(config.operatorRoles, next.operatorRoles, (a, b) => a === b)
  }
  config.sourceSystemKeyHashes.replaceWith(next.sourceSystemKeyHashes)
  config.operatorKeyHashes.replaceWith(next.operatorKeyHashes)
  for (const [current, loaded] of [
    [config.sourceSystemGrants, next.sourceSystemGrants],
    [config.operatorRoles, next.operatorRoles]
  ] as [Map<string, unknown>, Map<string, unknown>][]) {
    current.clear()
    for (const [name, value] of loaded) current.set(name, value)
  }
  return changes
}

/** Whether `key` is one of the configured keys (the banner shows the development keys only where accepted). */
export function hasKey(callers: ReadonlyMap<string, readonly ApiKey[]>, key: string): boolean {
  const hash = apiKeyHash(key)
  return [...callers.values()].some((keys) => keys.some((configured) => configured.hash === hash))
}

/**
 * The development key pair that signs and verifies customer events when CIF_EVENT_SIGNING_KEY and
 * SYNCER_EVENT_KEYS are unset, so that the local stack and the tests need no setting. Committed, so
 * anyone can sign with it: refused in production. `publicKey` is as SYNCER_EVENT_KEYS takes a key
 * (base64 of the DER SubjectPublicKeyInfo).
 */
export const devEventSigningKey = {
  keyId: 'local-development',
  privateKey: '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAKWL/n0g4r2pKF6TjrN2Gh4RfZVzNIviL1fCfoghwJg\n-----END PRIVATE KEY-----\n',
  publicKey: 'MCowBQYDK2VwAyEAWO30fxMdzuDwB5EA4qCaFczmhLKX5DgN7YxqgEPyLwI='
} as const

const keyIdPattern = new RegExp(SIGNING_KEY_ID_PATTERN)
const keyIdRule = '1 to 64 letters, digits, dots, underscores or hyphens, starting with a letter or digit'

/** A public key as SYNCER_EVENT_KEYS writes it: base64 of its DER SubjectPublicKeyInfo. */
const spkiBase64 = (key: KeyObject): string => key.export({ type: 'spki', format: 'der' }).toString('base64')

/** The CIF service's signing key: a PEM PKCS#8 Ed25519 private key and its id. */
function eventSigningKey(env: Env, production: boolean): EventSigningKey | undefined {
  const pem = env.CIF_EVENT_SIGNING_KEY || undefined
  const keyId = env.CIF_EVENT_SIGNING_KEY_ID || undefined
  if (!pem && !keyId) {
    return production ? undefined : { keyId: devEventSigningKey.keyId, privateKey: createPrivateKey(devEventSigningKey.privateKey) }
  }
  if (!pem || !keyId) throw new ConfigError('Set both CIF_EVENT_SIGNING_KEY (PEM) and CIF_EVENT_SIGNING_KEY_ID, or neither.')
  if (!keyIdPattern.test(keyId)) throw new ConfigError(`CIF_EVENT_SIGNING_KEY_ID "${keyId.slice(0, 80)}" must be ${keyIdRule}.`)
  let privateKey: KeyObject
  try {
    // Where an environment cannot hold line breaks, the PEM may carry them as \n.
    privateKey = createPrivateKey({ key: pem.replaceAll('\\n', '\n'), format: 'pem' })
  } catch {
    // The key itself never goes into a message.
    throw new ConfigError('CIF_EVENT_SIGNING_KEY must be an unencrypted private key in PEM (PKCS#8, "-----BEGIN PRIVATE KEY-----").')
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new ConfigError(`CIF_EVENT_SIGNING_KEY must be an Ed25519 key, not ${privateKey.asymmetricKeyType}: events are signed with Ed25519.`)
  }
  if (production && spkiBase64(createPublicKey(privateKey)) === devEventSigningKey.publicKey) {
    throw new ConfigError('CIF_EVENT_SIGNING_KEY is the public development key, with which anyone can sign; give the CIF service a key of its own.')
  }
  return { keyId, privateKey }
}

/**
 * The public keys the syncer accepts events from, as `keyid=<base64 of the DER SubjectPublicKeyInfo>`
 * pairs separated by commas (the base64 is the one line between the PEM's BEGIN and END lines). Several,
 * so that a new key is trusted before the CIF service signs with it.
 */
export function parseTrustedEventKeys(raw: string, variable = 'SYNCER_EVENT_KEYS'): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>()
  for (const entry of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const at = entry.indexOf('=')
    const keyId = entry.slice(0, Math.max(at, 0)).trim()
    const encoded = entry.slice(at + 1).trim()
    // A bare key has no id: its first "=" is the base64 padding at the end, and nothing follows it.
    if (at < 0 || !keyIdPattern.test(keyId) || !encoded) {
      throw new ConfigError(`${variable} entry "${entry.slice(0, 80)}" must look like keyid=<base64 of the DER public key>, the key id ${keyIdRule}.`)
    }
    if (keys.has(keyId)) throw new ConfigError(`${variable} names key "${keyId}" twice.`)
    let key: KeyObject | undefined
    try {
      if (/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) key = createPublicKey({ key: Buffer.from(encoded, 'base64'), format: 'der', type: 'spki' })
    } catch {
      key = undefined
    }
    if (!key) throw new ConfigError(`${variable} key "${keyId}" is not a public key in base64 of DER (SubjectPublicKeyInfo).`)
    if (key.asymmetricKeyType !== 'ed25519') {
      throw new ConfigError(`${variable} key "${keyId}" must be an Ed25519 key, not ${key.asymmetricKeyType}: events are signed with Ed25519.`)
    }
    keys.set(keyId, key)
  }
  return keys
}

function trustedEventKeys(env: Env, production: boolean): TrustedEventKeys | undefined {
  const keys = parseTrustedEventKeys(env.SYNCER_EVENT_KEYS ?? '')
  if (production) {
    const dev = [...keys].find(([, key]) => spkiBase64(key) === devEventSigningKey.publicKey)
    if (dev) {
      throw new ConfigError(
        `SYNCER_EVENT_KEYS trusts the public development key (as "${dev[0]}"), with which anyone can sign; trust the CIF service's own keys only.`
      )
    }
  } else if (keys.size === 0) {
    keys.set(devEventSigningKey.keyId, createPublicKey({ key: Buffer.from(devEventSigningKey.publicKey, 'base64'), format: 'der', type: 'spki' }))
  }
  return keys.size ? keys : undefined
}

/**
 * The CIF service's signing key. Asked of the CIF service only, so that the syncer's environment never
 * has to hold the key that could forge events.
 */
export function requireEventSigningKey(config: Config): EventSigningKey {
  if (!config.cif.eventSigningKey) {
    throw new ConfigError(
      'Set CIF_EVENT_SIGNING_KEY (PEM, PKCS#8 Ed25519) and CIF_EVENT_SIGNING_KEY_ID: in production the CIF service signs with a key of its own.'
    )
  }
  return config.cif.eventSigningKey
}

/** The keys the syncer trusts; asked of the syncer only. */
export function requireTrustedEventKeys(config: Config): TrustedEventKeys {
  if (!config.syncer.trustedEventKeys) {
    throw new ConfigError(
      "Set SYNCER_EVENT_KEYS (keyid=<base64 of the DER public key>,...): in production the syncer trusts the CIF service's keys only."
    )
  }
  return config.syncer.trustedEventKeys
}

/** At least 32 characters: an HMAC key guessable in fewer would let anyone sign a session of their choosing. */
function consoleSessionSecret(env: Env): string | undefined {
  const secret = env.SYNCER_CONSOLE_SESSION_SECRET
  if (secret === undefined || secret === '') return undefined
  if (secret.length < 32) throw new ConfigError(`SYNCER_CONSOLE_SESSION_SECRET must be at least 32 characters, got ${secret.length}.`)
  return secret
}

/** What the syncer does with a month of the transaction table past its retention (syncer/retention.ts). */
export const attemptRetentionActions = ['detach', 'drop'] as const
export type AttemptRetentionAction = (typeof attemptRetentionActions)[number]

function attemptRetentionAction(env: Env): AttemptRetentionAction {
  const value = env.SYNCER_ATTEMPT_RETENTION_ACTION || 'detach'
  const action = attemptRetentionActions.find((known) => known === value)
  if (!action) throw new ConfigError(`SYNCER_ATTEMPT_RETENTION_ACTION must be detach or drop, not ${JSON.stringify(value)}.`)
  return action
}

function logFormat(env: Env): LogFormat | undefined {
  const value = env.LOG_FORMAT || undefined
  if (value === undefined) return undefined
  const format = logFormats.find((known) => known === value)
  if (!format) throw new ConfigError(`LOG_FORMAT must be ${logFormats.join(' or ')}, not ${JSON.stringify(value)}.`)
  return format
}

function publicApiDocs(env: Env, production: boolean): boolean {
  const value = env.API_DOCS ?? (production ? 'off' : 'public')
  if (value !== 'public' && value !== 'off') throw new ConfigError(`API_DOCS must be public or off, not ${JSON.stringify(value)}.`)
  return value === 'public'
}

function tlsFiles(env: Env): Config['tls'] {
  const certFile = env.TLS_CERT_FILE || undefined
  const keyFile = env.TLS_KEY_FILE || undefined
  const clientCaFile = env.TLS_CLIENT_CA_FILE || undefined
  if (!certFile && !keyFile && !clientCaFile) return undefined
  if (!certFile || !keyFile) throw new ConfigError('Set both TLS_CERT_FILE and TLS_KEY_FILE (PEM) for HTTPS, or neither (and no TLS_CLIENT_CA_FILE).')
  return { certFile: resolve(certFile), keyFile: resolve(keyFile), clientCaFile: clientCaFile && resolve(clientCaFile) }
}

/** The APIs' TLS certificate and key, and the authorities of client certificates; read at start and on a reload. */
export function tlsOptions(config: Config): { cert: Buffer; key: Buffer; ca?: Buffer } | undefined {
  if (!config.tls) return undefined
  const { certFile, keyFile, clientCaFile } = config.tls
  return { cert: readFileSync(certFile), key: readFileSync(keyFile), ...(clientCaFile ? { ca: readFileSync(clientCaFile) } : {}) }
}

/** What a Kafka setting's file holds, or a ConfigError naming the setting. */
function settingFile(variable: string, file: string): string {
  try {
    return readFileSync(resolve(file), 'utf8')
  } catch (error) {
    throw new ConfigError(`${variable}: cannot read "${file}" (${(error as NodeJS.ErrnoException).code ?? String(error)}).`)
  }
}

const kafkaSecurityProtocols = ['PLAINTEXT', 'SSL', 'SASL_SSL'] as const

/**
 * Kafka client security from KAFKA_SECURITY_PROTOCOL and the KAFKA_TLS_* and KAFKA_SASL_* settings. A
 * setting that the protocol would ignore is refused, so that nobody believes a connection is secured
 * when it is not. PEM files and the password file are read here, once, so that a wrong path stops the
 * process at start. SASL only over TLS: SASL_PLAINTEXT would send the traffic (and with PLAIN the password) in clear.
 */
function parseKafkaSecurity(env: Env, production: boolean, brokersSet: boolean): KafkaSecurity {
  const raw = env.KAFKA_SECURITY_PROTOCOL || undefined
  const protocol = raw ?? 'PLAINTEXT'
  if (!(kafkaSecurityProtocols as readonly string[]).includes(protocol)) {
    throw new ConfigError(`KAFKA_SECURITY_PROTOCOL must be one of ${kafkaSecurityProtocols.join(', ')}, got "${protocol.slice(0, 40)}".`)
  }
  const set = (names: string[]) => names.filter((name) => env[name])
  const tlsSettings = set(['KAFKA_TLS_CA_FILE', 'KAFKA_TLS_CERT_FILE', 'KAFKA_TLS_KEY_FILE'])
  const saslSettings = set(['KAFKA_SASL_MECHANISM', 'KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD', 'KAFKA_SASL_PASSWORD_FILE'])
  if (protocol === 'PLAINTEXT') {
    if (tlsSettings.length || saslSettings.length) {
      throw new ConfigError(
        `${[...tlsSettings, ...saslSettings].join(', ')} set, but KAFKA_SECURITY_PROTOCOL is PLAINTEXT: set it to SSL or SASL_SSL.`
      )
    }
    // In production the clear-text default is taken only when asked for (a cluster behind a mesh that encrypts).
    if (production && brokersSet && !raw) {
      throw new ConfigError(
        'Set KAFKA_SECURITY_PROTOCOL (SASL_SSL, or SSL): in production Kafka is not reached in clear text unless KAFKA_SECURITY_PROTOCOL=PLAINTEXT says so.'
      )
    }
    return {}
  }
  if (!brokersSet) {
    throw new ConfigError(`KAFKA_SECURITY_PROTOCOL=${protocol} needs KAFKA_BROKERS: the local broker of \`cif-syncer up\` speaks PLAINTEXT only.`)
  }

  const ca = env.KAFKA_TLS_CA_FILE ? settingFile('KAFKA_TLS_CA_FILE', env.KAFKA_TLS_CA_FILE) : undefined
  if (ca !== undefined) {
    try {
      new X509Certificate(ca)
    } catch {
      throw new ConfigError(`KAFKA_TLS_CA_FILE "${env.KAFKA_TLS_CA_FILE}" must hold PEM certificates ("-----BEGIN CERTIFICATE-----").`)
    }
  }
  if (!env.KAFKA_TLS_CERT_FILE !== !env.KAFKA_TLS_KEY_FILE) {
    throw new ConfigError('Set both KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE (PEM) for a client certificate, or neither.')
  }
  const cert = env.KAFKA_TLS_CERT_FILE ? settingFile('KAFKA_TLS_CERT_FILE', env.KAFKA_TLS_CERT_FILE) : undefined
  const key = env.KAFKA_TLS_KEY_FILE ? settingFile('KAFKA_TLS_KEY_FILE', env.KAFKA_TLS_KEY_FILE) : undefined
  if (cert !== undefined && key !== undefined) {
    let matches: boolean
    try {
      matches = new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))
    } catch {
      throw new ConfigError('KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE must be a PEM certificate and an unencrypted PEM private key.')
    }
    if (!matches) throw new ConfigError('KAFKA_TLS_KEY_FILE is not the private key of the certificate in KAFKA_TLS_CERT_FILE.')
  }
  const tls = { ...(ca !== undefined && { ca }), ...(cert !== undefined && { cert, key }) }

  if (protocol === 'SSL') {
    if (saslSettings.length) throw new ConfigError(`${saslSettings.join(', ')} set, but KAFKA_SECURITY_PROTOCOL is SSL: set it to SASL_SSL.`)
    return { tls }
  }
  const mechanism = env.KAFKA_SASL_MECHANISM || 'SCRAM-SHA-512'
  if (!(kafkaSaslMechanisms as readonly string[]).includes(mechanism)) {
    throw new ConfigError(`KAFKA_SASL_MECHANISM must be one of ${kafkaSaslMechanisms.join(', ')}, got "${mechanism.slice(0, 40)}".`)
  }
  const username = env.KAFKA_SASL_USERNAME
  if (!username) throw new ConfigError('KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME: the principal this process is to the brokers.')
  if (env.KAFKA_SASL_PASSWORD && env.KAFKA_SASL_PASSWORD_FILE) {
    throw new ConfigError('Set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both.')
  }
  // A file as written by `echo` ends with a line break that is not part of the password.
  const password = env.KAFKA_SASL_PASSWORD_FILE
    ? settingFile('KAFKA_SASL_PASSWORD_FILE', env.KAFKA_SASL_PASSWORD_FILE).replace(/\r?\n$/, '')
    : env.KAFKA_SASL_PASSWORD
  if (!password) throw new ConfigError('KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE (not empty).')
  return { tls, sasl: { mechanism: mechanism as KafkaSaslMechanism, username, password } }
}

/** The Kafka cluster of KAFKA_BROKERS with this process's security; asked of the commands that need one. */
export function configuredKafka(config: Config): KafkaCluster | undefined {
  return config.kafkaBrokers && { brokers: config.kafkaBrokers, security: config.kafkaSecurity }
}

export function loadConfig(env: Env = process.env): Config {
  const production = env.NODE_ENV === 'production'
  const access = loadAccess(env, production)
  const kafkaBrokers = env.KAFKA_BROKERS?.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  return {
    production,
    logLevel: env.LOG_LEVEL ?? 'info',
    logFormat: logFormat(env),
    dataDir: resolve(env.CIF_DATA_DIR ?? '.local'),
    cif: {
      host: env.CIF_HOST ?? '127.0.0.1',
      port: integer(env, 'CIF_PORT', 8080, 0, 65535),
      bodyLimitBytes: integer(env, 'CIF_BODY_LIMIT_BYTES', 64 * 1024, 1024, 10 * 1024 * 1024),
      eventSigningKey: eventSigningKey(env, production),
      // At least an hour: a client's retries of one create must all find its key.
      idempotencyRetentionHours: integer(env, 'CIF_IDEMPOTENCY_RETENTION_HOURS', 24, 1, 24 * 365)
    },
    http: {
      requestTimeoutMs: integer(env, 'HTTP_REQUEST_TIMEOUT_MS', defaultHttpLimits.requestTimeoutMs, 1000, 600_000),
      keepAliveTimeoutMs: integer(env, 'HTTP_KEEP_ALIVE_TIMEOUT_MS', defaultHttpLimits.keepAliveTimeoutMs, 1000, 600_000),
      maxConnections: integer(env, 'HTTP_MAX_CONNECTIONS', defaultHttpLimits.maxConnections, 1, 1_000_000),
      rateLimitPerMinute: integer(env, 'HTTP_RATE_LIMIT_PER_MINUTE', defaultHttpLimits.rateLimitPerMinute, 1, 10_000_000),
      authFailuresBeforeLockout: integer(env, 'AUTH_FAILURES_BEFORE_LOCKOUT', defaultHttpLimits.authFailuresBeforeLockout, 1, 100_000),
      lockoutMs: integer(env, 'AUTH_LOCKOUT_MS', defaultHttpLimits.lockoutMs, 1000, 86_400_000)
    },
    publicApiDocs: publicApiDocs(env, production),
    tls: tlsFiles(env),
    databaseUrl: env.DATABASE_URL || undefined,
    localPostgresPort: integer(env, 'LOCAL_POSTGRES_PORT', 54320, 1, 65535),
    kafkaBrokers: kafkaBrokers?.length ? kafkaBrokers : undefined,
    kafkaSecurity: parseKafkaSecurity(env, production, Boolean(kafkaBrokers?.length)),
    localKafkaPort: integer(env, 'KAFKA_PORT', 9092, 1, 65535),
    // Five at most: each is a JVM on this machine.
    localKafkaBrokers: integer(env, 'LOCAL_KAFKA_BROKERS', 1, 1, 5),
    outbox: {
      batchSize: integer(env, 'OUTBOX_BATCH_SIZE', 500, 1, 10_000),
      pollIntervalMs: integer(env, 'OUTBOX_POLL_INTERVAL_MS', 1000, 10, 60_000),
      retentionHours: integer(env, 'OUTBOX_RETENTION_HOURS', 168, 0, 24 * 365),
      stallMs: integer(env, 'OUTBOX_STALL_MS', 30_000, 1000, 3_600_000),
      unreadyAfterMs: integer(env, 'OUTBOX_UNREADY_AFTER_MS', 60_000, 1000, 3_600_000)
    },
    retentionBatchSize: integer(env, 'RETENTION_BATCH_SIZE', 1000, 1, 100_000),
    sourceSystemKeyHashes: access.sourceSystemKeyHashes,
    sourceSystemGrants: access.sourceSystemGrants,
    syncer: {
      host: env.SYNCER_HOST ?? '127.0.0.1',
      port: integer(env, 'SYNCER_PORT', 8081, 0, 65535),
      endSystemsFile: resolve(env.SYNCER_END_SYSTEMS_FILE ?? 'config/end-systems.yaml'),
      groupId: env.SYNCER_GROUP_ID ?? 'cif-syncer',
      pollIntervalMs: integer(env, 'SYNCER_POLL_INTERVAL_MS', 250, 10, 60_000),
      // Below 5 s an ordinary pause (a rebalance, a slow batch) would look like a stall.
      intakeStallMs: integer(env, 'SYNCER_INTAKE_STALL_MS', 30_000, 5000, 3_600_000),
      intakeUnreadyAfterMs: integer(env, 'SYNCER_INTAKE_UNREADY_AFTER_MS', 60_000, 1000, 3_600_000),
      trustedEventKeys: trustedEventKeys(env, production),
      // A minute at least, so that a second person can answer; a month at most, so that nobody approves what
      // the requester has long forgotten.
      actionRequestExpiryMs: integer(env, 'SYNCER_ACTION_REQUEST_EXPIRY_MS', 24 * 3_600_000, 60_000, 30 * 24 * 3_600_000),
      bulkRedriveLimit: integer(env, 'SYNCER_BULK_REDRIVE_LIMIT', 500, 1, BULK_REDRIVE_LIMIT_MAX),
      eventPayloadRetentionHours: integer(env, 'SYNCER_EVENT_PAYLOAD_RETENTION_HOURS', 168, 0, 24 * 3650),
      // The audit trail: kept for ever unless the bank sets its period (seven years is 84).
      attemptRetention: { months: integer(env, 'SYNCER_ATTEMPT_RETENTION_MONTHS', 0, 0, 1200), action: attemptRetentionAction(env) },
      consoleSessionSecret: consoleSessionSecret(env),
      // A second at least (tests); a week at most: a version later than that is a failure, not a delay.
      inSyncDeadlineMs: integer(env, 'SYNCER_IN_SYNC_DEADLINE_MS', DEFAULT_IN_SYNC_DEADLINE_MS, 1000, 7 * 24 * 3_600_000)
    },
    operatorKeyHashes: access.operatorKeyHashes,
    operatorRoles: access.operatorRoles,
    simulator: { host: env.SIMULATOR_HOST ?? '127.0.0.1', port: integer(env, 'SIMULATOR_PORT', 8090, 0, 65535) },
    telemetry: {
      metricsHost: env.METRICS_HOST ?? '127.0.0.1',
      cifMetricsPort: optionalPort(env, 'CIF_METRICS_PORT'),
      syncerMetricsPort: optionalPort(env, 'SYNCER_METRICS_PORT'),
      otlpTracesUrl: otlpTracesUrl(env)
    }
  }
}
