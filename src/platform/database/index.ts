import { type ColumnType, type CompiledQuery, Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient, type QueryResult } from 'kysely'
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration'
import pg from 'pg'

/**
 * Errors that say PostgreSQL could not be reached or went away mid-statement (restarted, shut down, the
 * network cut), as opposed to a statement it refused: the same request may succeed in a few seconds. SQLSTATE
 * class 08 (connection exception), 57P01-57P03 (shut down, crashed, starting up), 53300 (no connection left),
 * the socket's own errors, and the messages `pg` and its pool raise without a code.
 */
const unreachableSqlStates = /^(08...|57P0[123]|53300)$/
const unreachableSocketCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])
const unreachableMessages =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended unexpectedly/

export function isDatabaseUnreachable(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const code = (error as { code?: unknown }).code
  if (typeof code === 'string' && (unreachableSqlStates.test(code) || unreachableSocketCodes.has(code))) return true
  return unreachableMessages.test(error.message)
}

/** A column the database fills in: optional on insert, present when read. */
export type DefaultedTimestamp = ColumnType<Date, Date | string | undefined, Date | string>

export interface DatabaseHandle<DB> {
  db: Kysely<DB>
  pool: pg.Pool
  close(): Promise<void>
}

/**
 * A pool and a Kysely instance typed with the tables of the code that opens it: each service knows only its
 * own tables (and the outbox's), so the type checker keeps it out of the others'.
 */
export function openDatabase<DB>(connectionString: string, options: { maxConnections?: number } = {}): DatabaseHandle<DB> {
  // TCP keepalive: a connection whose server vanished without a word (a failover, a dropped route) is
  // found dead by the system's keepalive probes, in minutes, instead of holding a statement, and
  // whatever waits on it, for good.
  const pool = new pg.Pool({ connectionString, max: options.maxConnections ?? 10, keepAlive: true, keepAliveInitialDelayMillis: 10_000 })
  // A client losing its server (a PostgreSQL restart) must not crash the process: an idle one reports on
  // the pool, a checked-out one (between two statements of a transaction) on itself. Either way the next
  // statement fails, and the pool does not hand that client out again.
  pool.on('error', () => {})
  pool.on('connect', (client) => client.on('error', () => {}))
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: preparing(pool), controlClient: pg.Client }) })
  return { db, pool, close: () => db.destroy() }
}

/** A Kysely instance, a transaction or a connection: whatever runs a compiled query. */
export interface QueryRunner {
  executeQuery<R>(query: CompiledQuery<R>): Promise<QueryResult<R>>
}

/** Statement text → the name it is prepared under on every connection (see executePrepared). */
const preparedStatementNames = new Map<string, string>()

/**
 * Runs a hot statement as a named prepared statement: each connection parses and plans its text once, and
 * from then on only binds and executes it. Only for statements whose text does not vary from call to call
 * (arrays as one parameter, not IN-lists), since every connection keeps every prepared text for its lifetime;
 * everything else runs as before, parsed and planned on each call.
 */
export function executePrepared<R>(executor: QueryRunner, query: CompiledQuery<R>): Promise<QueryResult<R>> {
  if (!preparedStatementNames.has(query.sql)) preparedStatementNames.set(query.sql, `prepared_${preparedStatementNames.size + 1}`)
  return executor.executeQuery(query)
}

/**
 * Bumped when PostgreSQL refuses a prepared plan as stale (a migration ran): from then on every statement is
 * prepared again under a name of the new generation, on every connection, as it is next used. So each
 * statement text fails at most once in the process after a migration, not once on each connection.
 */
let generation = 0
/**
 * A migration that changes a table's columns (`returning *`, `select t.*`) makes the plan a connection
 * prepared before it return rows of another shape, which PostgreSQL refuses until the statement is prepared
 * again: "cached plan must not change result type".
 */
function isStalePlan(error: unknown): boolean {
  return error instanceof pg.DatabaseError && error.code === '0A000' && /cached plan must not change result type/.test(error.message)
}

/**
 * The pool as Kysely sees it, with clients that send a statement marked by executePrepared under its name
 * (pg then parses it once per connection). Kysely's driver hands `pg` only the text and the parameters, so
 * the name is added here, beneath it.
 */
function preparing(pool: pg.Pool): PostgresPool {
  const clients = new WeakMap<pg.PoolClient, PostgresPoolClient>()
  const wrap = (client: pg.PoolClient): PostgresPoolClient => {
    const runPrepared = async (name: string, text: string, values: unknown[]) => {
      const tried = generation
      try {
        return await client.query({ name: `${name}_${tried}`, text, values })
      } catch (error) {
        if (!isStalePlan(error)) throw error
        // PostgreSQL refuses to run the old plan and keeps the statement: a new name parses the text again
        // (old ones stay unused until their connection closes). The refusal comes before anything ran, so
        // outside a transaction the statement is simply run again; inside one the transaction is aborted
        // and fails, and the caller's retry finds the statement prepared anew.
        if (generation === tried) generation++
        if (client.getTransactionStatus() !== 'I') throw error
        return client.query({ name: `${name}_${generation}`, text, values })
      }
    }
    return {
      get processID() {
        return (client as pg.PoolClient & { processID?: number }).processID
      },
      release: (destroy) => client.release(destroy),
      query: ((text: string, values: unknown[]) => {
        const name = preparedStatementNames.get(text)
        return name ? runPrepared(name, text, values) : client.query(text, values)
      }) as unknown as PostgresPoolClient['query']
    }
  }
  return {
    options: pool.options,
    end: () => pool.end(),
    connect: async () => {
      const client = await pool.connect()
      const known = clients.get(client)
      if (known) return known
      const wrapped = wrap(client)
      clients.set(client, wrapped)
      return wrapped
    }
  }
}

/**
 * Applies every pending migration; several processes may call it at once (Kysely takes a lock). One
 * history for the whole database (the names are versions, in order), whichever service a migration
 * belongs to.
 */
export async function migrateToLatest(db: Kysely<unknown>, migrations: Record<string, Migration>): Promise<string[]> {
  const provider: MigrationProvider = { getMigrations: async () => migrations }
  const { error, results } = await new Migrator({ db, provider }).migrateToLatest()
  if (error) throw error instanceof Error ? error : new Error(String(error))
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
}
