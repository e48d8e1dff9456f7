import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { type QueuedDelivery, supersessions } from '../../src/syncer/delivery/coalescing.ts'

/** A customer's queue for one system, in the order it goes: versions ascending, any of them a create. */
const queue = fc.array(fc.record({ gap: fc.integer({ min: 0, max: 3 }), create: fc.boolean() }), { maxLength: 12 }).map((entries) =>
  entries.map(
    ({ create }, i): QueuedDelivery => ({
      deliveryId: String(100 + i),
      // Ascending, equal versions allowed (a repair delivery may carry a version already queued).
      version: entries.slice(0, i + 1).reduce((sum, e) => sum + e.gap, 0),
      operation: create ? 'create' : 'update'
    })
  )
)

describe('coalescing a customer’s queued versions', () => {
  it('sends the create and the newest of versions 1-10, the others superseded by 10', () => {
    const versions = Array.from(
      { length: 10 },
      (_, i): QueuedDelivery => ({
        deliveryId: `d${i + 1}`,
        version: i + 1,
        operation: i === 0 ? 'create' : 'update'
      })
    )
    const decided = supersessions(versions)
    expect(decided.map((s) => s.deliveryId)).toEqual(['d2', 'd3', 'd4', 'd5', 'd6', 'd7', 'd8', 'd9'])
    expect(new Set(decided.map((s) => JSON.stringify(s.by)))).toEqual(new Set([JSON.stringify({ deliveryId: 'd10', version: 10 })]))
  })

  it('never supersedes the newest or a create, and supersedes every other update, by the newest', () => {
    fc.assert(
      fc.property(queue, (q) => {
        const decided = supersessions(q)
        const superseded = new Set(decided.map((s) => s.deliveryId))
        const newest = q.at(-1)
        if (newest) expect(superseded.has(newest.deliveryId)).toBe(false)
        for (const d of q.slice(0, -1)) expect(superseded.has(d.deliveryId)).toBe(d.operation === 'update')
        for (const s of decided) expect(s.by).toEqual({ deliveryId: newest!.deliveryId, version: newest!.version })
      })
    )
  })

  it('keeps what is sent in its order, with every create before the updates after it, and settles in one round', () => {
    fc.assert(
      fc.property(queue, (q) => {
        const superseded = new Set(supersessions(q).map((s) => s.deliveryId))
        const sent = q.filter((d) => !superseded.has(d.deliveryId))
        // What is sent is a subsequence of the queue: nothing overtakes, so a create still precedes the updates behind it.
        expect(sent).toEqual(q.filter((d) => sent.includes(d)))
        expect(sent.filter((d) => d.operation === 'update').length).toBeLessThanOrEqual(1)
        // The version sent last is the newest queued: nothing of the customer's latest data is lost.
        expect(sent.at(-1)).toEqual(q.at(-1))
        // Deciding again on what is left supersedes nothing more.
        expect(supersessions(sent)).toEqual([])
      })
    )
  })
})
