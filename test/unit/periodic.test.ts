import { describe, expect, it } from 'vitest'
import { inBatches } from '../../src/platform/periodic.ts'

describe('a round of batches', () => {
  it('stops a round at a short batch, or after the most batches a round may run', async () => {
    const sizes = [3, 3, 1, 3]
    let calls = 0
    expect(await inBatches(async () => sizes[calls++]!, 3)).toBe(7)
    expect(calls).toBe(3)
    calls = 0
    expect(
      await inBatches(
        async () => {
          calls++
          return 3
        },
        3,
        4
      )
    ).toBe(12)
    expect(calls).toBe(4)
  })
})
