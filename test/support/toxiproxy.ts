import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { createWriteStream, existsSync } from 'node:fs'
import { mkdir, rename, rm } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { terminate } from '../../src/platform/local/processes.ts'

/** Shopify's Toxiproxy, built from its Go module with the machine's Go toolchain; the pin is the cache key. */
export const TOXIPROXY_VERSION = 'v2.12.0'
const TOXIPROXY_MODULE = 'github.com/Shopify/toxiproxy/v2/cmd/server'

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/** The one sentence a developer needs when the network fault tests cannot start their proxy. */
export class ToxiproxyUnavailable extends Error {
  override name = 'ToxiproxyUnavailable'
}

/**
 * The server's binary, built once per version into `.local/toxiproxy/<version>/` (later runs reuse it).
 * `go install` of a pinned version needs no go.mod; it is built into a folder of its own first and moved into
 * place, so an interrupted build never leaves a half-written binary that a later run would trust.
 */
export async function ensureToxiproxyServer(cacheDir = join(repoRoot, '.local/toxiproxy')): Promise<string> {
  const binary = join(cacheDir, TOXIPROXY_VERSION, 'toxiproxy-server')
  if (existsSync(binary)) return binary
  const go = spawnSync('go', ['version'], { encoding: 'utf8' })
  if (go.status !== 0) {
    throw new ToxiproxyUnavailable(
      `The network fault tests build Toxiproxy ${TOXIPROXY_VERSION} from its Go module and need the Go toolchain as \`go\` on the PATH, which is missing.`
    )
  }
  const buildDir = join(cacheDir, `${TOXIPROXY_VERSION}.building-${process.pid}`)
  await rm(buildDir, { recursive: true, force: true })
  await mkdir(buildDir, { recursive: true })
  const build = spawnSync('go', ['install', `${TOXIPROXY_MODULE}@${TOXIPROXY_VERSION}`], {
    encoding: 'utf8',
    env: { ...process.env, GOBIN: buildDir, CGO_ENABLED: '0' }
  })
  if (build.status !== 0) {
    await rm(buildDir, { recursive: true, force: true })
    throw new ToxiproxyUnavailable(
      `Building Toxiproxy ${TOXIPROXY_VERSION} with \`go install\` failed:\n${(build.stdout + build.stderr).slice(-2000)}`
    )
  }
  await mkdir(dirname(binary), { recursive: true })
  await rename(join(buildDir, 'server'), binary)
  await rm(buildDir, { recursive: true, force: true })
  return binary
}

/** Requests made to Toxiproxy's API before its 503 is taken as its answer. */
const ATTEMPTS = 4

/** The server on `port`, its output appended to `logFile`; killed if this process exits first. */
async function spawnServer(port: number, logFile: string): Promise<ChildProcess> {
  const binary = await ensureToxiproxyServer()
  const log = createWriteStream(logFile, { flags: 'a' })
  await new Promise((resolveOpen) => log.once('open', resolveOpen))
  // Its default level logs every connection at trace: megabytes a scenario, on a machine the tests share.
  const child = spawn(binary, ['-host', '127.0.0.1', '-port', String(port)], {
    stdio: ['ignore', log, log],
    env: { ...process.env, LOG_LEVEL: 'warn' }
  })
  child.once('exit', () => log.end())
  const orphanGuard = (): void => {
    child.kill('SIGKILL')
  }
  process.once('exit', orphanGuard)
  child.once('exit', () => process.removeListener('exit', orphanGuard))
  return child
}

/** Toxiproxy's toxics (its README), with the attributes each takes; times in ms, rates in KB/s. */
export type Toxic =
  | { type: 'latency'; attributes: { latency: number; jitter?: number } }
  | { type: 'bandwidth'; attributes: { rate: number } }
  | { type: 'slow_close'; attributes: { delay: number } }
  /** Data stops and the connection is closed after `timeout` ms; 0: held open, silent, until the toxic goes (a black hole). */
  | { type: 'timeout'; attributes: { timeout: number } }
  /** The connection is reset (TCP RST) after `timeout` ms; 0: at once. */
  | { type: 'reset_peer'; attributes: { timeout: number } }
  | { type: 'slicer'; attributes: { average_size: number; size_variation?: number; delay?: number } }
  /** The connection is closed after this many bytes. */
  | { type: 'limit_data'; attributes: { bytes: number } }

export interface ToxicOptions {
  /** `downstream`: what the server sends to the client (the default); `upstream`: what the client sends. */
  stream?: 'upstream' | 'downstream'
  /** The share of connections it applies to, 0 to 1 (default 1). */
  toxicity?: number
}

/** A running Toxiproxy server and its REST API (http://host:port): proxies, toxics, enabling. */
export class Toxiproxy {
  readonly url: string
  readonly #port: number
  readonly #logFile: string
  #child: ChildProcess
  #toxics = 0
  /** Times `restart` was needed. */
  restarts = 0
  #restarting: Promise<void> | undefined
  /** The proxies made, to make them again after a restart. */
  readonly #proxies: { name: string; listenPort: number; upstream: string }[] = []

  private constructor(port: number, logFile: string, child: ChildProcess) {
    this.url = `http://127.0.0.1:${port}`
    this.#port = port
    this.#logFile = logFile
    this.#child = child
  }

