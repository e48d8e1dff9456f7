import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import { TLSSocket } from 'node:tls'
import { httpProblems, Refusal } from '../../contracts/problems.ts'
import type { HttpServer } from './server.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Who presented the API key (or the client certificate): a source system, or an operator on the admin API. */
    caller: string
  }
}

/** A configured key: its SHA-256 (hex), and when it stops being accepted, if ever. */
export interface ApiKey {
  hash: string
  expiresAt?: Date
}

export function apiKeyHash(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex')
}

/** A certificate's SHA-256 fingerprint as configured: hex, lower case, without the colons openssl and Node print. */
export function certificateFingerprint(printed: string): string {
  return printed.replaceAll(':', '').toLowerCase()
}

/**
 * Who may call an API and how each proves it: API keys (known by their SHA-256), and client certificates
 * pinned by their SHA-256 fingerprint. As a map it is each caller's keys (a caller with a certificate and no
 * key has none). Its contents are replaced whole on a reload (SIGHUP, platform/reload.ts) while requests run,
 * so the lookups always agree with each other.
 */
export class Callers implements ReadonlyMap<string, readonly ApiKey[]> {
  #keys: ReadonlyMap<string, readonly ApiKey[]>
  #certificates: ReadonlyMap<string, readonly string[]>
  #byKey: ReadonlyMap<string, { caller: string; expiresAt: Date | undefined }>
  #byCertificate: ReadonlyMap<string, string>
  #certificateSuffices: boolean

  /**
   * `certificates`: each caller's pinned certificates (fingerprints, see certificateFingerprint);
   * `certificateSuffices`: whether such a certificate authenticates alone, or only together with a key.
   */
  constructor(
    keys: ReadonlyMap<string, readonly ApiKey[]>,
    certificates: ReadonlyMap<string, readonly string[]> = new Map(),
    certificateSuffices = false
  ) {
    // A caller with a certificate and no key (when certificates suffice) is a caller all the same.
    this.#keys = new Map([...[...certificates.keys()].map((caller): [string, readonly ApiKey[]] => [caller, []]), ...keys])
    this.#certificates = certificates
    this.#certificateSuffices = certificateSuffices
    this.#byKey = new Map([...keys].flatMap(([caller, list]) => list.map((key) => [key.hash, { caller, expiresAt: key.expiresAt }] as const)))
    this.#byCertificate = new Map([...certificates].flatMap(([caller, list]) => list.map((fingerprint) => [fingerprint, caller] as const)))
  }

  /** Takes on `next`'s callers, keys and certificates at once (a reload). */
  replaceWith(next: Callers): void {
    this.#keys = next.#keys
    this.#certificates = next.#certificates
    this.#byKey = next.#byKey
    this.#byCertificate = next.#byCertificate
    this.#certificateSuffices = next.#certificateSuffices
  }

  byKey(hash: string): { caller: string; expiresAt: Date | undefined } | undefined {
    return this.#byKey.get(hash)
  }

  byCertificate(fingerprint: string): string | undefined {
    return this.#byCertificate.get(fingerprint)
  }

  certificatesOf(caller: string): readonly string[] {
    return this.#certificates.get(caller) ?? []
  }

  get certificateSuffices(): boolean {
    return this.#certificateSuffices
  }

