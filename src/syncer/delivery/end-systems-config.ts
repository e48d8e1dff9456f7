import { createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { Ajv } from 'ajv'
import jsonata from 'jsonata'
import { type Static, Type } from 'typebox'
import { type Document, LineCounter, parseDocument } from 'yaml'
import { ConfigError } from '../../platform/config.ts'
import { type RepairableSituation, repairableSituations } from '../reconciliation/situations.ts'

const positive = (maximum: number, description?: string) => Type.Integer({ minimum: 1, maximum, description })

const RetryPolicy = Type.Object(
  {
    retries: Type.Integer({ minimum: 0, maximum: 100, description: 'Retries after the first attempt' }),
    timeoutMs: positive(600_000, 'Timeout of the first attempt'),
    timeoutMultiplier: Type.Number({ minimum: 1, maximum: 10, description: 'Each retry waits this much longer' }),
    maxTimeoutMs: positive(3_600_000),
    backoffMs: Type.Integer({ minimum: 0, maximum: 3_600_000, description: 'Pause before the first retry; doubles, with jitter' }),
    maxBackoffMs: Type.Integer({ minimum: 0, maximum: 86_400_000 })
  },
  { additionalProperties: false }
)

const CircuitBreaker = Type.Object({ consecutiveFailures: positive(1000), halfOpenAfterMs: positive(3_600_000) }, { additionalProperties: false })

const Tunables = {
  concurrency: Type.Optional(positive(1000, 'Calls in flight to this system at most')),
  retry: Type.Optional(Type.Partial(RetryPolicy)),
  circuitBreaker: Type.Optional(CircuitBreaker)
}

const envName = Type.String({ pattern: '^[A-Z_][A-Z0-9_]*$' })
const Auth = Type.Union([
  Type.Object({ type: Type.Literal('none') }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('bearer'), tokenEnv: envName }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('basic'), usernameEnv: envName, passwordEnv: envName }, { additionalProperties: false }),
  Type.Object(
    { type: Type.Literal('apiKey'), header: Type.String({ pattern: '^[A-Za-z0-9-]+$' }), valueEnv: envName },
    { additionalProperties: false }
  )
])

const pemFile = (description: string) => Type.Optional(Type.String({ minLength: 1, description }))
const Tls = Type.Object(
  {
    caFile: pemFile('PEM: the certificate authorities this system’s certificate must chain to, instead of the usual ones'),
    certFile: pemFile('PEM: the client certificate the syncer presents to this system'),
    keyFile: pemFile('PEM: its private key (unencrypted)'),
    serverName: Type.Optional(Type.String({ minLength: 1, description: 'The name its certificate must carry, when not the host of baseUrl' }))
  },
  { additionalProperties: false, description: 'Paths are relative to the end systems file, or absolute; read at start' }
)

const Operation = Type.Object(
  {
    method: Type.Enum(['POST', 'PUT', 'PATCH']),
    path: Type.String({ pattern: '^/', description: 'May hold {cifId} and, for updates, {externalId}' }),
    body: Type.String({ minLength: 1, description: 'JSONata: the event → this system’s payload' }),
    externalId: Type.Optional(Type.String({ minLength: 1, description: 'JSONata: the create response → this system’s record id' }))
  },
  { additionalProperties: false }
)

/** What an end system may be named: also what the admin API takes as one. */
export const END_SYSTEM_NAME_PATTERN = '^[a-z][a-z0-9-]{1,40}$'

const jsonataText = (description: string) => Type.String({ minLength: 1, description })

const ReadOperation = Type.Object(
  {
    method: Type.Enum(['GET']),
    path: Type.String({ pattern: '^/', description: 'Holds {externalId} (the record id the create got) or {cifId}' }),
    record: Type.Optional(jsonataText('JSONata: the answer → the record (the whole answer when absent)')),
    version: Type.Optional(jsonataText('JSONata: the record → the customer version it holds, when the system keeps one')),
    cifId: Type.Optional(
      jsonataText(
        'JSONata: the record → the CIF ID it is for. Required when the path reads by {externalId}: a record id the system gave another customer (after a restore) is then never taken for this one'
      )
    ),
    externalId: Type.Optional(
      jsonataText(
        'JSONata: the answer → the record id. With a path by {cifId}, a create whose answer held no record id (or a 409) finds the record this way'
      )
    )
  },
  { additionalProperties: false }
)

