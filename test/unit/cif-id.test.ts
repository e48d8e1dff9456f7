import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { cifIdFromNumber, isValidCifId, luhnCheckDigit } from '../../src/contracts/cif-id.ts'

describe('CIF ID', () => {
  it('appends the Luhn check digit (known values)', () => {
    expect(luhnCheckDigit('7992739871')).toBe(3) // the textbook example: 79927398713
    expect(cifIdFromNumber(1_000_000_000)).toBe('10000000009')
    expect(isValidCifId('79927398713')).toBe(true)
  })

  it('refuses sequence numbers outside ten digits', () => {
    expect(() => cifIdFromNumber(999_999_999)).toThrow(RangeError)
    expect(() => cifIdFromNumber('10000000000')).toThrow(RangeError)
  })

  it('refuses anything but eleven digits', () => {
    for (const value of ['', '1000000000', '100000000090', '1000000000a', ' 10000000009', '１0000000009']) {
      expect(isValidCifId(value)).toBe(false)
    }
  })

  const sequenceNumbers = fc.integer({ min: 1_000_000_000, max: 9_999_999_999 })

  it('accepts every ID it issues', () => {
    fc.assert(fc.property(sequenceNumbers, (n) => isValidCifId(cifIdFromNumber(n))))
  })

  it('catches every single mistyped digit', () => {
    fc.assert(
      fc.property(sequenceNumbers, fc.integer({ min: 0, max: 10 }), fc.integer({ min: 1, max: 9 }), (n, position, shift) => {
        const id = cifIdFromNumber(n)
        const digit = (Number(id[position]) + shift) % 10
        const typo = id.slice(0, position) + digit + id.slice(position + 1)
        return !isValidCifId(typo)
      })
    )
  })

  it('catches swapped neighbours, except 0 and 9 (a known Luhn blind spot)', () => {
    fc.assert(
      fc.property(sequenceNumbers, fc.integer({ min: 0, max: 9 }), (n, position) => {
        const id = cifIdFromNumber(n)
        const [a, b] = [id[position]!, id[position + 1]!]
        fc.pre(a !== b && !(a + b === '09' || a + b === '90'))
        return !isValidCifId(id.slice(0, position) + b + a + id.slice(position + 2))
      })
    )
  })
})
