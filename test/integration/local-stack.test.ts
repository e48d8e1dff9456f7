import { type ChildProcess, spawn } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, describe, expect, it } from 'vitest'
import { simulatedSystems } from '../../src/simulator/end-system-simulator.ts'
import { freePort, freePortRange } from './free-port.ts'

// `npm start` as a newcomer runs it, on free ports and in a folder of its own: what it prints, and that
// it goes, PostgreSQL and Kafka with it, when npm is told to stop.
const repoRoot = resolve(import.meta.dirname, '../..')
let dataDir = ''
let npm: ChildProcess | undefined

const portAnswers = (port: number): Promise<boolean> =>
  new Promise((resolveAnswer) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolveAnswer(true)
    })
    socket.once('error', () => resolveAnswer(false))
  })

async function stopLeftovers(): Promise<void> {
  for (const pidFile of ['postgres/postmaster.pid', 'kafka/broker.pid']) {
    const pid = Number((await readFile(join(dataDir, pidFile), 'utf8').catch(() => '')).split('\n')[0])
    if (pid > 1) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {}
    }
  }
}

afterAll(async () => {
  if (npm?.pid) {
    try {
      process.kill(-npm.pid, 'SIGKILL')
    } catch {}
  }
  if (dataDir) {
    await stopLeftovers()
    await rm(dataDir, { recursive: true, force: true })
  }
})

describe('npm start', () => {
  it('prints readable logs and the banner once every service is ready, and stops everything when npm is stopped', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'cif-syncer-start-'))
    await chmod(dataDir, 0o755) // PostgreSQL runs as the postgres user when we are root
    // The simulator takes its own port and the next one for each system it simulates.
    const simulatorPort = await freePortRange(simulatedSystems.length + 1)
    const ports = {
      CIF_PORT: await freePort(),
      SYNCER_PORT: await freePort(),
      SIMULATOR_PORT: simulatorPort,
      LOCAL_POSTGRES_PORT: await freePort(),
      KAFKA_PORT: await freePortRange(2) // and the next one for its controller
    }
    const env = {
      ...process.env,
      ...Object.fromEntries(Object.entries(ports).map(([name, port]) => [name, String(port)])),
      CIF_DATA_DIR: dataDir,
      CORE_BANKING_URL: `http://127.0.0.1:${simulatorPort + 1}`,
      CRM_URL: `http://127.0.0.1:${simulatorPort + 2}`,
      CARDS_URL: `http://127.0.0.1:${simulatorPort + 3}`,
      LOG_LEVEL: 'info',
      LOG_FORMAT: ''
    }
    // A group of its own, so that whatever is left can be killed after a failure.
    const started = spawn('npm', ['start'], { cwd: repoRoot, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    npm = started
    let output = ''
    started.stdout!.on('data', (chunk) => {
      output += chunk
    })
    started.stderr!.on('data', (chunk) => {
      output += chunk
    })
    const deadline = Date.now() + 240_000
    while (!output.includes('local stack is up') && Date.now() < deadline && started.exitCode === null) await sleep(200)
    expect(output).toContain('local stack is up')

    // Ready when it says so: the syncer (the last to start) at once, not a second later.
    expect((await fetch(`http://127.0.0.1:${ports.SYNCER_PORT}/health/ready`)).status).toBe(200)
    // A person's log: time, level, service, message; no JSON lines, no request at info.
    expect(output).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: cif-service: Server listening at/m)
    expect(output).not.toMatch(/^\{"level"/m)
    expect(output).not.toContain('request completed')

    // The banner's sample create works as printed.
    const body = /-d '(\{.*\})'/.exec(output)?.[1]
    const created = await fetch(`http://127.0.0.1:${ports.CIF_PORT}/v1/customers`, {
      method: 'POST',
      headers: { authorization: 'Bearer local-branch-portal-key', 'content-type': 'application/json' },
      body
    })
    expect(created.status).toBe(201)

    // npm goes (SIGTERM), leaving its script behind: the stack notices and stops, servers included.
    process.kill(started.pid!, 'SIGTERM')
    const allPorts = [...Object.values(ports), ...simulatedSystems.map((_, i) => simulatorPort + 1 + i)]
    const stopBy = Date.now() + 90_000
    let open = allPorts
    while (Date.now() < stopBy) {
      const answers = await Promise.all(allPorts.map(portAnswers))
      open = allPorts.filter((_, i) => answers[i])
      if (open.length === 0) break
      await sleep(500)
    }
    expect(open).toEqual([])
    expect(output).toContain('the process that started this one is gone: stopping')
  }, 360_000)
})
