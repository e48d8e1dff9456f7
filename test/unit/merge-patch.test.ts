import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { applyMergePatch, changedFields, jsonEqual } from '../../src/cif/merge-patch.ts'

describe('JSON Merge Patch (RFC 7396)', () => {
  // The test cases of RFC 7396, Appendix A.
  it.each([
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [
      ['a', 'b'],
      ['c', 'd'],
      ['c', 'd']
    ],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }]
  ])('%j patched with %j is %j', (target, patch, result) => {
    expect(applyMergePatch(target, patch)).toEqual(result)
  })

  it('never changes the target it is given', () => {
    const target = { a: { b: 1 }, list: [1] }
    applyMergePatch(target, { a: { b: 2 }, list: null })
    expect(target).toEqual({ a: { b: 1 }, list: [1] })
  })

  const record = fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd'), fc.jsonValue({ maxDepth: 2 }))

  it('names exactly the fields whose values differ', () => {
    fc.assert(
      fc.property(record, record, (before, after) => {
        const changed = changedFields(before, after)
        for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
          expect(changed.includes(key)).toBe(!jsonEqual(before[key], after[key]))
        }
      })
    )
  })

  // Customer records hold no nulls (a null in a merge patch means "remove").
  const recordWithoutNulls = record.filter((r) => !JSON.stringify(r).includes('null'))

  it('a patch of the record itself changes nothing', () => {
    fc.assert(
      fc.property(recordWithoutNulls, (r) => changedFields(r, applyMergePatch(r, structuredClone(r)) as Record<string, unknown>).length === 0)
    )
  })
})
