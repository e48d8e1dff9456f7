/**
 * The console's session: who signed in and until when, carried in an HTTP-only, SameSite cookie signed by the
 * syncer (console.ts). What it holds is no secret (an operator's name and a time); the signature is what makes
 * it the syncer's own. The operator's role is looked up on every request, never carried, so that a change of
 * role or a removed operator (a reload on SIGHUP) takes effect at once.
 */

/** How long a sign-in lasts at most: a working shift. */
export const SESSION_HOURS = 8

export interface Session {
  operator: string
  expiresAt: Date
}

/** Until when a sign-in at `now` lasts: a shift, or less if the key used expires sooner. */
export function sessionExpiry(now: Date, keyExpiresAt: Date | undefined): Date {
  const shiftEnd = new Date(now.getTime() + SESSION_HOURS * 3_600_000)
  return keyExpiresAt && keyExpiresAt < shiftEnd ? keyExpiresAt : shiftEnd
}

export function sessionCookieValue(session: Session): string {
  return `${session.expiresAt.getTime()}.${session.operator}`
}

export type SessionCheck = { session: Session } | { refused: 'malformed' | 'expired' | 'unknown-operator' }

/**
 * Whether a cookie's value (its signature already checked) is a live session of an operator still configured.
 * The name is last in the value, so that a name holding the separator still reads back whole.
 */
export function checkSession(value: string, now: Date, isOperator: (name: string) => boolean): SessionCheck {
  const match = /^([0-9]{1,15})\.(.+)$/s.exec(value)
  if (!match) return { refused: 'malformed' }
  const expiresAt = new Date(Number(match[1]))
  const operator = match[2]!
  if (expiresAt.getTime() <= now.getTime()) return { refused: 'expired' }
  if (!isOperator(operator)) return { refused: 'unknown-operator' }
  return { session: { operator, expiresAt } }
}
