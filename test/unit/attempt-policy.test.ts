import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { formatDuration } from '../../src/platform/duration.ts'
import {
  attemptLeases,
  attemptTimeoutMs,
  isRetryableStatus,
  isTrouble,
  judgeCall,
  lagRemark,
  parseRetryAfter,
  retryAfterCapped,
  retryDelayMs
} from '../../src/syncer/delivery/attempt-policy.ts'
import { defaultRetryPolicy } from '../../src/syncer/delivery/end-systems-config.ts'

describe('timeouts and pauses', () => {
  it('grows the timeout on each retry, as the specification asks: 30 s, 60 s, 120 s, 240 s', () => {
    expect([1, 2, 3, 4].map((n) => attemptTimeoutMs(defaultRetryPolicy, n))).toEqual([30_000, 60_000, 120_000, 240_000])
    expect(attemptTimeoutMs(defaultRetryPolicy, 10)).toBe(defaultRetryPolicy.maxTimeoutMs)
  })

  it('leases every attempt, however far past the budget, for its timeout and the margin', () => {
    fc.assert(
      fc.property(
        fc.record({
          retries: fc.integer({ min: 0, max: 20 }),
          timeoutMs: fc.integer({ min: 1, max: 60_000 }),
          timeoutMultiplier: fc.double({ min: 1, max: 4, noNaN: true }),
          maxTimeoutMs: fc.integer({ min: 60_000, max: 600_000 })
        }),
        fc.integer({ min: 1, max: 100 }),
        (overrides, n) => {
          const policy = { ...defaultRetryPolicy, ...overrides }
          const leases = attemptLeases(policy, 5000)
          // As the claim picks it: the attempt's own entry, or the last one.
          const lease = leases[Math.min(n, leases.length) - 1]!
          return lease >= attemptTimeoutMs(policy, n) + 5000 && (n > policy.retries + 1 || lease === attemptTimeoutMs(policy, n) + 5000)
        }
      )
    )
  })

  it('pauses exponentially within ±20% jitter and never past the cap', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (n, r) => {
        const delay = retryDelayMs(defaultRetryPolicy, n, undefined, () => r)
        const base = Math.min(defaultRetryPolicy.maxBackoffMs, defaultRetryPolicy.backoffMs * 2 ** (n - 1))
        return delay >= Math.floor(base * 0.8) && delay <= Math.min(defaultRetryPolicy.maxBackoffMs, Math.ceil(base * 1.2))
      })
    )
  })

  it('honours Retry-After within the cap', () => {
    expect(retryDelayMs(defaultRetryPolicy, 1, 30_000, () => 0.5)).toBe(30_000)
    expect(retryDelayMs(defaultRetryPolicy, 1, 10 * 3_600_000, () => 0.5)).toBe(defaultRetryPolicy.maxBackoffMs)
    expect(parseRetryAfter('120')).toBe(120_000)
    expect(parseRetryAfter('Wed, 25 Nov 2026 12:00:30 GMT', Date.parse('Wed, 25 Nov 2026 12:00:00 GMT'))).toBe(30_000)
    expect(parseRetryAfter('soon')).toBeUndefined()
  })
})

