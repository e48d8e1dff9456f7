import { type CompiledQuery, type Kysely, type RawBuilder, sql } from 'kysely'

/** A parameter as an SQL literal, for EXECUTE: the kinds the claims take (text, numbers, arrays of numbers). */
function literal(value: unknown): string {
  if (typeof value === 'number') return String(value)
  if (typeof value === 'string') return `'${value.replaceAll("'", "''")}'`
  if (Array.isArray(value) && value.every((item) => typeof item === 'number')) return `'{${value.join(',')}}'`
  throw new Error(`no literal for ${JSON.stringify(value)}`)
}

/** Runs `run` on one connection with a planner setting changed for it alone, and set back after. */
async function withPlannerSetting<DB, T>(db: Kysely<DB>, setting: string, value: string, run: (connection: Kysely<DB>) => Promise<T>): Promise<T> {
  return db.connection().execute(async (connection) => {
    await sql`select set_config(${setting}, ${value}, false)`.execute(connection)
    try {
      return await run(connection)
    } finally {
      await sql.raw(`reset ${setting}`).execute(connection)
    }
  })
}

/**
 * The plan PostgreSQL makes for `statement` with sequential scans priced out: a plan that still reads a whole
 * table does so because no index can serve it.
 */
export async function planWithoutSeqScans<DB>(db: Kysely<DB>, statement: RawBuilder<unknown>): Promise<string> {
  return withPlannerSetting(db, 'enable_seqscan', 'off', async (connection) => {
    const { rows } = await sql<{ 'QUERY PLAN': string }>`explain ${statement}`.execute(connection)
    return rows.map((row) => row['QUERY PLAN']).join('\n')
  })
}

/**
 * The plan a statement run through executePrepared settles on: a generic one, made without its parameters'
 * values, from the table's statistics alone. With `analyze` the statement runs (a claim takes what it
 * claims), and the plan says what each step read.
 */
export async function genericPlan<DB>(db: Kysely<DB>, statement: CompiledQuery, options: { analyze?: boolean } = {}): Promise<string> {
  return withPlannerSetting(db, 'plan_cache_mode', 'force_generic_plan', async (connection) => {
    await sql.raw(`prepare planned as ${statement.sql}`).execute(connection)
    try {
      const execute = `execute planned(${statement.parameters.map(literal).join(', ')})`
      const { rows } = await sql.raw(`explain (${options.analyze ? 'analyze, ' : ''}format json) ${execute}`).execute(connection)
      return JSON.stringify(rows[0])
    } finally {
      await sql.raw('deallocate planned').execute(connection)
    }
  })
}
