import { createServer, type Server } from 'node:http'
import { collectDefaultMetrics, Registry } from 'prom-client'
import type { Logger } from './logger.ts'

export { Counter, Gauge, Histogram, Registry } from 'prom-client'

/**
 * A service's own registry, with Node.js's process metrics (CPU, memory, event loop lag, GC, handles).
 * One per service, not prom-client's global one: the local stack runs both services in one process, and
 * each must answer for itself.
 */
export function newMetricsRegistry(service: string): Registry {
  const registry = new Registry()
  registry.setDefaultLabels({ service })
  collectDefaultMetrics({ register: registry })
  return registry
}

/** Seconds, as Prometheus wants durations, from milliseconds. */
export const seconds = (ms: number): number => ms / 1000

/** Buckets for calls that take milliseconds to seconds: an end system's answer, a create. */
export const callSecondsBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export interface MetricsServer {
  url: string
  close(): Promise<void>
}

/**
 * `GET /metrics` in the Prometheus text format, on a port of its own (docs/observability.md says why):
 * nothing else is served there, no key is asked, and the API's rate limits and TLS client checks never
 * stand between Prometheus and the figures.
 */
export async function startMetricsServer(registry: Registry, host: string, port: number, log: Logger): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    const path = request.url?.split('?')[0]
    if (path !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n')
      return
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(request.method === 'HEAD' ? undefined : text),
      (error: unknown) => {
        log.warn({ error: String(error) }, 'metrics could not be collected')
        response.writeHead(500, { 'content-type': 'text/plain' }).end('metrics could not be collected\n')
      }
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const address = server.address() as { port: number }
  return {
    url: `http://${host}:${address.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