  static async start(port: number, logFile: string): Promise<Toxiproxy> {
    const server = new Toxiproxy(port, logFile, await spawnServer(port, logFile))
    await server.#ready()
    return server
  }

  async #ready(): Promise<void> {
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline) {
      if (this.#child.exitCode !== null) throw new ToxiproxyUnavailable(`Toxiproxy exited with ${this.#child.exitCode}; see ${this.#logFile}`)
      if (
        await fetch(`${this.url}/version`).then(
          (r) => r.ok,
          () => false
        )
      )
        return
      await sleep(100)
    }
    await this.stop()
    throw new ToxiproxyUnavailable(`Toxiproxy was not ready on port ${this.#port} within 20 s; see ${this.#logFile}`)
  }

  /**
   * Toxiproxy killed and started again on its port, with the same proxies and no toxic. Every connection
   * through it drops. The way out when it wedges: taking off a latency toxic whose next hop stopped reading
   * (a peer killed mid-answer) blocks forever while holding the proxy's lock, and every later request about
   * that proxy times out (Shopify/toxiproxy#558, open; the latency toxic's send to its output does not listen
   * for the interrupt that the removal waits on).
   *
   * Once per wedge: a caller passes `since`, the count of restarts when its change began, and when a restart
   * came after that (another change that failed beside it, such as the other toxics of one fault coming off
   * together) it only waits for that one. A restart under way is joined, never started twice on the port.
   */
  async restart(since = this.restarts): Promise<void> {
    if (this.restarts === since) this.#restarting ??= this.#restartNow().finally(() => (this.#restarting = undefined))
    await this.#restarting
  }

  async #restartNow(): Promise<void> {
    this.restarts++
    if (this.#child.pid && this.#child.exitCode === null) await terminate(this.#child.pid, 'SIGKILL', 5000)
    this.#child = await spawnServer(this.#port, this.#logFile)
    await this.#ready()
    for (const proxy of this.#proxies) await this.#createProxy(proxy.name, proxy.listenPort, proxy.upstream)
  }

  /**
   * One request to Toxiproxy's API. It answers 503 when its own handler timeout passes (taking off a latency
   * toxic that holds much data on a busy link, or a reset of them all, took longer), and the work goes on
   * behind that answer: the request is made again, ATTEMPTS times in all (its handler timeout is 25 s, so
   * about two minutes; a proxy it has wedged on never answers, see `restart`). `done` says which other answers mean the
   * work is done already (a toxic gone, or there).
   */
  async #call(method: string, path: string, body?: unknown, done: number[] = []): Promise<unknown> {
    for (let attempt = 1; ; attempt++) {
      const response = await fetch(`${this.url}${path}`, {
        method,
        ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      })
      const text = await response.text()
      if (response.ok || done.includes(response.status)) return text && response.ok ? JSON.parse(text) : undefined
      if (response.status !== 503 || attempt >= ATTEMPTS) throw new Error(`Toxiproxy ${method} ${path}: ${response.status} ${text}`)
      await sleep(500 * attempt)
    }
  }

  /** A proxy listening on 127.0.0.1:`listenPort` that forwards to `upstream` (host:port). */
  async createProxy(name: string, listenPort: number, upstream: string): Promise<void> {
    await this.#createProxy(name, listenPort, upstream)
    this.#proxies.push({ name, listenPort, upstream })
  }

  async #createProxy(name: string, listenPort: number, upstream: string): Promise<void> {
    await this.#call('POST', '/proxies', { name, listen: `127.0.0.1:${listenPort}`, upstream, enabled: true })
  }

  /** Adds a toxic to a proxy; returns its name, for `removeToxic`. */
  async addToxic(proxy: string, toxic: Toxic, options: ToxicOptions = {}): Promise<string> {
    const name = `${toxic.type}-${++this.#toxics}`
    await this.#call(
      'POST',
      `/proxies/${proxy}/toxics`,
      { name, type: toxic.type, stream: options.stream ?? 'downstream', toxicity: options.toxicity ?? 1, attributes: toxic.attributes },
      [409] // asked again after a 503: the first request had added it
    )
    return name
  }

  /** Removes a toxic; asked again while Toxiproxy answers 503 (see #call), which once left one on for 48 minutes of a soak. */
  async removeToxic(proxy: string, toxic: string): Promise<void> {
    await this.#call('DELETE', `/proxies/${proxy}/toxics/${toxic}`, undefined, [404])
  }

  /**
   * Disabled, a proxy closes the connections it holds and refuses new ones: both ends see the link go, as
   * when a firewall rejects; a silent partition (nothing answers) is the `timeout` toxic with 0.
   */
  async setEnabled(proxy: string, enabled: boolean): Promise<void> {
    await this.#call('POST', `/proxies/${proxy}`, { enabled })
  }

  /** Every proxy enabled and every toxic removed. */
  async reset(): Promise<void> {
    await this.#call('POST', '/reset')
  }

  async stop(): Promise<void> {
    if (this.#child.pid && this.#child.exitCode === null) await terminate(this.#child.pid, 'SIGTERM', 5000)
  }
}
