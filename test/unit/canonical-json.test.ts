import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalJson } from '../../src/contracts/canonical-json.ts'

/** What events hold: strings (any Unicode), integers, booleans, null, objects and arrays. */
const { value: eventValue } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), tie('object'), tie('array')),
  leaf: fc.oneof(fc.string({ unit: 'grapheme' }), fc.integer(), fc.maxSafeInteger(), fc.boolean(), fc.constant(null)),
  object: fc.dictionary(fc.string({ unit: 'grapheme' }), tie('value'), { maxKeys: 6 }),
  array: fc.array(tie('value'), { maxLength: 5 })
}))

/** The same value with the keys of every object in another order, as `compare` has it. */
function reordered(value: unknown, compare: (a: string, b: string) => number): unknown {
  if (Array.isArray(value)) return value.map((item) => reordered(item, compare))
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort(compare)
        .map((key) => [key, reordered((value as Record<string, unknown>)[key], compare)])
    )
  }
  return value
}

describe('canonical JSON', () => {
  it('sorts keys at every depth and leaves out whitespace', () => {
    expect(canonicalJson({ b: [1, { d: 2, c: 'x y' }], a: null, é: true, A: -7 })).toBe('{"A":-7,"a":null,"b":[1,{"c":"x y","d":2}],"é":true}')
    expect(canonicalJson([])).toBe('[]')
    expect(canonicalJson({})).toBe('{}')
  })

  it('sorts keys by UTF-16 code units, as RFC 8785 does', () => {
    // U+1F600 is written as the surrogates D83D DE00, which sort before U+FB01 (RFC 8785, 3.2.3).
    expect(canonicalJson({ '\uFB01': 1, '\u{1F600}': 2, '\u00E9': 3, Z: 4 })).toBe('{"Z":4,"é":3,"😀":2,"ﬁ":1}')
    // A JavaScript object puts integer-like keys first in numeric order: sorting cannot be left to it.
    expect(canonicalJson({ 9: 'a', 10: 'b', x: 'c' })).toBe('{"10":"b","9":"a","x":"c"}')
  })

  it('writes the same text whatever order the keys come in', () => {
    fc.assert(
      fc.property(eventValue, fc.compareFunc(), (value, compare) => {
        expect(canonicalJson(reordered(value, compare))).toBe(canonicalJson(value))
      })
    )
  })

  it('round-trips through JSON.parse: the value read back is the value, and gives the same text', () => {
    fc.assert(
      fc.property(eventValue, (value) => {
        const text = canonicalJson(value)
        expect(JSON.parse(text)).toEqual(value)
        expect(canonicalJson(JSON.parse(text))).toBe(text)
      })
    )
  })

  it('writes a value as its JSON is read back: undefined properties left out, undefined array elements as null', () => {
    expect(canonicalJson({ a: undefined, b: [undefined, 1] })).toBe('{"b":[null,1]}')
  })

  it('refuses what JSON cannot carry rather than write it differently', () => {
    expect(() => canonicalJson(Number.NaN)).toThrow(TypeError)
    expect(() => canonicalJson({ at: new Date(0) })).toThrow(/plain objects only, not a Date/)
    expect(() => canonicalJson({ n: 1n })).toThrow(/bigint/)
    expect(() => canonicalJson(undefined)).toThrow(/undefined/)
  })
})
