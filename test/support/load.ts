import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import * as hdr from 'hdr-histogram-js'
import { type Dispatcher, Pool } from 'undici'
import type { CustomerInput } from '../../src/contracts/customer.ts'

export interface LoadOptions {
  cifUrl: string
  /**
   * Several CIF instances: requests go round robin over them, and one that refuses the connection (it is
   * being killed) passes its request to the next. `cifUrl` when not given.
   */
  cifUrls?: string[]
  apiKey: string
  durationMs: number
  /** Open loop: requests started per second whatever the answers (latency counted from the planned start). */
  ratePerSecond?: number
  /** Closed loop: this many requests always in flight (saturation). */
  concurrency?: number
  /** Share of requests that change an existing customer instead of creating one. */
  updateShare?: number
  onTick?: (progress: LoadProgress) => void
}

export interface LoadProgress {
  elapsedMs: number
  creates: number
  updates: number
  errors: number
}

export interface LoadResult extends LoadProgress {
  createLatency: hdr.Histogram
  updateLatency: hdr.Histogram
  /** When each customer version was asked for (ms since epoch), by `cifId:version`. */
  requestedAt: Map<string, number>
  versions: Map<string, number>
  statuses: Record<string, number>
}

let serial = 0
/** A new customer as a branch would enter it: unique passport number and external id. */
export function person(): CustomerInput {
  const unique = `${process.pid.toString(36)}${(serial++).toString(36)}${randomUUID().slice(0, 8)}`.toUpperCase()
  return {
    legalForm: 'PERSON',
    firstName: 'Grace',
    lastName: 'Hopper',
    dateOfBirth: '1980-12-09',
    mobileNumber: '+6591234567',
    email: 'grace@example.com',
    identifiers: [{ type: 'PASSPORT', value: `P${unique}`.slice(0, 40), issuingCountry: 'US' }],
    addresses: [{ type: 'HOME', line1: '1 Navy Way', city: 'Arlington', postalCode: '22201', country: 'US' }],
    externalId: `load-${unique}`
  }
}

/** Creates and changes customers through the CIF API, recording latency in HDR histograms (microseconds). */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const pools = (options.cifUrls ?? [options.cifUrl]).map((url) => new Pool(url, { connections: 64, pipelining: 1 }))
  let turn = 0
  /**
   * The next instance's answer. A refused connection never reached the instance, so the request goes to the
   * next one; a create (its Idempotency-Key makes a repeat safe) also moves on when the connection broke.
   */
  const request = async (call: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData> => {
    const first = turn++ % pools.length
    for (let i = 0; ; i++) {
      try {
        return await pools[(first + i) % pools.length]!.request(call)
      } catch (error) {
        const refused = (error as { code?: string }).code === 'ECONNREFUSED'
        if (i + 1 >= pools.length || !(refused || call.method === 'POST')) throw error
      }
    }
  }
  const headers = { authorization: `Bearer ${options.apiKey}`, 'content-type': 'application/json' }
  const result: LoadResult = {
    elapsedMs: 0,
    creates: 0,
    updates: 0,
    errors: 0,
    createLatency: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 }),
    updateLatency: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 }),
    requestedAt: new Map(),
    versions: new Map(),
    statuses: {}
  }
  const busy = new Set<string>()
  const known: string[] = []
  const updateShare = options.updateShare ?? 0

  const one = async (plannedAt: number): Promise<void> => {
    const cifId = known.length > 10 && Math.random() < updateShare ? known[Math.floor(Math.random() * known.length)]! : undefined
    const update = cifId !== undefined && !busy.has(cifId)
    try {
      if (update) {
        busy.add(cifId)
        const version = result.versions.get(cifId)!
        const response = await request({
          method: 'PATCH',
          path: `/v1/customers/${cifId}`,
          headers: { ...headers, 'if-match': `"${version}"` },
          body: JSON.stringify({ email: `v${version + 1}@example.com` })
        })
        const body = (await response.body.json()) as { version?: number }
        result.statuses[response.statusCode] = (result.statuses[response.statusCode] ?? 0) + 1
        if (response.statusCode === 200 && body.version) {
          result.versions.set(cifId, body.version)
          result.requestedAt.set(`${cifId}:${body.version}`, plannedAt)
          result.updates++
          result.updateLatency.recordValue(Math.max(1, Math.round((performance.now() - (plannedAt - epochOffset)) * 1000)))
        } else result.errors++
      } else {
        const response = await request({
          method: 'POST',
          path: '/v1/customers',
          headers: { ...headers, 'idempotency-key': randomUUID() },
          body: JSON.stringify(person())
        })
        const body = (await response.body.json()) as { cifId?: string }
        result.statuses[response.statusCode] = (result.statuses[response.statusCode] ?? 0) + 1
        if (response.statusCode === 201 && body.cifId) {
          known.push(body.cifId)
          result.versions.set(body.cifId, 1)
          result.requestedAt.set(`${body.cifId}:1`, plannedAt)
          result.creates++
          result.createLatency.recordValue(Math.max(1, Math.round((performance.now() - (plannedAt - epochOffset)) * 1000)))
        } else result.errors++
      }
    } catch {
      result.errors++
      result.statuses.network = (result.statuses.network ?? 0) + 1
    } finally {
      if (update) busy.delete(cifId)
    }
  }

  // performance.now() is monotonic; planned times are kept in epoch ms so they compare with database times.
  const epochOffset = Date.now() - performance.now()
  const started = Date.now()
  const progress = setInterval(() => options.onTick?.({ ...result, elapsedMs: Date.now() - started }), 1000)
  const inFlight = new Set<Promise<void>>()
  const launch = (plannedAt: number): void => {
    const p = one(plannedAt).finally(() => inFlight.delete(p))
    inFlight.add(p)
  }
  if (options.ratePerSecond) {
    const interval = 1000 / options.ratePerSecond
    let sent = 0
    while (Date.now() - started < options.durationMs) {
      const due = Math.floor((Date.now() - started) / interval)
      while (sent < due && inFlight.size < 2048) launch(started + sent++ * interval)
      await sleep(2)
    }
  } else {
    const workers = Array.from({ length: options.concurrency ?? 32 }, async () => {
      while (Date.now() - started < options.durationMs) await one(Date.now())
    })
    await Promise.all(workers)
  }
  await Promise.all(inFlight)
  clearInterval(progress)
  result.elapsedMs = Date.now() - started
  await Promise.all(pools.map((pool) => pool.close()))
  return result
}

export function percentiles(histogram: hdr.Histogram): { p50: number; p95: number; p99: number; max: number } {
  const ms = (us: number) => Math.round(us / 100) / 10
  return {
    p50: ms(histogram.getValueAtPercentile(50)),
    p95: ms(histogram.getValueAtPercentile(95)),
    p99: ms(histogram.getValueAtPercentile(99)),
    max: ms(histogram.maxValue)
  }
}
