import type { Migration } from 'kysely/migration'
import * as cifService from '../../../cif/migrations/0001_cif_service.ts'
import * as syncer from '../../../syncer/migrations/0002_syncer.ts'

/** Every migration, in order. Names are versions: never rename or edit a released one, add a new one. */
export const migrations: Record<string, Migration> = {
  '0001_cif_service': cifService,
  '0002_syncer': syncer
}
