import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

// Ports are chosen below the kernel's ephemeral range. A port the OS hands out for `listen(0)` comes from that
// range, and so does the local port of every outgoing connection: between choosing such a port and a service
// listening on it, a client connection (to PostgreSQL, to Kafka) could take it, and the service failed with
// EADDRINUSE (CI, stop 20). Nothing takes a port below the range unless it binds it on purpose.
const ephemeralStart = (() => {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768
  } catch {
    return 32768
  }
})()
const lowest = 10_000
/** Ports this process has handed out: a second request never gets one of them while its user starts. */
const handedOut = new Set<number>()

async function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** The first of `count` consecutive TCP ports nothing listens on (a local Kafka cluster takes two per broker). */
export async function freePortRange(count: number): Promise<number> {
  for (;;) {
    const first = lowest + Math.floor(Math.random() * (ephemeralStart - lowest - count))
    const ports = Array.from({ length: count }, (_, i) => first + i)
    if (ports.some((port) => handedOut.has(port))) continue
    let free = true
    for (const port of ports) if (free) free = await isFree(port)
    if (!free) continue
    for (const port of ports) handedOut.add(port)
    return first
  }
}

/** A TCP port nothing listens on right now. */
export async function freePort(): Promise<number> {
  return freePortRange(1)
}
