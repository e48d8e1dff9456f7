import type { DeliveryOperation } from '../tables.ts'

/**
 * Coalescing, for an end system that takes the full record on every update (`coalesce: true`): of a
 * customer's versions queued for it, only the newest needs sending, as it holds everything the ones before
 * it held. The others are superseded by it.
 *
 * A create is never superseded: an update cannot make the record an update is sent to (its path holds the
 * record id the create brings back), so a queued create goes first, as it is, and the newest version after
 * it. Versions 1 (create) to 10 queued: 1 is sent, 2-9 are superseded by 10, and 10 is sent once 1 has
 * succeeded. A create carrying the newest version instead would save a call, but would send data under the
 * create's Idempotency-Key that a retry of the same create already sent does not hold.
 */

/** One waiting delivery of a customer to one end system. */
export interface QueuedDelivery {
  deliveryId: string
  version: number
  operation: DeliveryOperation
}

export interface Supersession {
  deliveryId: string
  /** The delivery that is sent instead, and its version. */
  by: { deliveryId: string; version: number }
}

/**
 * Which of `queue` (a customer's waiting deliveries to one end system, in the order they go: by version,
 * then id) are superseded, and by which. The newest is never superseded, nor is a create.
 */
export function supersessions(queue: readonly QueuedDelivery[]): Supersession[] {
  const newest = queue.at(-1)
  if (!newest) return []
  const by = { deliveryId: newest.deliveryId, version: newest.version }
  return queue.slice(0, -1).flatMap((d) => (d.operation === 'update' ? [{ deliveryId: d.deliveryId, by }] : []))
}
