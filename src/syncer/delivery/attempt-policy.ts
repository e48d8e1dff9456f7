import { formatDuration } from '../../platform/duration.ts'
import { backoffMs } from '../../platform/retry.ts'
import type { RetryPolicy } from './end-systems-config.ts'

/** The timeout of attempt `n` of a round (1-based): the first timeout, multiplied on each retry, capped. */
export function attemptTimeoutMs(policy: RetryPolicy, n: number): number {
  return Math.min(policy.maxTimeoutMs, Math.round(policy.timeoutMs * policy.timeoutMultiplier ** (n - 1)))
}

/**
 * The lease of each attempt of a round, for the claim to pick by round attempt in SQL: attempt n's timeout
 * plus `marginMs`, for every attempt the budget allows, then the longest timeout any attempt can get (a
 * round may run past the budget when the end systems file lowers it).
 */
export function attemptLeases(policy: RetryPolicy, marginMs: number): number[] {
  return [...Array.from({ length: policy.retries + 1 }, (_, i) => attemptTimeoutMs(policy, i + 1)), policy.maxTimeoutMs].map((ms) => ms + marginMs)
}

/**
 * The pause after failed attempt `n`: exponential from `backoffMs`, ±20% jitter so that retries of many
 * deliveries do not arrive together, capped; a Retry-After from the end system is honoured within the cap.
 */
export function retryDelayMs(policy: RetryPolicy, n: number, retryAfterMs: number | undefined, random = Math.random): number {
  const jittered = backoffMs(n - 1, { initialMs: policy.backoffMs, maxMs: policy.maxBackoffMs, jitter: 0.2 }, random)
  if (retryAfterMs === undefined) return jittered
  return Math.min(policy.maxBackoffMs, Math.max(jittered, retryAfterMs))
}

/** What the remarks say when a Retry-After asks for longer than the system's longest pause, which is waited instead. */
export function retryAfterCapped(policy: RetryPolicy, retryAfterMs: number | undefined): string | null {
  if (retryAfterMs === undefined || retryAfterMs <= policy.maxBackoffMs) return null
  return `its Retry-After is longer than the longest pause this system is given (maxBackoffMs, ${formatDuration(policy.maxBackoffMs)}), which is waited instead`
}

/** Retry-After as seconds or an HTTP date (RFC 9110), in milliseconds from `now`. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

/**
 * The answers that say "send it again", as data: 408 and 425 ask for the request again (RFC 9110, RFC
 * 8470), 429 asks for it later, and 5xx is the system's own fault. The attempt policy retries these, and
 * the circuit breaker counts them (with network errors and timeouts) as the system failing.
 */
export const retryableStatuses = { listed: [408, 425, 429], fromStatus: 500 } as const

export function isRetryableStatus(status: number): boolean {
  return (retryableStatuses.listed as readonly number[]).includes(status) || status >= retryableStatuses.fromStatus
}

/** A call that says the end system is not well: what the breaker counts towards opening the circuit. */
export function isTrouble(result: CallResult): boolean {
  return result.kind === 'network' || result.kind === 'timeout' || (result.kind === 'response' && isRetryableStatus(result.status))
}

/** What one call to an end system came to, before it is judged. */
export type CallResult =
  | {
      kind: 'response'
      status: number
      /** The answer as read: all of it, or its first `cutAtBytes` when there was more (the rest never read). */
      body: string
      retryAfter?: string | undefined
      /** Where a redirect points: quoted, never followed. */
      location?: string | undefined
      cutAtBytes?: number | undefined
    }
  | { kind: 'network'; code: string; message: string }
  | { kind: 'timeout'; timeoutMs: number }
  | { kind: 'circuit-open' }

export interface Verdict {
  /** success: done; retry: try again later if the budget allows; fail: retrying cannot help. */
  outcome: 'success' | 'retry' | 'fail'
  httpStatus: number | null
  /** What the end system said (status and an excerpt of its answer, or the network error). */
  message: string
  /** Why, in plain words, for the transaction table. */
  remarks: string
  retryAfterMs?: number | undefined
}

/** How much of an end system's answer a verdict quotes, on one line. */
export const MESSAGE_EXCERPT = 500

/**
 * The answer on one line, cut to MESSAGE_EXCERPT characters. The caller masks personal data before this
 * (a value cut in two is no longer recognised); the cut keeps a surrogate pair whole, since the masked
 * answer is stored as it is.
 */
