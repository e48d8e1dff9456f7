import type { Migration } from 'kysely/migration'
import { cifMigrations } from '../cif/migrations/index.ts'
import { syncerMigrations } from '../syncer/migrations/index.ts'

/**
 * The database's one migration history: each service's migrations, numbered in one sequence across
 * services (a new one takes the next number, whichever service it belongs to), applied in name order.
 */
export const migrations: Record<string, Migration> = { ...cifMigrations, ...syncerMigrations }
