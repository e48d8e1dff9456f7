import type { SyncerDb } from '../tables.ts'
import { type FinishedAttempt, recordAttempts } from './delivery-store.ts'

const MAX_BATCH = 200

/**
 * Gathers finished attempts from every lane and writes them a batch at a time: while one batch commits,
 * the next one fills. Under load this turns a transaction per attempt into a transaction per batch;
 * alone, an attempt is written at once.
 */
export class AttemptRecorder {
  readonly #db: SyncerDb
  #queue: { finished: FinishedAttempt; resolve: (current: boolean) => void; reject: (error: unknown) => void }[] = []
  #writing: Promise<void> | undefined

  constructor(db: SyncerDb) {
    this.#db = db
  }

  /** Resolves once the attempt is committed: true if the delivery was still this attempt's. */
  record(finished: FinishedAttempt): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ finished, resolve, reject })
      this.#write()
    })
  }

  #write(): void {
    if (this.#writing || this.#queue.length === 0) return
    const batch = this.#queue.splice(0, MAX_BATCH)
    this.#writing = recordAttempts(
      this.#db,
      batch.map((entry) => entry.finished)
    )
      .then(
        (current) => {
          for (const [i, entry] of batch.entries()) entry.resolve(current[i] ?? false)
        },
        (error: unknown) => {
          for (const entry of batch) entry.reject(error)
        }
      )
      .finally(() => {
        this.#writing = undefined
        this.#write()
      })
  }
}