const ListOperation = Type.Object(
  {
    path: Type.String({ pattern: '^/', description: 'A page of records: {cursor} is empty for the first page, then what `next` gave' }),
    items: jsonataText('JSONata: the answer → the records of the page'),
    cifId: jsonataText('JSONata: a record → the CIF ID it is for'),
    externalId: Type.Optional(jsonataText('JSONata: a record → its id in this system')),
    next: jsonataText('JSONata: the answer → the cursor of the next page; nothing at the last page')
  },
  { additionalProperties: false }
)

const Reconcile = Type.Object(
  {
    everyMinutes: Type.Optional(positive(525_600, 'A reconciliation run of this system this often (none when absent)')),
    ratePerSecond: Type.Optional(positive(10_000, 'Reads of a reconciliation, and deliveries of a backfill, per second at most')),
    repair: Type.Optional(
      Type.Array(Type.Enum([...repairableSituations]), { uniqueItems: true, description: 'Situations repaired as soon as a run finds them' })
    )
  },
  { additionalProperties: false }
)

const EndSystem = Type.Object(
  {
    name: Type.String({ pattern: END_SYSTEM_NAME_PATTERN }),
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the description shows the file's own ${NAME} syntax
    baseUrl: Type.String({ minLength: 1, description: 'http(s) URL; ${NAME} or ${NAME:-default} take it from the environment' }),
    auth: Type.Optional(Auth),
    tls: Type.Optional(Tls),
    createConflictMeansExists: Type.Optional(Type.Boolean({ description: 'A 409 on create means the record is there already' })),
    coalesce: Type.Optional(
      Type.Boolean({
        description: 'The system takes the full record on every update: of a customer’s queued versions only the newest is sent (default false)'
      })
    ),
    operations: Type.Object(
      { create: Operation, update: Operation, read: Type.Optional(ReadOperation), list: Type.Optional(ListOperation) },
      { additionalProperties: false }
    ),
    compare: Type.Optional(jsonataText('JSONata: the CIF record (as a mapping sees it) → the fields this system must hold, in its shape')),
    reconcile: Type.Optional(Reconcile),
    ...Tunables
  },
  { additionalProperties: false }
)

const EndSystemsFile = Type.Object(
  {
    defaults: Type.Optional(Type.Object(Tunables, { additionalProperties: false })),
    endSystems: Type.Array(EndSystem, { minItems: 1 })
  },
  { additionalProperties: false }
)
type EndSystemsFile = Static<typeof EndSystemsFile>

export type RetryPolicy = Static<typeof RetryPolicy>
export type CircuitBreakerPolicy = Static<typeof CircuitBreaker>
export type OperationName = 'create' | 'update'

export interface CompiledOperation {
  method: 'POST' | 'PUT' | 'PATCH'
  path: string
  body: jsonata.Expression
  externalId: jsonata.Expression | undefined
}

/** An end system as the syncer uses it: defaults applied, expressions compiled, secrets resolved. */
export interface EndSystemConfig {
  name: string
  baseUrl: string
  /** Headers that authenticate the syncer; built from environment variables, never from the file. */
  authHeaders: Record<string, string>
  /** How the syncer's connections to this system are secured: undici's `connect` options, files already read. */
  tls: EndSystemTls | undefined
  createConflictMeansExists: boolean
  /** Queued updates of a customer are coalesced: only the newest is sent (delivery/coalescing.ts). */
  coalesce: boolean
  concurrency: number
  retry: RetryPolicy
  circuitBreaker: CircuitBreakerPolicy
  operations: Record<OperationName, CompiledOperation>
  /** Undefined when the system cannot be read back: reconciliation passes it by. */
  reconcile: ReconcileConfig | undefined
  /** Reads of a reconciliation, and deliveries of a backfill, per second at most. */
  readBackRatePerSecond: number
}

