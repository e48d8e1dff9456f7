import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { inject } from 'vitest'
import { type DatabaseHandle, openDatabase } from '../../src/platform/database/index.ts'
import { TEMPLATE_DATABASE, type TestDatabase } from './database.ts'

export interface OwnDatabase extends DatabaseHandle<TestDatabase> {
  url: string
}

/**
 * A database of the test file's own, copied from the migrated template (postgres-setup.ts): nothing
 * another file does can be seen in it, so files run in parallel. Dropped on close.
 */
export async function ownDatabase(maxConnections = 5): Promise<OwnDatabase> {
  const templateUrl = new URL(inject('templateDatabaseUrl'))
  const name = `cif_syncer_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`
  const adminUrl = new URL(templateUrl)
  adminUrl.pathname = '/postgres'
  const admin = openDatabase<unknown>(adminUrl.href, { maxConnections: 1 })
  try {
    // A template may be copied only while nobody is connected to it; parallel files take turns.
    for (let tries = 0; ; tries++) {
      try {
        await sql.raw(`create database ${name} template ${TEMPLATE_DATABASE}`).execute(admin.db)
        break
      } catch (error) {
        if (tries >= 50 || !/being accessed by other users/.test(String(error))) throw error
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  } finally {
    await admin.close()
  }
  const url = new URL(templateUrl)
  url.pathname = `/${name}`
  const handle = openDatabase<TestDatabase>(url.href, { maxConnections })
  return {
    ...handle,
    url: url.href,
    close: async () => {
      await handle.close()
      const dropper = openDatabase<unknown>(adminUrl.href, { maxConnections: 1 })
      try {
        await sql.raw(`drop database if exists ${name} with (force)`).execute(dropper.db)
      } finally {
        await dropper.close()
      }
    }
  }
}
