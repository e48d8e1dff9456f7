/**
 * When a lane claims due deliveries. Claiming the moment a slot freed made many small claims under load, each
 * a statement and a lease write, and the attempts finishing one by one made small recording batches: in a
 * drain, 2,600 claims of about nine deliveries for 22,500. Under load a lane now gathers freed slots until
 * half of its concurrency is free, but never keeps a slot idle longer than CLAIM_GATHER_MS (a slow end
 * system's slots free one by one and must not wait for the others); an idle lane claims at once. Measured in
 * docs/performance.md ("Drain: session 12").
 */
export const CLAIM_GATHER_MS = 20

export type ClaimDecision =
  /** No call may start (every slot busy, or the circuit open). */
  | { kind: 'none' }
  | { kind: 'claim' }
  /** Slots are free but few, and recently: ask again in `forMs`. */
  | { kind: 'gather'; forMs: number }

export interface LaneSlots {
  /** Calls that may start now (the end system client's `callsAllowed`). */
  allowed: number
  inFlight: number
  concurrency: number
  /** When the lane first chose to gather, if it is gathering. */
  gatheringSinceMs: number | undefined
  nowMs: number
}

export function decideClaim({ allowed, inFlight, concurrency, gatheringSinceMs, nowMs }: LaneSlots): ClaimDecision {
  if (allowed <= 0) return { kind: 'none' }
  if (inFlight === 0 || allowed >= Math.ceil(concurrency / 2)) return { kind: 'claim' }
  const gathered = gatheringSinceMs === undefined ? 0 : nowMs - gatheringSinceMs
  return gathered >= CLAIM_GATHER_MS ? { kind: 'claim' } : { kind: 'gather', forMs: CLAIM_GATHER_MS - gathered }
}