/** How a system's records are read back and compared (issue 11): present when it has `read` and `compare`. */
export interface ReconcileConfig {
  read: {
    path: string
    record: jsonata.Expression | undefined
    version: jsonata.Expression | undefined
    cifId: jsonata.Expression | undefined
    externalId: jsonata.Expression | undefined
  }
  compare: jsonata.Expression
  list:
    | { path: string; items: jsonata.Expression; cifId: jsonata.Expression; externalId: jsonata.Expression | undefined; next: jsonata.Expression }
    | undefined
  everyMinutes: number | undefined
  repair: readonly RepairableSituation[]
}

export interface EndSystemTls {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
  servername?: string
}

/** The original specification's policy: 3 retries, 30 s timeout growing on each retry. */
export const defaultRetryPolicy: RetryPolicy = {
  retries: 3,
  timeoutMs: 30_000,
  timeoutMultiplier: 2,
  maxTimeoutMs: 300_000,
  backoffMs: 1000,
  maxBackoffMs: 600_000
}
const defaultCircuitBreaker: CircuitBreakerPolicy = { consecutiveFailures: 5, halfOpenAfterMs: 30_000 }
const DEFAULT_CONCURRENCY = 16
/** Gentle by default: a run reads a system no faster than this unless its file says otherwise. */
export const DEFAULT_RECONCILE_RATE_PER_SECOND = 50

type Env = Record<string, string | undefined>

/** `${NAME}` or `${NAME:-fallback}` in a base URL, so one file serves every environment. */
function interpolate(value: string, env: Env, problem: (message: string) => void): string {
  return value.replace(/\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}/g, (_match, name: string, fallback: string | undefined) => {
    const found = env[name] ?? fallback
    if (found === undefined) problem(`uses \${${name}}, which is not set`)
    return found ?? ''
  })
}

function authHeaders(auth: Static<typeof Auth> | undefined, env: Env, problem: (message: string) => void): Record<string, string> {
  const secret = (name: string): string => {
    const value = env[name]
    if (!value) problem(`needs the environment variable ${name}`)
    return value ?? ''
  }
  switch (auth?.type ?? 'none') {
    case 'bearer':
      return { authorization: `Bearer ${secret((auth as { tokenEnv: string }).tokenEnv)}` }
    case 'basic': {
      const { usernameEnv, passwordEnv } = auth as { usernameEnv: string; passwordEnv: string }
      return { authorization: `Basic ${Buffer.from(`${secret(usernameEnv)}:${secret(passwordEnv)}`).toString('base64')}` }
    }
    case 'apiKey': {
      const { header, valueEnv } = auth as { header: string; valueEnv: string }
      return { [header.toLowerCase()]: secret(valueEnv) }
    }
    default:
      return {}
  }
}

/**
 * The files of a system's `tls` settings, read and checked now, so that a wrong path or a certificate that is
 * not one stops the syncer at start rather than failing every delivery to that system.
 */
function tlsOptions(
  tls: Static<typeof Tls> | undefined,
  baseUrl: string,
  fileName: string,
  problem: (path: string[]) => (message: string) => void
): EndSystemTls | undefined {
  if (!tls) return undefined
  if (!baseUrl.startsWith('https:')) problem(['baseUrl'])(`has tls settings, but its baseUrl "${baseUrl}" is not https`)
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) problem(['tls'])('needs both tls.certFile and tls.keyFile, or neither')
  const read = <T>(key: 'caFile' | 'certFile' | 'keyFile', what: string, check: (pem: Buffer) => T): { pem: Buffer; parsed: T } | undefined => {
    const path = tls[key]
    if (path === undefined) return undefined
    const fullPath = resolve(dirname(fileName), path)
    let pem: Buffer
    try {
      pem = readFileSync(fullPath)
    } catch (error) {
      problem(['tls', key])(`cannot read tls.${key} ${fullPath}: ${(error as Error).message}`)
      return undefined
    }
    try {
      return { pem, parsed: check(pem) }
    } catch {
      problem(['tls', key])(`has tls.${key} ${fullPath}, which is not ${what}`)
      return undefined
    }
  }
  const ca = read('caFile', 'a PEM certificate', (pem) => new X509Certificate(pem))
  const cert = read('certFile', 'a PEM certificate', (pem) => new X509Certificate(pem))
  const key = read('keyFile', 'an unencrypted PEM private key', (pem) => createPrivateKey(pem))
  if (cert && key && !cert.parsed.checkPrivateKey(key.parsed))
    problem(['tls', 'keyFile'])('has a tls.keyFile that is not the key of its tls.certFile')
  return {
    ...(ca ? { ca: ca.pem } : {}),
    ...(cert ? { cert: cert.pem } : {}),
    ...(key ? { key: key.pem } : {}),
    ...(tls.serverName ? { servername: tls.serverName } : {})
  }
}

