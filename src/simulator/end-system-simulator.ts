import { once } from 'node:events'
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import type { RecordJournal, StoredRecord } from './record-journal.ts'

/** The shape of one simulated end system's API: its own paths, payloads and record ids. */
export interface SimulatedSystemShape {
  name: string
  /** Path of the collection, e.g. /customers: POST creates, <collection>/{id} updates. */
  collection: string
  updateMethod: 'PUT' | 'PATCH'
  /** Which payload field holds the CIF ID, so a second create for the same customer is a 409. */
  cifIdField: string
  idPrefix: string
  /** The create answer, built around the new record id. */
  createdBody: (id: string) => unknown
}

export const simulatedSystems: SimulatedSystemShape[] = [
  {
    name: 'core-banking',
    collection: '/customers',
    updateMethod: 'PUT',
    cifIdField: 'customerNumber',
    idPrefix: 'CB',
    createdBody: (id) => ({ customerId: id, status: 'ACTIVE' })
  },
  {
    name: 'crm',
    collection: '/contacts',
    updateMethod: 'PATCH',
    cifIdField: 'externalRef',
    idPrefix: 'CRM',
    createdBody: (id) => ({ contact: { id } })
  },
  { name: 'cards', collection: '/cardholders', updateMethod: 'PUT', cifIdField: 'cif', idPrefix: 'CH', createdBody: (id) => ({ cardholderRef: id }) },
  // Not in the shipped end systems file: the system a newcomer adds and backfills (README).
  { name: 'lending', collection: '/borrowers', updateMethod: 'PUT', cifIdField: 'cif', idPrefix: 'LN', createdBody: (id) => ({ borrowerId: id }) }
]

/** Drift injected at run time, so that reconciliation has something to find (see SimulatedEndSystem.drift). */
export type Drift =
  | { kind: 'delete'; cifId: string }
  | { kind: 'alter'; cifId: string; fields: Record<string, unknown> }
  | { kind: 'orphan'; cifId: string; fields?: Record<string, unknown> | undefined }
  | { kind: 'lose-creates'; count: number }

export type Fault =
  | { mode: 'none' }
  | { mode: 'down' }
  | { mode: 'status'; status: number; message?: string | undefined }
  | { mode: 'slow'; delayMs: number }
  | { mode: 'fail-next'; count: number; status: number; message?: string | undefined }
  | Misbehaviour

/**
 * Answers a real end system has been seen to give (docs/reliability.md, "Misbehaving end systems"). Each
 * concerns the deliveries it names (never the reads), for the next `count` of them, or until cleared.
 * "Done" ones store the request as asked and only answer it wrongly, so a retry under the same
 * Idempotency-Key is answered from what was stored, never stored twice.
 */
export type Misbehaviour = { count?: number | undefined } & MisbehaviourKind

type MisbehaviourKind =
  /** Creates and updates, done: 200 with an HTML page. */
  | { mode: 'not-json' }
  /** Creates, done: 201 with JSON that holds no record id. */
  | { mode: 'no-record-id' }
  /** With `status`, nothing done and that status answered; without, done: the answer padded to `megabytes`. */
  | { mode: 'huge-body'; megabytes: number; status?: number | undefined }
  /** Not done: a redirect to `location` (by default the same path under /moved). */
  | { mode: 'redirect'; status: 301 | 302 | 303 | 307 | 308; location?: string | undefined }
  /** Done: the answer written a byte a second. */
  | { mode: 'trickle' }
  /** Done: the headers and half the answer, then the connection closed. */
  | { mode: 'cut-after-headers' }
  /** Creates, not done: 409 as if the customer were there, naming `recordId` if given. */
  | { mode: 'conflict-unknown'; recordId?: string | undefined }
  /** Not done: 429 with Retry-After in seconds or as the HTTP date that many seconds ahead. */
  | { mode: 'rate-limit'; retryAfterSeconds: number; as: 'seconds' | 'date' }

