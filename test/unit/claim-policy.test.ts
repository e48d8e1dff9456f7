import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CLAIM_GATHER_MS, decideClaim, type LaneSlots } from '../../src/syncer/delivery/claim-policy.ts'

/** A lane's slots at some moment: `allowed` never more than the free slots; gathering, if at all, since up to a minute ago. */
const slots = fc
  .record({
    concurrency: fc.integer({ min: 1, max: 200 }),
    busy: fc.double({ min: 0, max: 1, noNaN: true }),
    circuitShut: fc.boolean(),
    gatheredMs: fc.option(fc.integer({ min: 0, max: 60_000 }), { nil: undefined }),
    nowMs: fc.integer({ min: 1_000_000, max: 2_000_000_000 })
  })
  .map(({ concurrency, busy, circuitShut, gatheredMs, nowMs }): LaneSlots => {
    const inFlight = Math.round(busy * concurrency)
    return {
      concurrency,
      inFlight,
      allowed: circuitShut ? 0 : concurrency - inFlight,
      gatheringSinceMs: gatheredMs === undefined ? undefined : nowMs - gatheredMs,
      nowMs
    }
  })

describe('when a lane claims', () => {
  it('never claims when no call may start', () => {
    fc.assert(
      fc.property(slots, (lane) => {
        fc.pre(lane.allowed <= 0)
        expect(decideClaim(lane)).toEqual({ kind: 'none' })
      })
    )
  })

  it('claims at once when nothing is in flight (an idle lane, a half-open circuit’s trial call) or half its slots are free', () => {
    fc.assert(
      fc.property(slots, (lane) => {
        fc.pre(lane.allowed > 0 && (lane.inFlight === 0 || lane.allowed >= lane.concurrency / 2))
        expect(decideClaim(lane)).toEqual({ kind: 'claim' })
      })
    )
  })

  it('keeps no free slot waiting longer than the gather time: asked again when it says, it claims', () => {
    fc.assert(
      fc.property(slots, (lane) => {
        const decision = decideClaim(lane)
        if (decision.kind !== 'gather') return
        expect(lane.inFlight).toBeGreaterThan(0)
        expect(lane.allowed).toBeLessThan(lane.concurrency / 2)
        expect(decision.forMs).toBeGreaterThan(0)
        expect(decision.forMs).toBeLessThanOrEqual(CLAIM_GATHER_MS)
        const since = lane.gatheringSinceMs ?? lane.nowMs
        expect(decideClaim({ ...lane, gatheringSinceMs: since, nowMs: lane.nowMs + decision.forMs })).toEqual({ kind: 'claim' })
      })
    )
  })

  it('gathers the freed slots of a busy lane of 32: one free waits, sixteen go', () => {
    const busy = { concurrency: 32, gatheringSinceMs: undefined, nowMs: 1_000_000 }
    expect(decideClaim({ ...busy, inFlight: 31, allowed: 1 })).toEqual({ kind: 'gather', forMs: CLAIM_GATHER_MS })
    expect(decideClaim({ ...busy, inFlight: 16, allowed: 16 })).toEqual({ kind: 'claim' })
    expect(decideClaim({ ...busy, inFlight: 31, allowed: 1, gatheringSinceMs: 1_000_000 - CLAIM_GATHER_MS })).toEqual({ kind: 'claim' })
  })
})