const ajv = new Ajv({ allErrors: true, strict: false })
const validateFile = ajv.compile<EndSystemsFile>(EndSystemsFile)

/**
 * Reads and checks the end systems file. Every problem is reported at once, each with the line it is on,
 * so a wrong file is fixed in one pass.
 */
export function parseEndSystems(text: string, fileName: string, env: Env = process.env): EndSystemConfig[] {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false })
  const problems: string[] = []
  const at = (path: (string | number)[]): number => lineOf(doc, lineCounter, path)
  for (const error of doc.errors) problems.push(`${fileName}:${lineCounter.linePos(error.pos[0]).line}: ${error.message.split('\n')[0]}`)
  if (problems.length) throw new ConfigError(`The end systems file is not valid YAML:\n  ${problems.join('\n  ')}`)

  const file = doc.toJS() as unknown
  if (!validateFile(file)) {
    for (const error of validateFile.errors ?? []) {
      const path = error.instancePath
        .split('/')
        .slice(1)
        .map((s) => (/^\d+$/.test(s) ? Number(s) : s))
      if (error.keyword === 'additionalProperties') path.push(String(error.params.additionalProperty))
      const field = error.keyword === 'required' ? `${error.instancePath}/${error.params.missingProperty}` : error.instancePath
      const detail = error.keyword === 'additionalProperties' ? `has an unknown setting "${error.params.additionalProperty}"` : error.message
      problems.push(`${fileName}:${at(path)}: ${field || '(top)'} ${detail}`)
    }
    throw new ConfigError(`The end systems file ${fileName} has errors:\n  ${[...new Set(problems)].join('\n  ')}`)
  }

  const seen = new Set<string>()
  const systems = file.endSystems.map((system, i): EndSystemConfig => {
    const problem = (path: (string | number)[]) => (message: string) =>
      problems.push(`${fileName}:${at(['endSystems', i, ...path])}: end system "${system.name}" ${message}`)
    if (seen.has(system.name)) problem(['name'])('is named twice')
    seen.add(system.name)
    const compile = (op: OperationName, key: 'body' | 'externalId'): jsonata.Expression | undefined => {
      const source = system.operations[op][key]
      if (source === undefined) return undefined
      try {
        return jsonata(source)
      } catch (error) {
        problem(['operations', op, key])(`has a JSONata error in operations.${op}.${key}: ${(error as Error).message}`)
        return undefined
      }
    }
    const operations = Object.fromEntries(
      (['create', 'update'] as const).map((op) => [
        op,
        { method: system.operations[op].method, path: system.operations[op].path, body: compile(op, 'body')!, externalId: compile(op, 'externalId') }
      ])
    ) as Record<OperationName, CompiledOperation>
    if (system.operations.update.path.includes('{externalId}') && !system.operations.create.externalId) {
      problem(['operations', 'create'])('updates by {externalId} but operations.create.externalId does not say where to read it')
    }
    const reconcile = reconcileConfig(
      system,
      (path, source) => {
        try {
          return jsonata(source)
        } catch (error) {
          problem(path)(`has a JSONata error in ${path.join('.')}: ${(error as Error).message}`)
          return undefined
        }
      },
      problem
    )
    const baseUrl = interpolate(system.baseUrl, env, problem(['baseUrl'])).replace(/\/+$/, '')
    if (!/^https?:\/\/[^\s/]+/.test(baseUrl) || !URL.canParse(baseUrl)) problem(['baseUrl'])(`has baseUrl "${baseUrl}", which is not an http(s) URL`)
    return {
      name: system.name,
      baseUrl,
      authHeaders: authHeaders(system.auth, env, problem(['auth'])),
      tls: tlsOptions(system.tls, baseUrl, fileName, problem),
      createConflictMeansExists: system.createConflictMeansExists ?? false,
      coalesce: system.coalesce ?? false,
      concurrency: system.concurrency ?? file.defaults?.concurrency ?? DEFAULT_CONCURRENCY,
      retry: { ...defaultRetryPolicy, ...file.defaults?.retry, ...system.retry },
      circuitBreaker: system.circuitBreaker ?? file.defaults?.circuitBreaker ?? defaultCircuitBreaker,
      operations,
      reconcile,
      readBackRatePerSecond: system.reconcile?.ratePerSecond ?? DEFAULT_RECONCILE_RATE_PER_SECOND
    }
  })
  if (problems.length) throw new ConfigError(`The end systems file ${fileName} has errors:\n  ${problems.join('\n  ')}`)
  return systems
}

