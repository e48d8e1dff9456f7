import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhenResult,
  IsolatedCircuitError,
  TaskCancelledError,
  TimeoutStrategy,
  timeout
} from 'cockatiel'
import { Agent, buildConnector, request } from 'undici'
import { type CallResult, isTrouble } from './attempt-policy.ts'
import type { EndSystemConfig } from './end-systems-config.ts'

/**
 * Enough of an end system's answer to judge it and to quote it; the rest is not read (the connection is
 * closed instead), however much the system sends.
 */
export const MAX_RESPONSE_BYTES = 64 * 1024

export interface OutgoingRequest {
  method: 'POST' | 'PUT' | 'PATCH'
  url: string
  idempotencyKey: string
  body: string
  timeoutMs: number
  /** The attempt's span (W3C Trace Context), so the end system's own trace continues the create's. */
  traceparent: string
}

/**
 * Calls one end system: a keep-alive connection pool of its own, its credentials (and its TLS settings:
 * client certificate, trusted authorities), a timeout per call, and a circuit breaker that stops calling
 * a system that keeps failing, so it costs nothing while down.
 */
export class EndSystemClient {
  readonly #system: EndSystemConfig
  readonly #agent: Agent
  readonly #breaker: CircuitBreakerPolicy
  #openedAt = 0
  /** The last TLS alert one of this system's connections received, and when. */
  #tlsAlert: { code: string; message: string; at: number } | undefined

  constructor(system: EndSystemConfig) {
    this.#system = system
    const connect = buildConnector({ ...system.tls })
    this.#agent = new Agent({
      connections: system.concurrency,
      keepAliveTimeout: 30_000,
      pipelining: 1,
      // A server that wants a client certificate refuses one missing or unknown with a TLS alert after the
      // handshake; undici then fails the request as "other side closed", losing why. The alert is kept here.
      connect: (options, callback) =>
        connect(options, (...args) => {
          args[1]?.on('error', (error: Error & { code?: string; reason?: string }) => {
            if (error.code?.startsWith('ERR_SSL_')) this.#tlsAlert = { code: error.code, message: error.reason ?? error.message, at: Date.now() }
          })
          callback(...args)
        })
    })
    this.#breaker = circuitBreaker(
      handleWhenResult((result) => isTrouble(result as CallResult)),
      {
        halfOpenAfter: system.circuitBreaker.halfOpenAfterMs,
        breaker: new ConsecutiveBreaker(system.circuitBreaker.consecutiveFailures)
      }
    )
    this.#breaker.onBreak(() => {
      this.#openedAt = Date.now()
    })
  }

  /** Calls `listener` each time the circuit opens (the system keeps failing) or closes (a trial call succeeded). */
  onCircuitChange(listener: (change: 'opened' | 'closed') => void): void {
    this.#breaker.onBreak(() => listener('opened'))
    this.#breaker.onReset(() => listener('closed'))
  }

  /** How many calls may start now: all slots when healthy, one trial call once an open circuit may half-open. */
  callsAllowed(inFlight: number): number {
    switch (this.#breaker.state) {
      case CircuitState.Closed:
        return Math.max(0, this.#system.concurrency - inFlight)
      case CircuitState.Open:
        return inFlight === 0 && Date.now() >= this.#openedAt + this.#system.circuitBreaker.halfOpenAfterMs ? 1 : 0
      default:
        return 0
    }
  }

  get circuitState(): 'closed' | 'open' | 'half-open' | 'isolated' {
    return (['closed', 'open', 'half-open', 'isolated'] as const)[this.#breaker.state]!
  }

  async call(outgoing: OutgoingRequest): Promise<CallResult> {
    try {
      return await this.#breaker.execute(() => this.#send(outgoing))
    } catch (error) {
      // Only the breaker's refusal is an open circuit; #send turns every failure of the call into a result.
      if (error instanceof BrokenCircuitError || error instanceof IsolatedCircuitError) return { kind: 'circuit-open' }
      throw error
    }
  }

  async #send(outgoing: OutgoingRequest): Promise<CallResult> {
    const started = Date.now()
    try {
      // Aborted on timeout only, not also on return as by default: that abort costs a DOMException (a stack
      // trace) and undici's abort handling on every call, and by then the answer is read (or its rest cut
      // off by readCapped), so there is nothing left to stop.
      return await timeout(outgoing.timeoutMs, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: false }).execute(async (_context, signal) => {
        const response = await request(outgoing.url, {
          method: outgoing.method,
          dispatcher: this.#agent,
          signal,
          headers: {
            'content-type': 'application/json',
            accept: 'application/json',
            'idempotency-key': outgoing.idempotencyKey,
            'user-agent': 'cif-syncer',
            traceparent: outgoing.traceparent,
            ...this.#system.authHeaders
          },
          body: outgoing.body
        })
        const { text, cutAtBytes } = await readCapped(response.body, MAX_RESPONSE_BYTES)
        return {
          kind: 'response',
          status: response.statusCode,
          body: text,
          retryAfter: firstOf(response.headers['retry-after']),
          location: firstOf(response.headers.location),
          cutAtBytes
        } satisfies CallResult
      })
    } catch (error) {
      if (error instanceof TaskCancelledError) return { kind: 'timeout', timeoutMs: outgoing.timeoutMs }
      const e = error as { code?: string; cause?: { code?: string }; message?: string }
      const alert = this.#tlsAlert
      if (e.code === 'UND_ERR_SOCKET' && alert && alert.at >= started) return { kind: 'network', code: alert.code, message: alert.message }
      return {
        kind: 'network',
        code: e.cause?.code ?? e.code ?? 'ERROR',
        message: e.cause && 'message' in e.cause ? String((e.cause as Error).message) : String(e.message)
      }
    }
  }

  async close(): Promise<void> {
    await this.#agent.close()
  }
}

const firstOf = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value)

/**
 * An answer's first `maxBytes`, and `cutAtBytes` when there was more: the rest is never read (the body is
 * destroyed, which closes its connection), so a system answering without end costs `maxBytes` of memory.
 */
export async function readCapped(
  body: AsyncIterable<Buffer> & { destroy(): void },
  maxBytes: number
): Promise<{ text: string; cutAtBytes?: number | undefined }> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    chunks.push(chunk)
    size += chunk.length
    if (size > maxBytes) {
      body.destroy()
      return { text: Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8'), cutAtBytes: maxBytes }
    }
  }
  return { text: Buffer.concat(chunks).toString('utf8') }
}
