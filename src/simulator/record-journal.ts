import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, type WriteStream, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

/** One record a simulated end system holds. */
export interface StoredRecord {
  id: string
  cifId: string
  payload: Record<string, unknown>
  version: number
  createdAt: string
  updatedAt: string
  /** The W3C traceparent the last write of this record came with, as a real system's tracing would see it. */
  traceparent: string | null
}

/**
 * What a simulated end system holds, kept in a file so that it survives a restart of the local stack (a
 * real end system keeps its records too: without them every update of an earlier customer is a 404). One
 * JSON line per record written, the last line of a record winning (a deleted one's line says `deleted`); each
 * start rewrites the file with one line per record. A file, not PostgreSQL: the simulator stands in for systems outside the syncer's
 * database, and the benchmark's simulator keeps no file at all.
 */
export class RecordJournal {
  readonly #file: string
  #out: WriteStream | undefined

  constructor(file: string) {
    this.#file = file
  }

  /** The records the file holds, once each, and the file rewritten to hold just them. */
  load(): StoredRecord[] {
    const byId = new Map<string, StoredRecord>()
    if (existsSync(this.#file)) {
      for (const line of readFileSync(this.#file, 'utf8').split('\n')) {
        if (!line) continue
        try {
          const record = JSON.parse(line) as StoredRecord | { id: string; deleted: true }
          if ('deleted' in record) byId.delete(record.id)
          else byId.set(record.id, record)
        } catch {
          // A line cut short by a process killed mid-write: the records before it stand.
        }
      }
    }
    const records = [...byId.values()]
    mkdirSync(dirname(this.#file), { recursive: true })
    const compacted = `${this.#file}.new`
    writeFileSync(compacted, records.map((record) => `${JSON.stringify(record)}\n`).join(''))
    renameSync(compacted, this.#file)
    return records
  }

  write(record: StoredRecord): void {
    this.#out ??= createWriteStream(this.#file, { flags: 'a' })
    this.#out.write(`${JSON.stringify(record)}\n`)
  }

  /** A record deleted (drift injected for reconciliation): gone after a restart too. */
  forget(id: string): void {
    this.#out ??= createWriteStream(this.#file, { flags: 'a' })
    this.#out.write(`${JSON.stringify({ id, deleted: true })}\n`)
  }

  /** Forgets every record (the simulator's reset). */
  async clear(): Promise<void> {
    await this.close()
    writeFileSync(this.#file, '')
  }

  async close(): Promise<void> {
    const out = this.#out
    this.#out = undefined
    if (out) await new Promise<void>((resolve) => out.end(resolve))
  }
}