describe('judging an end system’s answer', () => {
  const judge = (result: Parameters<typeof judgeCall>[0], operation: 'create' | 'update' = 'create', conflictMeansExists = false) =>
    judgeCall(result, 'crm', operation, conflictMeansExists)

  it('treats 2xx as success', () => {
    expect(judge({ kind: 'response', status: 201, body: '{"id":1}' })).toMatchObject({ outcome: 'success', httpStatus: 201 })
  })

  it('retries network errors, timeouts, 5xx and 429, saying why in words', () => {
    expect(judge({ kind: 'network', code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:1' })).toEqual({
      outcome: 'retry',
      httpStatus: null,
      message: 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:1',
      remarks: 'crm refused the connection (is it down?)'
    })
    expect(judge({ kind: 'timeout', timeoutMs: 30_000 })).toMatchObject({ outcome: 'retry', remarks: 'crm timed out after 30 s' })
    expect(judge({ kind: 'response', status: 503, body: 'down for maintenance' })).toMatchObject({
      outcome: 'retry',
      message: 'HTTP 503: down for maintenance',
      remarks: 'crm answered 503 (a fault on its side)'
    })
    expect(judge({ kind: 'response', status: 429, body: '', retryAfter: '7' })).toMatchObject({
      outcome: 'retry',
      retryAfterMs: 7000,
      message: 'HTTP 429'
    })
    expect(judge({ kind: 'response', status: 408, body: '' })).toMatchObject({ outcome: 'retry', remarks: 'crm asked for the request again (408)' })
  })

  it('fails other 4xx and redirects at once', () => {
    expect(judge({ kind: 'response', status: 400, body: '{"error":"bad"}' }, 'update')).toMatchObject({
      outcome: 'fail',
      remarks: 'crm refused the update (400); retrying cannot help'
    })
    expect(judge({ kind: 'response', status: 301, body: '' })).toMatchObject({ outcome: 'fail' })
  })

  it('names a redirect’s status and Location, not followed, and fails it as the retryable set says', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(301, 302, 303, 307, 308),
        fc.stringMatching(/^https:\/\/[a-z]{1,10}\.example\/[a-z0-9/?=&]{0,40}$/),
        (status, location) => {
          const verdict = judge({ kind: 'response', status, body: '', location })
          return (
            verdict.outcome === (isRetryableStatus(status) ? 'retry' : 'fail') &&
            verdict.remarks.startsWith(`crm answered with a redirect (${status}) to ${location}, not followed`)
          )
        }
      )
    )
    expect(judge({ kind: 'response', status: 302, body: '' }).remarks).toBe(
      'crm answered with a redirect (302) without a Location, not followed; check its baseUrl in the end systems file'
    )
  })

  it('says what Retry-After asked for, and when it was not understood', () => {
    expect(judge({ kind: 'response', status: 429, body: '', retryAfter: '30' }).remarks).toBe(
      'crm asked the syncer to slow down (429, Retry-After 30 s)'
    )
    expect(judge({ kind: 'response', status: 503, body: '', retryAfter: 'later' })).toMatchObject({
      remarks: 'crm answered 503 (a fault on its side, with a Retry-After the syncer does not understand)',
      retryAfterMs: undefined
    })
    expect(retryAfterCapped(defaultRetryPolicy, 60_000)).toBeNull()
    expect(retryAfterCapped(defaultRetryPolicy, 3_600_000)).toBe(
      'its Retry-After is longer than the longest pause this system is given (maxBackoffMs, 10 min 0 s), which is waited instead'
    )
  })

  it('says when an answer was longer than what is read of it', () => {
    expect(judge({ kind: 'response', status: 500, body: 'xyz', cutAtBytes: 65_536 }).message).toBe(
      'HTTP 500 (the first 64 KiB of a longer answer): xyz'
    )
  })

  it('takes a 409 on create as "already there" only when the system is configured so', () => {
    expect(judge({ kind: 'response', status: 409, body: '' }, 'create', true)).toMatchObject({ outcome: 'success' })
    expect(judge({ kind: 'response', status: 409, body: '' }, 'create', false)).toMatchObject({ outcome: 'fail' })
    expect(judge({ kind: 'response', status: 409, body: '' }, 'update', true)).toMatchObject({ outcome: 'fail' })
  })

  it('quotes at most 500 characters of an answer, on one line', () => {
    const { message } = judge({ kind: 'response', status: 500, body: `line\n${'x'.repeat(1000)}` })
    expect(message).toBe(`HTTP 500: line ${'x'.repeat(495)}…`)
  })

  it('cuts the excerpt between characters, never inside a surrogate pair (it is stored as it is, masked before)', () => {
    const { message } = judge({ kind: 'response', status: 500, body: `${'x'.repeat(499)}😀 and more` })
    expect(message).toBe(`HTTP 500: ${'x'.repeat(499)}…`)
    expect(message.isWellFormed()).toBe(true)
  })
})

describe('lag remarks', () => {
  it('says when an event reached the syncer late, and by how much', () => {
    const made = new Date('2026-11-25T10:00:00Z')
    expect(lagRemark(made, new Date('2026-11-25T10:00:05Z'))).toBeNull()
    expect(lagRemark(made, new Date('2026-11-25T10:05:03Z'))).toBe('reached the syncer 5 min 3 s after it was made (syncer down or lagging)')
    expect(formatDuration(2 * 3_600_000 + 60_000)).toBe('2 h 1 min')
  })
})

describe('one retryable set for the policy and the circuit breaker', () => {
  it('counts against the end system exactly the answers the policy retries', () => {
    fc.assert(
      fc.property(fc.integer({ min: 100, max: 599 }), (status) => {
        const result = { kind: 'response', status, body: '' } as const
        return isTrouble(result) === (judgeCall(result, 'crm', 'update', false).outcome === 'retry')
      })
    )
    for (const result of [
      { kind: 'network', code: 'ECONNRESET', message: 'reset' },
      { kind: 'timeout', timeoutMs: 1000 }
    ] as const) {
      expect(isTrouble(result)).toBe(true)
      expect(judgeCall(result, 'crm', 'update', false).outcome).toBe('retry')
    }
  })

  it('does not count the breaker’s own refusal as the system failing once more', () => {
    expect(isTrouble({ kind: 'circuit-open' })).toBe(false)
  })
})
