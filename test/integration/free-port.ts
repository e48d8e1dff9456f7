import { createServer } from 'node:net'

/** A TCP port nothing listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

async function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** The first of `count` consecutive free TCP ports (a local Kafka cluster takes two per broker). */
export async function freePortRange(count: number): Promise<number> {
  for (;;) {
    const first = await freePort()
    if (first + count - 1 > 65535) continue
    let free = true
    for (let port = first + 1; port < first + count && free; port++) free = await isFree(port)
    if (free) return first
  }
}
