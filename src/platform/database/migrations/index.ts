import type { Migration } from 'kysely/migration'
import * as cifService from './0001_cif_service.ts'

/** Every migration, in order. Names are versions: never rename or edit a released one, add a new one. */
export const migrations: Record<string, Migration> = {
  '0001_cif_service': cifService
}
