import type { Kysely } from 'kysely'
import type { CifDatabase, CifTables } from '../../src/cif/tables.ts'
import type { OutboxTables } from '../../src/outbox/tables.ts'
import type { SyncerDatabase, SyncerTables } from '../../src/syncer/tables.ts'

/** Tests look at every table, across services; the services themselves each see only their own. */
export type TestDatabase = CifDatabase & SyncerDatabase

/** The same connection as one service sees it, to call that service's stores. */
export const asCif = (db: Kysely<TestDatabase>): Kysely<CifDatabase> => db.$omitTables<keyof SyncerTables>()
export const asSyncer = (db: Kysely<TestDatabase>): Kysely<SyncerDatabase> => db.$omitTables<keyof CifTables>()
export const asOutbox = (db: Kysely<TestDatabase>): Kysely<OutboxTables> => db.$omitTables<keyof CifTables | keyof SyncerTables>()

/** The migrated database each store or route test file copies into one of its own (own-database.ts). */
export const TEMPLATE_DATABASE = 'cif_syncer_test_template'
