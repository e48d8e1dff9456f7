import { Agent, request } from 'undici'
import { readCapped } from '../delivery/end-system-client.ts'
import { type EndSystemConfig, type ReconcileConfig, requestPath } from '../delivery/end-systems-config.ts'
import type { ReadBack } from './situations.ts'

/** A read that neither found the record nor said it is absent: the pair is counted as an error, not classified. */
export interface ReadError {
  kind: 'error'
  message: string
}

/** One page of a system's list: each record's CIF ID (and record id), and the cursor of the next page. */
export interface ListPage {
  records: { cifId: string; externalId: string | null }[]
  next: string | null
}

const READ_TIMEOUT_MS = 30_000
const MAX_ANSWER_BYTES = 1024 * 1024

/**
 * Reads one end system's records back, for reconciliation: a connection pool of its own (a run never takes
 * the lane's connections), the system's credentials and TLS settings.
 */
export class EndSystemReader {
  readonly #system: EndSystemConfig
  readonly #reconcile: ReconcileConfig
  readonly #agent: Agent

  constructor(system: EndSystemConfig, reconcile: ReconcileConfig) {
    this.#system = system
    this.#reconcile = reconcile
    this.#agent = new Agent({ connections: 4, keepAliveTimeout: 30_000, ...(system.tls ? { connect: { ...system.tls } } : {}) })
  }

  /** Whether the read needs the record id a create got (an UNLINKED pair without one cannot be read). */
  get readsByExternalId(): boolean {
    return this.#reconcile.read.path.includes('{externalId}')
  }

  /** Whether a read by CIF ID gives the record id too: what a create whose answer lacked it looks for (lane.ts). */
  get findsExternalId(): boolean {
    return !this.readsByExternalId && this.#reconcile.read.externalId !== undefined
  }

  async read(cifId: string, externalId: string | null, timeoutMs = READ_TIMEOUT_MS): Promise<ReadBack | ReadError> {
    if (this.readsByExternalId && !externalId) return { kind: 'unlinked' }
    const answer = await this.#get(requestPath(this.#reconcile.read.path, { cifId, externalId }), timeoutMs)
    if ('error' in answer) return { kind: 'error', message: answer.error }
    if (answer.status === 404 || answer.status === 410) return { kind: 'absent' }
    if (answer.status !== 200) return { kind: 'error', message: `${this.#system.name} answered ${answer.status} to a read` }
    const { record: recordAt, version, cifId: cifIdAt, externalId: externalIdAt } = this.#reconcile.read
    const record = recordAt ? await recordAt.evaluate(answer.body) : answer.body
    if (record === undefined || record === null) return { kind: 'absent' }
    const held = version ? await version.evaluate(record) : undefined
    const heldCifId = cifIdAt ? ((await cifIdAt.evaluate(record)) as unknown) : undefined
    const heldExternalId = externalIdAt ? ((await externalIdAt.evaluate(answer.body)) as unknown) : undefined
    return {
      kind: 'found',
      record,
      heldVersion: typeof held === 'number' ? held : undefined,
      heldCifId: cifIdAt ? String(heldCifId ?? '') : undefined,
      heldExternalId: typeof heldExternalId === 'string' || typeof heldExternalId === 'number' ? String(heldExternalId) : undefined
    }
  }

  /** One page of the system's list, from `cursor` ('' for the first). */
  async list(cursor: string): Promise<ListPage | ReadError> {
    const list = this.#reconcile.list
    if (!list) return { kind: 'error', message: `${this.#system.name} has no list operation` }
    const answer = await this.#get(list.path.replaceAll('{cursor}', encodeURIComponent(cursor)))
    if ('error' in answer) return { kind: 'error', message: answer.error }
    if (answer.status !== 200) return { kind: 'error', message: `${this.#system.name} answered ${answer.status} to a list` }
    const items = (await list.items.evaluate(answer.body)) as unknown
    const records = await Promise.all(
      (Array.isArray(items) ? items : items === undefined ? [] : [items]).map(async (item) => {
        const externalId = list.externalId ? ((await list.externalId.evaluate(item)) as unknown) : null
        return {
          cifId: String((await list.cifId.evaluate(item)) ?? ''),
          externalId: externalId === null || externalId === undefined ? null : String(externalId)
        }
      })
    )
    const next = (await list.next.evaluate(answer.body)) as unknown
    return { records, next: next === undefined || next === null || next === '' ? null : String(next) }
  }

  async #get(path: string, timeoutMs = READ_TIMEOUT_MS): Promise<{ status: number; body: unknown } | { error: string }> {
    try {
      const response = await request(this.#system.baseUrl + path, {
        method: 'GET',
        dispatcher: this.#agent,
        signal: AbortSignal.timeout(timeoutMs),
        headers: { accept: 'application/json', 'user-agent': 'cif-syncer', ...this.#system.authHeaders }
      })
      // Read no further than the bound: a system answering without end must not fill the syncer's memory.
      const { text, cutAtBytes } = await readCapped(response.body, MAX_ANSWER_BYTES)
      if (cutAtBytes !== undefined) return { error: `${this.#system.name} answered more than ${MAX_ANSWER_BYTES} bytes` }
      let body: unknown = null
      try {
        body = text ? JSON.parse(text) : null
      } catch {
        if (response.statusCode === 200) return { error: `${this.#system.name} answered a read with something not JSON` }
      }
      return { status: response.statusCode, body }
    } catch (error) {
      // The message names the system and the cause, never the answer: no personal data.
      const e = error as { name?: string; code?: string; cause?: { code?: string } }
      return {
        error: `${this.#system.name} could not be read: ${e.name === 'TimeoutError' ? 'timed out' : (e.cause?.code ?? e.code ?? 'network error')}`
      }
    }
  }

  async close(): Promise<void> {
    await this.#agent.close()
  }
}