  get size(): number {
    return this.#keys.size
  }
  get(caller: string): readonly ApiKey[] | undefined {
    return this.#keys.get(caller)
  }
  has(caller: string): boolean {
    return this.#keys.has(caller)
  }
  forEach(callback: (keys: readonly ApiKey[], caller: string, map: ReadonlyMap<string, readonly ApiKey[]>) => void): void {
    for (const [caller, keys] of this.#keys) callback(keys, caller, this)
  }
  keys(): MapIterator<string> {
    return this.#keys.keys()
  }
  values(): MapIterator<readonly ApiKey[]> {
    return this.#keys.values()
  }
  entries(): MapIterator<[string, readonly ApiKey[]]> {
    return this.#keys.entries()
  }
  [Symbol.iterator](): MapIterator<[string, readonly ApiKey[]]> {
    return this.#keys.entries()
  }
}

/**
 * The fingerprint of the client certificate the connection presented, if Node verified it against the
 * authorities of TLS_CLIENT_CA_FILE (chain and dates): the server asks for one but lets a connection
 * without it through, so that health probes and callers with keys alone still connect.
 */
function verifiedCertificate(socket: Socket): string | undefined {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined
  const printed = socket.getPeerCertificate().fingerprint256
  return printed ? certificateFingerprint(printed) : undefined
}

/**
 * Requires `Authorization: Bearer <key>` (the scheme in any case, RFC 9110), or a pinned client certificate,
 * on every route of `scope` (and only there: Fastify scopes hooks to the plugin that adds them). Keys are
 * known only by their SHA-256, looked up in one step. A caller with a pinned certificate must present it
 * with its key, unless certificates suffice alone. An address that fails too often is locked out for a
 * while (lockout.ts). The caller's name goes into every log line of the request, the access log included:
 * each read of personal data is attributable.
 */
export function requireApiKey(scope: HttpServer, keyHashes: ReadonlyMap<string, readonly ApiKey[]>): void {
  const failures = scope.failedAuthentications
  // A fixed map of keys (no certificates, never reloaded) is taken as it is.
  const callers = keyHashes instanceof Callers ? keyHashes : new Callers(keyHashes)
  scope.decorateRequest('caller', '')
  scope.addHook('onRequest', async (request, reply) => {
    const locked = failures.lockedFor(request.ip)
    if (locked > 0) {
      reply.header('retry-after', String(Math.ceil(locked / 1000)))
      throw new Refusal(httpProblems.tooManyRequests, 'Too many failed authentications from your address; wait before trying again.')
    }
    const certificate = verifiedCertificate(request.raw.socket)
    const outcome = authenticate(callers, request.headers.authorization, certificate ? callers.byCertificate(certificate) : undefined)
    if ('refused' in outcome) {
      failures.failed(request.ip)
      reply.header('www-authenticate', 'Bearer')
      throw new Refusal(httpProblems.unauthorized, outcome.refused)
    }
    request.caller = outcome.caller
    request.log = request.log.child({ caller: outcome.caller })
    reply.log = request.log
  })
}

/**
 * Who an operator signing in to a page (the syncer's console) is, by the key typed in and the client certificate
 * of the connection, under the same rules as a request's `Authorization` header; with the key's expiry, which
 * ends what the sign-in opens. A refusal counts towards the address's lockout, as any failed authentication.
 */
export function signIn(
  scope: HttpServer,
  keyHashes: ReadonlyMap<string, readonly ApiKey[]>,
  key: string,
  request: { ip: string; raw: { socket: Socket } }
): { caller: string; expiresAt: Date | undefined } | { refused: string } {
  const locked = scope.failedAuthentications.lockedFor(request.ip)
  if (locked > 0) return { refused: `Too many failed sign-ins from your address; wait ${Math.ceil(locked / 1000)} s before trying again.` }
  const callers = keyHashes instanceof Callers ? keyHashes : new Callers(keyHashes)
  const certificate = verifiedCertificate(request.raw.socket)
  const outcome = !KEY_SHAPE.test(key)
    ? { refused: 'That is not an operator key: one is 8 to 200 visible ASCII characters.' }
    : authenticate(callers, `Bearer ${key}`, certificate ? callers.byCertificate(certificate) : undefined)
  if ('refused' in outcome) {
    scope.failedAuthentications.failed(request.ip)
    return outcome
  }
  return { caller: outcome.caller, expiresAt: callers.byKey(apiKeyHash(key))?.expiresAt }
}

/** What a key may look like: visible ASCII, 8 to 200 characters (as `authenticate` reads the header). */
const KEY_SHAPE = /^[\x21-\x7e]{8,200}$/

/** Who the request comes from, by its key and the caller its verified certificate is pinned for; or why it is refused. */
function authenticate(
  callers: Callers,
  authorization: string | undefined,
  byCertificate: string | undefined
): { caller: string } | { refused: string } {
  const match = /^bearer ([\x21-\x7e]{8,200})$/i.exec(authorization ?? '')
  if (!match) {
    if (byCertificate && callers.certificateSuffices) return { caller: byCertificate }
    if (byCertificate) return { refused: 'Send your API key as "Authorization: Bearer <key>" with your client certificate.' }
    return { refused: 'Send your API key as "Authorization: Bearer <key>".' }
  }
  const known = callers.byKey(apiKeyHash(match[1]!))
  if (!known) return { refused: 'The API key is not known.' }
  if (known.expiresAt !== undefined && known.expiresAt.getTime() <= Date.now()) {
    return { refused: `The API key expired at ${known.expiresAt.toISOString()}; use your new one.` }
  }
  if (byCertificate !== undefined && byCertificate !== known.caller)
    return { refused: 'The client certificate and the API key are not the same caller’s.' }
  if (byCertificate === undefined && !callers.certificateSuffices && callers.certificatesOf(known.caller).length > 0) {
    return { refused: 'Present your client certificate with your API key.' }
  }
  return { caller: known.caller }
}