type FileEndSystem = EndSystemsFile['endSystems'][number]

/** The read-back settings of one system, compiled; `read` and `compare` come together or not at all. */
function reconcileConfig(
  system: FileEndSystem,
  compile: (path: string[], source: string) => jsonata.Expression | undefined,
  problem: (path: (string | number)[]) => (message: string) => void
): ReconcileConfig | undefined {
  const { read, list } = system.operations
  if (!read || !system.compare) {
    if (read || system.compare) problem([read ? 'operations' : 'compare'])('needs both operations.read and compare to be read back, or neither')
    else if (list) problem(['operations', 'list'])('has operations.list but no operations.read and compare')
    else if (system.reconcile?.everyMinutes || system.reconcile?.repair)
      problem(['reconcile'])('has a reconcile schedule or repairs but no operations.read and compare')
    return undefined
  }
  if (!read.path.includes('{externalId}') && !read.path.includes('{cifId}')) {
    problem(['operations', 'read', 'path'])('reads by neither {externalId} nor {cifId} in operations.read.path')
  }
  if (read.path.includes('{externalId}') && !read.cifId) {
    problem(['operations', 'read'])(
      'reads by {externalId} without cifId (where the record names its CIF ID): a record id given again to another customer would be compared, and repaired, as this one'
    )
  }
  if (read.externalId && !read.path.includes('{cifId}')) {
    problem(['operations', 'read', 'externalId'])(
      'has operations.read.externalId, which only a read by {cifId} uses (to find a record whose id it lacks)'
    )
  }
  if (list && !list.path.includes('{cursor}')) problem(['operations', 'list', 'path'])('pages without {cursor} in operations.list.path')
  const optional = (path: string[], source: string | undefined) => (source === undefined ? undefined : compile(path, source))
  return {
    read: {
      path: read.path,
      record: optional(['operations', 'read', 'record'], read.record),
      version: optional(['operations', 'read', 'version'], read.version),
      cifId: optional(['operations', 'read', 'cifId'], read.cifId),
      externalId: optional(['operations', 'read', 'externalId'], read.externalId)
    },
    compare: compile(['compare'], system.compare)!,
    list: list && {
      path: list.path,
      items: compile(['operations', 'list', 'items'], list.items)!,
      cifId: compile(['operations', 'list', 'cifId'], list.cifId)!,
      externalId: optional(['operations', 'list', 'externalId'], list.externalId),
      next: compile(['operations', 'list', 'next'], list.next)!
    },
    everyMinutes: system.reconcile?.everyMinutes,
    repair: (system.reconcile?.repair ?? []) as RepairableSituation[]
  }
}

export function loadEndSystems(path: string, env: Env = process.env): EndSystemConfig[] {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new ConfigError(`Cannot read the end systems file ${path}: ${(error as Error).message}`)
  }
  return parseEndSystems(text, path, env)
}

/** The line of the deepest node of `path` that exists (a missing key is reported at its parent). */
function lineOf(doc: Document, lineCounter: LineCounter, path: (string | number)[]): number {
  for (let depth = path.length; depth > 0; depth--) {
    const node = doc.getIn(path.slice(0, depth), true) as { range?: [number, number, number] } | undefined
    if (node?.range) return lineCounter.linePos(node.range[0]).line
  }
  return 1
}

/** A path template of the end systems file with the customer's CIF ID and record id in it. */
export function requestPath(template: string, values: { cifId: string; externalId: string | null }): string {
  return template.replaceAll('{cifId}', encodeURIComponent(values.cifId)).replaceAll('{externalId}', encodeURIComponent(values.externalId ?? ''))
}
