import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { checkSession, SESSION_HOURS, sessionCookieValue, sessionExpiry } from '../../src/syncer/console/session.ts'

const instant = fc.date({ min: new Date('2026-01-01T00:00:00Z'), max: new Date('2030-01-01T00:00:00Z'), noInvalidDate: true })
// Operator names as SYNCER_OPERATORS allows them, and then some: the separator included.
const operator = fc.string({ minLength: 1, maxLength: 40 })

describe("the console's session", () => {
  it('reads back the operator and expiry it was written with, while it lasts and the operator is still configured', () => {
    fc.assert(
      fc.property(operator, instant, fc.integer({ min: 1, max: 10 * 3_600_000 }), (name, expiresAt, before) => {
        const now = new Date(expiresAt.getTime() - before)
        expect(checkSession(sessionCookieValue({ operator: name, expiresAt }), now, (n) => n === name)).toEqual({
          session: { operator: name, expiresAt }
        })
      })
    )
  })

  it('ends at its expiry, and with the operator once no longer configured', () => {
    fc.assert(
      fc.property(operator, instant, fc.integer({ min: 0, max: 10 * 3_600_000 }), (name, expiresAt, after) => {
        const value = sessionCookieValue({ operator: name, expiresAt })
        expect(checkSession(value, new Date(expiresAt.getTime() + after), () => true)).toEqual({ refused: 'expired' })
        expect(checkSession(value, new Date(expiresAt.getTime() - 1), () => false)).toEqual({ refused: 'unknown-operator' })
      })
    )
  })

  it('takes nothing else for a session', () => {
    for (const value of ['', 'ops-tan', '.ops-tan', 'x.ops-tan', '1795739360936.', '-1.ops-tan']) {
      expect(checkSession(value, new Date('2026-01-01T00:00:00Z'), () => true)).toEqual({ refused: 'malformed' })
    }
  })

  it('lasts a shift, or until the key signed in with expires if that is sooner', () => {
    fc.assert(
      fc.property(instant, fc.option(instant, { nil: undefined }), (now, keyExpiresAt) => {
        const expiry = sessionExpiry(now, keyExpiresAt)
        const shiftEnd = now.getTime() + SESSION_HOURS * 3_600_000
        expect(expiry.getTime()).toBe(Math.min(shiftEnd, keyExpiresAt?.getTime() ?? Number.POSITIVE_INFINITY))
      })
    )
  })
})
