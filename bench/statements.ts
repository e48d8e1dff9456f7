// What PostgreSQL spent its time on during a phase (pg_stat_statements, preloaded by the local server):
// the phases that measure a pipe's cost per delivery or per create record their top statements beside it.
import { type Kysely, sql } from 'kysely'

export interface TopStatement {
  query: string
  calls: string
  total_ms: number
  mean_ms: string
  /** Shared buffers read per call: what a statement reads, steadier than its time on a noisy machine. */
  buffers_per_call: string
}

/** Starts counting from zero (the extension is created if missing). */
export async function resetStatements<DB>(db: Kysely<DB>): Promise<void> {
  await sql`create extension if not exists pg_stat_statements`.execute(db)
  await sql`select pg_stat_statements_reset()`.execute(db)
}

/** The statements that took the most time since the last reset, their text cut to 160 characters. */
export async function topStatements<DB>(db: Kysely<DB>, limit = 12): Promise<TopStatement[]> {
  const { rows } = await sql<TopStatement>`
    select left(regexp_replace(query, '\\s+', ' ', 'g'), 160) as query, calls, round(total_exec_time) as total_ms,
           round(mean_exec_time::numeric, 3) as mean_ms,
           round((shared_blks_hit + shared_blks_read)::numeric / greatest(calls, 1), 1) as buffers_per_call
    from pg_stat_statements order by total_exec_time desc limit ${limit}`.execute(db)
  return rows
}
