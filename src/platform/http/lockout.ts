/**
 * Failed authentications per client address: past `limit` within `periodMs`, the address is refused
 * (429, whatever key it sends) until the period ends, so keys cannot be guessed at speed.
 */
export class FailedAuthentications {
  readonly #limit: number
  readonly #periodMs: number
  readonly #byAddress = new Map<string, { failures: number; since: number }>()

  constructor(limit: number, periodMs: number) {
    this.#limit = limit
    this.#periodMs = periodMs
  }

  /** Milliseconds until the address may try again; 0 when it may now. */
  lockedFor(address: string, now = Date.now()): number {
    const entry = this.#byAddress.get(address)
    if (!entry) return 0
    const left = entry.since + this.#periodMs - now
    if (left <= 0) {
      this.#byAddress.delete(address)
      return 0
    }
    return entry.failures >= this.#limit ? left : 0
  }

  failed(address: string, now = Date.now()): void {
    const entry = this.#byAddress.get(address)
    if (!entry || entry.since + this.#periodMs <= now) this.#byAddress.set(address, { failures: 1, since: now })
    else entry.failures++
    // Addresses seen once are forgotten with their period, so the map cannot grow without bound.
    if (this.#byAddress.size > 100_000)
      for (const [key, value] of this.#byAddress) if (value.since + this.#periodMs <= now) this.#byAddress.delete(key)
  }
}
