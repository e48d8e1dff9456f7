import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensureToxiproxyServer, Toxiproxy } from '../support/toxiproxy.ts'
import { freePort } from './free-port.ts'

// The soak's way out when Toxiproxy wedges on a proxy (Toxiproxy.restart): the same proxies again, on the same
// ports, with no toxic, and what was connected through the old server dropped.
let dir: string
let echo: Server
let toxiproxy: Toxiproxy | undefined
beforeAll(async () => {
  await ensureToxiproxyServer()
  dir = await mkdtemp(join(tmpdir(), 'toxiproxy-restart-'))
  echo = createServer((socket) => socket.pipe(socket))
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
}, 600_000)
afterAll(async () => {
  await toxiproxy?.stop()
  echo?.close()
  await rm(dir, { recursive: true, force: true })
})

/** Sends a line on `socket` and resolves with what came back and how long it took. */
async function roundTrip(socket: Socket): Promise<{ text: string; ms: number }> {
  const started = Date.now()
  socket.write('ping\n')
  const text = await new Promise<string>((resolve) => socket.once('data', (data) => resolve(String(data))))
  return { text, ms: Date.now() - started }
}

async function connected(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  return socket
}

describe('Toxiproxy restarted', () => {
  it('has the same proxies on the same ports, no toxic, and the old connections dropped', { timeout: 60_000 }, async () => {
    toxiproxy = await Toxiproxy.start(await freePort(), join(dir, 'toxiproxy.log'))
    const listenPort = await freePort()
    const { port: echoPort } = echo.address() as { port: number }
    await toxiproxy.createProxy('echo', listenPort, `127.0.0.1:${echoPort}`)
    await toxiproxy.addToxic('echo', { type: 'latency', attributes: { latency: 1500 } })
    const before = await connected(listenPort)
    expect((await roundTrip(before)).ms).toBeGreaterThanOrEqual(1400)
    const dropped = new Promise((resolve) => before.once('close', resolve))

    await toxiproxy.restart()

    await dropped
    expect(toxiproxy.restarts).toBe(1)
    expect(await (await fetch(`${toxiproxy.url}/proxies/echo/toxics`)).json()).toEqual([])
    const after = await connected(listenPort)
    const trip = await roundTrip(after)
    after.destroy()
    expect(trip.text).toBe('ping\n')
    expect(trip.ms).toBeLessThan(1400)
  })

  it('once per wedge: callers failing together restart it once, a caller whose failure came before a restart not again', {
    timeout: 60_000
  }, async () => {
    const before = toxiproxy!.restarts
    await Promise.all([toxiproxy!.restart(before - 1), toxiproxy!.restart(), toxiproxy!.restart()])
    expect(toxiproxy!.restarts).toBe(before + 1)
    const listenPort = ((await (await fetch(`${toxiproxy!.url}/proxies/echo`)).json()) as { listen: string }).listen.split(':')[1]!
    const socket = await connected(Number(listenPort))
    expect((await roundTrip(socket)).text).toBe('ping\n')
    socket.destroy()
  })
})
