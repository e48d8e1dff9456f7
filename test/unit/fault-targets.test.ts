import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { everyOneInTurn } from '../support/fault-suite.ts'
import { DEFAULT_FAULT_INTERVAL_MS, draw, soakFaultKinds } from '../support/soak.ts'

describe('whom the fault suite kills', () => {
  it('hits every instance at least once, and makes at least the kills asked for', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 12 }), (instances, count) => {
        const targets = everyOneInTurn(
          Array.from({ length: instances }, (_, i) => `instance ${i}`),
          count
        )
        expect(targets).toHaveLength(Math.max(count, instances))
        expect(new Set(targets.map((t) => t.n))).toEqual(new Set(Array.from({ length: instances }, (_, i) => i + 1)))
        for (const { service, n } of targets) expect(service).toBe(`instance ${n - 1}`)
      })
    )
  })
})

describe("the soak's draw", () => {
  it('draws each kind in proportion to its weight', () => {
    const total = soakFaultKinds.reduce((sum, k) => sum + k.weight, 0)
    let start = 0
    for (const kind of soakFaultKinds) {
      expect(draw(soakFaultKinds, start / total).kind).toBe(kind.kind)
      expect(draw(soakFaultKinds, (start + kind.weight - 0.001) / total).kind).toBe(kind.kind)
      start += kind.weight
    }
  })

  it('draws kills often enough for 1,000 in an hour at the default pace', () => {
    const total = soakFaultKinds.reduce((sum, k) => sum + k.weight, 0)
    const killing = soakFaultKinds.filter((k) => /killed|stopped/.test(k.kind)).reduce((sum, k) => sum + k.weight, 0)
    expect((3_600_000 / DEFAULT_FAULT_INTERVAL_MS) * (killing / total)).toBeGreaterThan(1100)
  })
})
