import { describeError } from './errors.ts'
import type { Logger } from './logger.ts'

export interface Backoff {
  /** The pause after the first failure. */
  initialMs: number
  /** No pause is longer. */
  maxMs: number
  /** Spread each pause by ± this fraction (0.2: 80% to 120%), so that many waiters do not come back together. */
  jitter?: number
}

/**
 * The pause after `failures` failures in a row (0: after the first): `initialMs`, doubling per failure,
 * jittered, never above `maxMs`. Every retry loop of the project waits with this.
 */
export function backoffMs(failures: number, { initialMs, maxMs, jitter = 0 }: Backoff, random: () => number = Math.random): number {
  const exponential = Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(failures, 0), 30))
  return Math.min(maxMs, Math.round(exponential * (1 - jitter + 2 * jitter * random())))
}

/**
 * A run of failures of one thing, logged so that an outage is seen without flooding the log: the first
 * failure, then every `every`-th, then one line when it works again, with how many failures there were.
 */
export class FailureLog {
  readonly #log: Logger
  readonly #what: string
  readonly #every: number
  #failures = 0

  constructor(log: Logger, what: string, every = 20) {
    this.#log = log
    this.#what = what
    this.#every = every
  }

  get failures(): number {
    return this.#failures
  }

  failed(error?: unknown, context: Record<string, unknown> = {}): void {
    if (this.#failures++ % this.#every !== 0) return
    const described = error === undefined ? {} : { error: describeError(error) }
    this.#log.warn({ ...context, ...described, failures: this.#failures }, this.#what)
  }

  /** Ends the run; `message`, if given, is logged when there was one. */
  succeeded(message?: string): void {
    if (this.#failures > 0 && message) this.#log.info({ failures: this.#failures }, message)
    this.#failures = 0
  }
}