function excerpt(body: string): string {
  const flat = body.replace(/\s+/g, ' ').trim()
  if (flat.length <= MESSAGE_EXCERPT) return flat
  const high = flat.charCodeAt(MESSAGE_EXCERPT - 1)
  return `${flat.slice(0, high >= 0xd800 && high <= 0xdbff ? MESSAGE_EXCERPT - 1 : MESSAGE_EXCERPT)}…`
}

const untrusted = 'presented a certificate the syncer does not trust (its tls.caFile in the end systems file?)'
const networkWords: Record<string, string> = {
  ECONNREFUSED: 'refused the connection (is it down?)',
  ECONNRESET: 'dropped the connection',
  EHOSTUNREACH: 'cannot be reached',
  ENOTFOUND: 'has a host name that does not resolve',
  UND_ERR_SOCKET: 'closed the connection mid-answer',
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: 'wants a client certificate, and the syncer sent none (its tls.certFile in the end systems file?)',
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: 'did not accept the syncer’s client certificate',
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: 'did not accept the syncer’s client certificate (signed by an authority it does not know)',
  SELF_SIGNED_CERT_IN_CHAIN: untrusted,
  DEPTH_ZERO_SELF_SIGNED_CERT: untrusted,
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: untrusted,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: untrusted,
  CERT_HAS_EXPIRED: 'presented an expired certificate',
  ERR_TLS_CERT_ALTNAME_INVALID: 'presented a certificate for another name (its tls.serverName in the end systems file?)'
}

export function judgeCall(result: CallResult, system: string, operation: 'create' | 'update', conflictMeansExists: boolean): Verdict {
  switch (result.kind) {
    case 'timeout': {
      const seconds = result.timeoutMs / 1000
      return {
        outcome: 'retry',
        httpStatus: null,
        message: `no complete answer within ${seconds} s`,
        remarks: `${system} timed out after ${seconds} s`
      }
    }
    case 'network': {
      const words = networkWords[result.code] ?? `could not be called (${result.code})`
      return { outcome: 'retry', httpStatus: null, message: `${result.code}: ${result.message}`, remarks: `${system} ${words}` }
    }
    case 'circuit-open':
      return {
        outcome: 'retry',
        httpStatus: null,
        message: 'not called: circuit open',
        remarks: `${system} failed repeatedly; calls are paused for a while (circuit breaker open)`
      }
    case 'response': {
      const { status } = result
      const cut = result.cutAtBytes === undefined ? '' : ` (the first ${formatBytes(result.cutAtBytes)} of a longer answer)`
      const message = `HTTP ${status}${cut}${result.body ? `: ${excerpt(result.body)}` : ''}`
      if (status >= 200 && status < 300) return { outcome: 'success', httpStatus: status, message, remarks: `${system} accepted the ${operation}` }
      if (status === 409 && operation === 'create' && conflictMeansExists) {
        return { outcome: 'success', httpStatus: status, message, remarks: `${system} already holds this customer (409 on create)` }
      }
      if (isRetryableStatus(status)) {
        const retryAfterMs = parseRetryAfter(result.retryAfter)
        const asked =
          result.retryAfter === undefined
            ? ''
            : retryAfterMs === undefined
              ? ', with a Retry-After the syncer does not understand'
              : `, Retry-After ${formatDuration(retryAfterMs)}`
        const what =
          status === 429
            ? `asked the syncer to slow down (429${asked})`
            : status < 500
              ? `asked for the request again (${status}${asked})`
              : `answered ${status} (a fault on its side${asked})`
        return { outcome: 'retry', httpStatus: status, message, remarks: `${system} ${what}`, retryAfterMs }
      }
      if (status >= 300 && status < 400) {
        // Never followed: the request carries the customer's data and credentials, and the end systems file
        // says where the system is. Retried only if the retryable set says so (it does not).
        const to = result.location ? ` to ${excerpt(result.location)}` : ' without a Location'
        return {
          outcome: 'fail',
          httpStatus: status,
          message,
          remarks: `${system} answered with a redirect (${status})${to}, not followed; check its baseUrl in the end systems file`
        }
      }
      return { outcome: 'fail', httpStatus: status, message, remarks: `${system} refused the ${operation} (${status}); retrying cannot help` }
    }
  }
}

const formatBytes = (bytes: number): string => (bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} bytes`)

/** When an event reaches the syncer later than this after it was made, its deliveries say so. */
export const LAG_WORTH_A_REMARK_MS = 30_000

export function lagRemark(eventTime: Date, receivedAt: Date): string | null {
  const lag = receivedAt.getTime() - eventTime.getTime()
  return lag >= LAG_WORTH_A_REMARK_MS ? `reached the syncer ${formatDuration(lag)} after it was made (syncer down or lagging)` : null
}