export const misbehaviourModes = [
  'not-json',
  'no-record-id',
  'huge-body',
  'redirect',
  'trickle',
  'cut-after-headers',
  'conflict-unknown',
  'rate-limit'
] as const satisfies readonly Misbehaviour['mode'][]
const isMisbehaviour = (fault: Fault): fault is Misbehaviour => (misbehaviourModes as readonly string[]).includes(fault.mode)
/** Whether a misbehaviour answers a call before it is done (nothing stored). */
const answersUndone = (m: Misbehaviour): boolean =>
  m.mode === 'redirect' || m.mode === 'conflict-unknown' || m.mode === 'rate-limit' || (m.mode === 'huge-body' && m.status !== undefined)
/** The misbehaviours that only creates meet. */
const createsOnly = new Set<Misbehaviour['mode']>(['no-record-id', 'conflict-unknown'])
const MEGABYTE = 1024 * 1024

export interface Receipt {
  /** The call's place in this system's log, from 1, with no gaps: a reader paging through sees what it missed. */
  seq: number
  at: number
  method: string
  path: string
  cifId: string | undefined
  /** The customer version the payload names, when this system's payload carries one. */
  version: number | undefined
  idempotencyKey: string | undefined
  status: number
  /**
   * Whether the system keeps an answer for this call's key, which every later call with the key gets again
   * (a replay): an answer below 500 to a call it carried out. An answer a fault or misbehaviour gave before
   * doing anything (a 429, a redirect) is not kept: the next call with the key is carried out.
   */
  kept: boolean
  /** Of a misbehaving answer written bit by bit: the bytes written before it ended or the caller hung up. */
  bytesWritten?: number
}

const MAX_RECEIPTS = 200_000

/**
 * One simulated end system on its own port: stores what it receives, honours Idempotency-Key (a repeat
 * is counted and answered as the first time, not stored twice), and misbehaves on request. "down" closes
 * its port, so callers see a real connection refused.
 */
export class SimulatedEndSystem {
  readonly shape: SimulatedSystemShape
  readonly records = new Map<string, StoredRecord>()
  /** The last MAX_RECEIPTS receipts, a ring: the oldest is overwritten, nothing is shifted. */
  #receipts: Receipt[] = []
  #oldestReceipt = 0
  received = 0
  repeated = 0
  #lastSeq = 0
  fault: Fault = { mode: 'none' }
  #answers = new Map<string, { status: number; body: unknown }>()
  #byCifId = new Map<string, string>()
  #next = 1
  /** Creates still to be lost: answered 201 with a record id, never stored. */
  #createsToLose = 0
  #server: Server
  #host: string
  #port: number
  readonly #requiredAuthorization: string | undefined
  readonly #journal: RecordJournal | undefined

  /** With `journal`, the records are kept across restarts (record-journal.ts); without, in memory only. */
  constructor(shape: SimulatedSystemShape, host: string, port: number, requiredAuthorization?: string, journal?: RecordJournal) {
    this.shape = shape
    this.#host = host
    this.#port = port
    this.#requiredAuthorization = requiredAuthorization
    this.#journal = journal
    for (const record of journal?.load() ?? []) this.#keep(record)
    this.#server = this.#newServer()
  }

  #keep(record: StoredRecord): void {
    this.records.set(record.id, record)
    this.#byCifId.set(record.cifId, record.id)
    const number = Number(record.id.slice(this.shape.idPrefix.length + 1))
    if (Number.isInteger(number) && number >= this.#next) this.#next = number + 1
  }

  /** Lets the journal write what it holds (the simulator is stopping). */
  async closeJournal(): Promise<void> {
    await this.#journal?.close()
  }

