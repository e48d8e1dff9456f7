import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))

/**
 * SERVICE_CPU_PROFILE_DIR: each service writes a V8 CPU profile of its life there when it exits (stopped, not
 * killed); docs/performance.md, "How to reproduce". On the command line, so that only the services are
 * profiled: in NODE_OPTIONS it would also reach npm, which runs on the machine's Node 20 and refuses it.
 */
const profiling = process.env.SERVICE_CPU_PROFILE_DIR ? ['--cpu-prof', '--cpu-prof-dir', process.env.SERVICE_CPU_PROFILE_DIR] : []

/**
 * One service role (`cif-service`, `syncer`, `simulator`) as a process of its own, as in production:
 * it can be killed with SIGKILL and started again, and measured.
 */
export class ServiceProcess {
  readonly role: string
  readonly readyUrl: string
  readonly #env: Record<string, string>
  readonly #logFile: string
  #child: ChildProcess | undefined

  constructor(role: string, readyUrl: string, env: Record<string, string>, logFile: string) {
    this.role = role
    this.readyUrl = readyUrl
    this.#env = env
    this.#logFile = logFile
  }

  get pid(): number | undefined {
    return this.#child?.exitCode === null ? this.#child.pid : undefined
  }

  async start(timeoutMs = 60_000): Promise<void> {
    const log = createWriteStream(this.#logFile, { flags: 'a' })
    await new Promise((resolve) => log.once('open', resolve))
    const child = spawn(process.execPath, [...profiling, cli, this.role], { env: { ...process.env, ...this.#env }, stdio: ['ignore', log, log] })
    this.#child = child
    // If the harness itself dies, its services must not live on holding ports and files.
    const orphanGuard = (): void => {
      child.kill('SIGKILL')
    }
    process.once('exit', orphanGuard)
    child.once('exit', () => {
      log.end()
      process.removeListener('exit', orphanGuard)
    })
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`${this.role} exited with ${child.exitCode}; see ${this.#logFile}`)
      try {
        if ((await fetch(this.readyUrl)).ok) return
      } catch {
        // not listening yet
      }
      await sleep(100)
    }
    // Not left running: it would hold its port, and the next start of this service would fail on it, or
    // it would come up later beside the next one, out of the harness's reach (found by the soak).
    await this.kill('SIGKILL')
    throw new Error(`${this.role} was not ready within ${timeoutMs} ms; see ${this.#logFile}`)
  }

  /** SIGKILL: no shutdown hook runs, as when a machine dies. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child
    if (!child || child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill(signal)
    await exited
  }

  async stop(): Promise<void> {
    const child = this.#child
    if (!child || child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    await exited
    clearTimeout(timer)
  }
}
