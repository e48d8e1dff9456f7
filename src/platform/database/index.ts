import { Kysely, PostgresDialect } from 'kysely'
import { Migrator, type MigrationProvider } from 'kysely/migration'
import pg from 'pg'
import { migrations } from './migrations/index.ts'
import type { Database } from './tables.ts'

export type { Database } from './tables.ts'
export type Db = Kysely<Database>

export interface DatabaseHandle {
  db: Db
  pool: pg.Pool
  close(): Promise<void>
}

export function openDatabase(connectionString: string, options: { maxConnections?: number } = {}): DatabaseHandle {
  // TCP keepalive: a connection whose server vanished without a word (a failover, a dropped route) is
  // found dead by the system's keepalive probes, in minutes, instead of holding a statement, and
  // whatever waits on it, for good.
  const pool = new pg.Pool({ connectionString, max: options.maxConnections ?? 10, keepAlive: true, keepAliveInitialDelayMillis: 10_000 })
  // A client losing its server (a PostgreSQL restart) must not crash the process: an idle one reports on
  // the pool, a checked-out one (between two statements of a transaction) on itself. Either way the next
  // statement fails, and the pool does not hand that client out again.
  pool.on('error', () => {})
  pool.on('connect', (client) => client.on('error', () => {}))
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  return { db, pool, close: () => db.destroy() }
}

const provider: MigrationProvider = { getMigrations: async () => migrations }

/** Applies every pending migration; several processes may call it at once (Kysely takes a lock). */
export async function migrateToLatest(db: Db): Promise<string[]> {
  const { error, results } = await new Migrator({ db: db as Kysely<any>, provider }).migrateToLatest()
  if (error) throw error instanceof Error ? error : new Error(String(error))
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
}
