import type { Migration } from 'kysely/migration'
import * as cifService from './0001_cif_service.ts'
import * as customerErasure from './0004_cif_customer_erasure.ts'
import * as idempotencyInCreate from './0008_cif_idempotency_in_create.ts'

/** The CIF service's migrations. Names are versions: never rename or edit a released one, add a new one. */
export const cifMigrations: Record<string, Migration> = {
  '0001_cif_service': cifService,
  '0004_cif_customer_erasure': customerErasure,
  '0008_cif_idempotency_in_create': idempotencyInCreate
}
