import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { requestHash } from '../../src/cif/idempotency.ts'
import { canonicalJson } from '../../src/contracts/canonical-json.ts'

describe('request hash', () => {
  it('does not depend on the order of keys', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 })), (value) => {
        const reversed = Object.fromEntries(Object.entries(value).reverse())
        return requestHash(value) === requestHash(reversed)
      })
    )
  })

  it('tells different bodies apart', () => {
    expect(canonicalJson({ b: [1, { d: 2, c: 'x' }], a: null })).toBe('{"a":null,"b":[1,{"c":"x","d":2}]}')
    expect(requestHash({ a: 1 })).not.toBe(requestHash({ a: '1' }))
    expect(requestHash({ a: [1, 2] })).not.toBe(requestHash({ a: [2, 1] }))
  })
})