  get url(): string {
    return `http://${this.#host}:${this.#port}`
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(this.#port, this.#host, () => {
        this.#port = (this.#server.address() as { port: number }).port
        resolve()
      })
    })
  }

  async stop(): Promise<void> {
    if (!this.#server.listening) return
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  async setFault(fault: Fault): Promise<void> {
    const wasDown = this.fault.mode === 'down'
    this.fault = fault
    if (fault.mode === 'down' && !wasDown) {
      await this.stop()
      this.#server = this.#newServer()
    } else if (fault.mode !== 'down' && wasDown) {
      await this.start()
    }
  }

  async reset(): Promise<void> {
    await this.#journal?.clear()
    this.records.clear()
    this.#receipts = []
    this.#oldestReceipt = 0
    this.#lastSeq = 0
    this.#answers.clear()
    this.#byCifId.clear()
    this.received = 0
    this.repeated = 0
    this.#createsToLose = 0
  }

  /** What was answered, oldest first (the last MAX_RECEIPTS calls). */
  get receipts(): Receipt[] {
    return [...this.#receipts.slice(this.#oldestReceipt), ...this.#receipts.slice(0, this.#oldestReceipt)]
  }

  /** Up to `limit` receipts after `seq`, oldest first: paged, so a reader keeps up with a long run's log. */
  receiptsAfter(seq: number, limit: number): Receipt[] {
    const count = this.#receipts.length
    // Seqs are consecutive, so the receipt after `seq` is found by arithmetic, not by a search.
    const oldestSeq = this.#lastSeq - count + 1
    const from = Math.max(seq + 1, oldestSeq) - oldestSeq
    const page: Receipt[] = []
    for (let i = from; i < count && page.length < limit; i++) page.push(this.#receipts[(this.#oldestReceipt + i) % count]!)
    return page
  }

  recordForCif(cifId: string): StoredRecord | undefined {
    const id = this.#byCifId.get(cifId)
    return id ? this.records.get(id) : undefined
  }

  /**
   * Makes the system drift from what it was sent: a record deleted (as a restore from an old backup would),
   * fields altered (by hand), a record for a CIF ID nobody published, or the next creates answered 201 and
   * lost. Returns the record touched, or undefined when the CIF ID has none.
   */
  drift(drift: Drift): StoredRecord | undefined {
    if (drift.kind === 'lose-creates') {
      this.#createsToLose = drift.count
      return undefined
    }
    const now = new Date().toISOString()
    if (drift.kind === 'orphan') {
      const id = this.#newId()
      const record = {
        id,
        cifId: drift.cifId,
        payload: { [this.shape.cifIdField]: drift.cifId, ...drift.fields },
        version: 1,
        createdAt: now,
        updatedAt: now,
        traceparent: null
      }
      this.#keep(record)
      this.#journal?.write(record)
      return record
    }
    const record = this.recordForCif(drift.cifId)
    if (!record) return undefined
    if (drift.kind === 'delete') {
      this.records.delete(record.id)
      this.#byCifId.delete(drift.cifId)
      this.#journal?.forget(record.id)
    } else {
      record.payload = { ...record.payload, ...drift.fields }
      record.updatedAt = now
      this.#journal?.write(record)
    }
    return record
  }

  #newId(): string {
    return `${this.shape.idPrefix}-${String(this.#next++).padStart(7, '0')}`
  }

  /**
   * Reads for reconciliation: one record by its id or by CIF ID (`?<cifIdField>=`), or a page of all of them in id order (`after` the last
   * id of the previous page), each as { id, version, record }.
   */
  #read(url: string): [number, unknown] {
    const { pathname, searchParams } = new URL(url, 'http://simulator')
    const { collection } = this.shape
    const shown = (record: StoredRecord) => ({ id: record.id, version: record.version, updatedAt: record.updatedAt, record: record.payload })
    const byCifId = searchParams.get(this.shape.cifIdField)
    if (pathname === collection && byCifId !== null) {
      const record = this.recordForCif(byCifId)
      return record ? [200, shown(record)] : [404, { error: `no record for ${byCifId}` }]
    }
    if (pathname === collection) {
      const after = searchParams.get('after') ?? ''
      const limit = Math.min(Math.max(Number(searchParams.get('limit')) || 100, 1), 1000)
      const items: StoredRecord[] = []
      // Ids are made in ascending order and the map keeps insertion order: the page is the next `limit` of them.
      for (const record of this.records.values()) {
        if (record.id <= after) continue
        items.push(record)
        if (items.length === limit) break
      }
      return [200, { items: items.map(shown), next: items.length === limit ? items.at(-1)!.id : null }]
    }
    if (pathname.startsWith(`${collection}/`)) {
      const id = decodeURIComponent(pathname.slice(collection.length + 1))
      const record = this.records.get(id)
      return record ? [200, shown(record)] : [404, { error: `no record ${id}` }]
    }
    return [404, { error: `no route GET ${pathname}` }]
  }

  #newServer(): Server {
    const server = createServer((req, res) => {
      this.#handle(req, res).catch(() => {
        if (!res.headersSent) send(res, 500, JSON.stringify({ error: 'simulator failure' }))
      })
    })
    server.keepAliveTimeout = 60_000
    return server
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req)
    this.received++
    const key = header(req, 'idempotency-key')
    let payload: Record<string, unknown> = {}
    try {
      payload = body ? JSON.parse(body) : {}
    } catch {
      return this.#answer(req, res, undefined, undefined, key, 400, { error: 'body is not JSON' })
    }
    const cifId = typeof payload[this.shape.cifIdField] === 'string' ? (payload[this.shape.cifIdField] as string) : undefined
    const version = typeof payload.version === 'number' ? payload.version : undefined

    if (this.#requiredAuthorization && header(req, 'authorization') !== this.#requiredAuthorization) {
      return this.#answer(req, res, cifId, version, key, 401, { error: 'missing or wrong credentials' })
    }
    const fault = this.fault
    if (fault.mode === 'slow') await sleep(fault.delayMs)
    if (fault.mode === 'status') return this.#answer(req, res, cifId, version, key, fault.status, { error: fault.message ?? 'simulated failure' })
    if (fault.mode === 'fail-next' && fault.count > 0) {
      fault.count--
      if (fault.count === 0) this.fault = { mode: 'none' }
      return this.#answer(req, res, cifId, version, key, fault.status, { error: fault.message ?? 'simulated failure' })
    }

    if (req.method === 'GET') return this.#answer(req, res, cifId, version, key, ...this.#read(req.url ?? '/'))
    const path = (req.url ?? '/').split('?')[0]!
    const misbehaviour = this.#misbehaviourFor(req.method === 'POST' && path === this.shape.collection)
    if (misbehaviour && answersUndone(misbehaviour)) return this.#misanswer(misbehaviour, req, res, cifId, version, key, 0, undefined)
    if (key) {
      const first = this.#answers.get(key)
      if (first) {
        this.repeated++
        if (misbehaviour) return this.#misanswer(misbehaviour, req, res, cifId, version, key, first.status, first.body)
        return this.#answer(req, res, cifId, version, key, first.status, first.body)
      }
    }
    const [status, answer] = this.#apply(req.method ?? 'GET', path, payload, cifId, header(req, 'traceparent') ?? null)
    if (key && status < 500) this.#answers.set(key, { status, body: answer })
    if (misbehaviour) return this.#misanswer(misbehaviour, req, res, cifId, version, key, status, answer)
    return this.#answer(req, res, cifId, version, key, status, answer)
  }

  /** The misbehaviour this delivery call meets, if any, counted off. */
  #misbehaviourFor(isCreate: boolean): Misbehaviour | undefined {
    const misbehaviour = this.fault
    if (!isMisbehaviour(misbehaviour)) return undefined
    if (createsOnly.has(misbehaviour.mode) && !isCreate) return undefined
    if (misbehaviour.count !== undefined && --misbehaviour.count <= 0) this.fault = { mode: 'none' }
    return misbehaviour
  }

  /**
   * Answers a delivery call wrongly: `status` and `answer` are what the system would have said (the request
   * was done), or 0 and undefined when the misbehaviour answers before anything is done.
   */
  async #misanswer(
    misbehaviour: Misbehaviour,
    req: IncomingMessage,
    res: ServerResponse,
    cifId: string | undefined,
    version: number | undefined,
    key: string | undefined,
    status: number,
    answer: unknown
  ): Promise<void> {
    const failed = status < 200 || status >= 300
    const receipt = (sent: number) => this.#receipt(req, cifId, version, key, sent)
    switch (misbehaviour.mode) {
      case 'not-json':
        if (failed) return this.#answer(req, res, cifId, version, key, status, answer)
        receipt(200)
        return send(res, 200, '<html><body><h1>OK</h1><p>Your request has been processed.</p></body></html>', { 'content-type': 'text/html' })
      case 'no-record-id':
        if (failed) return this.#answer(req, res, cifId, version, key, status, answer)
        return this.#answer(req, res, cifId, version, key, 201, { status: 'created' })
      case 'redirect': {
        const location = misbehaviour.location ?? `${this.url}/moved${req.url ?? '/'}`
        receipt(misbehaviour.status)
        return send(res, misbehaviour.status, JSON.stringify({ error: 'moved' }), { 'content-type': 'application/json', location })
      }
      case 'conflict-unknown': {
        const named = misbehaviour.recordId === undefined ? {} : (this.shape.createdBody(misbehaviour.recordId) as object)
        return this.#answer(req, res, cifId, version, key, 409, { error: 'this customer exists already', ...named })
      }
      case 'rate-limit': {
        const { retryAfterSeconds } = misbehaviour
        const retryAfter = misbehaviour.as === 'seconds' ? String(retryAfterSeconds) : new Date(Date.now() + retryAfterSeconds * 1000).toUTCString()
        receipt(429)
        return send(res, 429, JSON.stringify({ error: 'too many requests' }), { 'content-type': 'application/json', 'retry-after': retryAfter })
      }
      case 'huge-body': {
        const sent = misbehaviour.status ?? status
        const head = misbehaviour.status === undefined ? JSON.stringify(answer).replace(/}$/, ',') : '{"error":"simulated failure",'
        const parts = [`${head}"padding":"`, misbehaviour.megabytes * MEGABYTE, '"}'] as const
        return writeSlowly(res, sent, parts, receipt(sent), { chunk: 64 * 1024 })
      }
      case 'trickle':
        return writeSlowly(res, status, [JSON.stringify(answer)], receipt(status), { chunk: 1, everyMs: 1000 })
      case 'cut-after-headers': {
        const text = JSON.stringify(answer)
        receipt(status)
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
        res.write(text.slice(0, Math.floor(text.length / 2)))
        // Written out before the connection goes, so the caller has the headers and half an answer.
        await new Promise<void>((resolve) => res.write('', () => resolve()))
        res.socket?.destroy()
        return
      }
    }
  }

  #apply(method: string, path: string, payload: Record<string, unknown>, cifId: string | undefined, traceparent: string | null): [number, unknown] {
    const { collection } = this.shape
    const now = new Date().toISOString()
    if (method === 'POST' && path === collection) {
      if (!cifId) return [422, { error: `${this.shape.cifIdField} is required` }]
      const existing = this.#byCifId.get(cifId)
      if (existing) return [409, { error: 'this customer exists already', ...(this.shape.createdBody(existing) as object) }]
      const id = this.#newId()
      if (this.#createsToLose > 0) {
        this.#createsToLose--
        return [201, this.shape.createdBody(id)]
      }
      const record = { id, cifId, payload, version: Number(payload.version ?? 1), createdAt: now, updatedAt: now, traceparent }
      this.#keep(record)
      this.#journal?.write(record)
      return [201, this.shape.createdBody(id)]
    }
    if (method === this.shape.updateMethod && path.startsWith(`${collection}/`)) {
      const id = decodeURIComponent(path.slice(collection.length + 1))
      const record = this.records.get(id)
      if (!record) return [404, { error: `no record ${id}` }]
      record.payload = this.shape.updateMethod === 'PATCH' ? { ...record.payload, ...payload } : payload
      record.version = Number(payload.version ?? record.version + 1)
      record.updatedAt = now
      record.traceparent = traceparent
      this.#journal?.write(record)
      return [200, this.shape.createdBody(id)]
    }
    return [404, { error: `no route ${method} ${path}` }]
  }

  #answer(
    req: IncomingMessage,
    res: ServerResponse,
    cifId: string | undefined,
    version: number | undefined,
    key: string | undefined,
    status: number,
    body: unknown
  ): void {
    this.#receipt(req, cifId, version, key, status)
    send(res, status, JSON.stringify(body))
  }

  #receipt(req: IncomingMessage, cifId: string | undefined, version: number | undefined, key: string | undefined, status: number): Receipt {
    const receipt: Receipt = {
      seq: ++this.#lastSeq,
      at: Date.now(),
      method: req.method ?? '',
      path: req.url ?? '',
      cifId,
      version,
      idempotencyKey: key,
      status,
      kept: key !== undefined && this.#answers.has(key)
    }
    if (this.#receipts.length < MAX_RECEIPTS) this.#receipts.push(receipt)
    else {
      this.#receipts[this.#oldestReceipt] = receipt
      this.#oldestReceipt = (this.#oldestReceipt + 1) % MAX_RECEIPTS
    }
    return receipt
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** By events rather than `for await`: the async iterator costs more than the rest of a small request. */
function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => {
      body += chunk
    })
    req.on('end', () => resolve(body))
    req.on('error', reject)
    req.on('close', () => {
      // The caller went away mid-body (an Error only then: its stack trace would cost on every request).
      if (!req.complete) reject(new Error('the request closed before its body ended'))
    })
  })
}

