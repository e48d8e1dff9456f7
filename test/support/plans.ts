import { type CompiledQuery, type Kysely, sql } from 'kysely'

/** A parameter as an SQL literal, for EXECUTE: the kinds the claims take (text, numbers, arrays of numbers). */
function literal(value: unknown): string {
  if (typeof value === 'number') return String(value)
  if (typeof value === 'string') return `'${value.replaceAll("'", "''")}'`
  if (Array.isArray(value) && value.every((item) => typeof item === 'number')) return `'{${value.join(',')}}'`
  throw new Error(`no literal for ${JSON.stringify(value)}`)
}

/**
 * The plan a statement run through executePrepared settles on: a generic one, made without its parameters'
 * values, from the table's statistics alone. With `analyze` the statement runs (a claim takes what it
 * claims), and the plan says what each step read.
 */
export async function genericPlan<DB>(db: Kysely<DB>, statement: CompiledQuery, options: { analyze?: boolean } = {}): Promise<string> {
  return db.connection().execute(async (connection) => {
    await sql`set plan_cache_mode = force_generic_plan`.execute(connection)
    await sql.raw(`prepare planned as ${statement.sql}`).execute(connection)
    try {
      const execute = `execute planned(${statement.parameters.map(literal).join(', ')})`
      const { rows } = await sql.raw(`explain (${options.analyze ? 'analyze, ' : ''}format json) ${execute}`).execute(connection)
      return JSON.stringify(rows[0])
    } finally {
      await sql.raw('deallocate planned').execute(connection)
      await sql`reset plan_cache_mode`.execute(connection)
    }
  })
}
