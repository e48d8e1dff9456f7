import { setTimeout as sleep } from 'node:timers/promises'

/** A wait that outlived its bound; the operation itself may still finish later, unobserved. */
export class DeadlineExceeded extends Error {
  override name = 'DeadlineExceeded'
}

/**
 * Settles like `promise`, or rejects with DeadlineExceeded after `ms`. Kafka client calls can wait
 * forever on a broker that went away; nothing on the delivery path may wait on one without a bound.
 */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  promise.catch(() => {}) // once abandoned, its outcome no longer matters
  const timer = new AbortController()
  const expired = sleep(ms, undefined, { signal: timer.signal, ref: false }).then(
    () => {
      throw new DeadlineExceeded(`${what} did not finish within ${ms / 1000} s`)
    },
    () => undefined as never
  )
  try {
    return await Promise.race([promise, expired])
  } finally {
    timer.abort()
  }
}

/** Waits for `promise` to settle either way, but at most `ms`: for closing things that may never close. */
export async function settleWithin(promise: Promise<unknown> | undefined, ms: number): Promise<void> {
  if (promise) await withDeadline(promise, ms, 'closing').catch(() => {})
}
