import { Refusal } from './problems.ts'

/**
 * A CIF ID is eleven digits: a ten-digit number from a database sequence, then a Luhn check digit,
 * so a mistyped or transposed digit is caught before any lookup.
 */
export const CIF_ID_PATTERN = '^[0-9]{11}$'

export function luhnCheckDigit(digits: string): number {
  let sum = 0
  // Walk from the right; the digit next to the (future) check digit is doubled first.
  for (let i = digits.length - 1, double = true; i >= 0; i--, double = !double) {
    let d = digits.charCodeAt(i) - 48
    if (double) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
  }
  return (10 - (sum % 10)) % 10
}

export function cifIdFromNumber(sequenceNumber: bigint | number | string): string {
  const body = String(sequenceNumber)
  if (!/^[1-9][0-9]{9}$/.test(body)) throw new RangeError(`CIF sequence number out of range: ${body}`)
  return body + luhnCheckDigit(body)
}

/** Refuses a CIF ID (a path parameter, by default `cifId`) whose check digit is wrong. */
export function requireValidCifId(value: string, parameter = 'cifId'): void {
  if (!isValidCifId(value)) throw Refusal.invalid([{ parameter, detail: 'has a wrong check digit' }], 'The CIF ID is malformed.')
}

/** True when `value` has the CIF ID shape and its check digit is right. */
export function isValidCifId(value: string): boolean {
  if (!/^[0-9]{11}$/.test(value)) return false
  return luhnCheckDigit(value.slice(0, 10)) === value.charCodeAt(10) - 48
}