function send(res: ServerResponse, status: number, text: string, headers: OutgoingHttpHeaders = { 'content-type': 'application/json' }): void {
  res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

/**
 * An answer written `chunk` bytes at a time, `everyMs` apart or as fast as the caller reads: its parts are
 * text, or a count of padding bytes ("x"), so that 50 MB are never held. Stops when the caller hangs up;
 * `receipt.bytesWritten` says how far it got.
 */
async function writeSlowly(
  res: ServerResponse,
  status: number,
  parts: readonly (string | number)[],
  receipt: Receipt,
  { chunk, everyMs }: { chunk: number; everyMs?: number }
): Promise<void> {
  const length = parts.reduce<number>((sum, part) => sum + (typeof part === 'number' ? part : Buffer.byteLength(part)), 0)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': length })
  res.flushHeaders()
  // Never rejected: an error on the response ends the write all the same, and must not go unhandled.
  const closed = once(res, 'close').catch(() => undefined)
  const padding = Buffer.alloc(chunk, 'x')
  receipt.bytesWritten = 0
  for (const part of parts) {
    const bytes = typeof part === 'number' ? undefined : Buffer.from(part)
    const size = bytes ? bytes.length : (part as number)
    for (let at = 0; at < size; at += chunk) {
      if (res.destroyed) return
      const piece = bytes ? bytes.subarray(at, at + chunk) : padding.subarray(0, Math.min(chunk, size - at))
      receipt.bytesWritten += piece.length
      const more = res.write(piece)
      if (everyMs) await Promise.race([sleep(everyMs), closed])
      else if (!more) await Promise.race([once(res, 'drain'), closed])
    }
  }
  res.end()
}
