import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { migrateToLatest, openDatabase } from '../../src/platform/database/index.ts'
import { startLocalPostgres } from '../../src/platform/local/postgres.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { migrations } from '../../src/roles/migrations.ts'
import { freePort } from '../integration/free-port.ts'
import { TEMPLATE_DATABASE } from './database.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    /** A database on the test server with the schema applied: each test file copies it into one of its own. */
    templateDatabaseUrl: string
  }
}

/**
 * For the store and route tests, which need PostgreSQL and nothing else: the project's own local server
 * in a fresh folder (or the one DATABASE_URL names, whose role must be allowed to create databases),
 * with a migrated template database that every test file copies, so files can run in parallel.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let dataDir: string | undefined
  let serverUrl = process.env.DATABASE_URL
  let stopServer = async (): Promise<void> => {}
  if (!serverUrl) {
    dataDir = await mkdtemp(join(tmpdir(), 'cif-syncer-db-test-'))
    await chmod(dataDir, 0o755) // PostgreSQL runs as the postgres user when we are root
    const local = await startLocalPostgres(
      join(dataDir, 'postgres'),
      await freePort(),
      createLogger(process.env.LOG_LEVEL ?? 'warn', 'test-postgres')
    )
    serverUrl = local.url
    stopServer = local.stop
  }
  const admin = openDatabase<unknown>(serverUrl, { maxConnections: 1 })
  const url = new URL(serverUrl)
  url.pathname = `/${TEMPLATE_DATABASE}`
  try {
    const { sql } = await import('kysely')
    await sql.raw(`drop database if exists ${TEMPLATE_DATABASE}`).execute(admin.db)
    await sql.raw(`create database ${TEMPLATE_DATABASE}`).execute(admin.db)
    const template = openDatabase<unknown>(url.href, { maxConnections: 1 })
    try {
      await migrateToLatest(template.db, migrations)
    } finally {
      await template.close()
    }
  } finally {
    await admin.close()
  }
  project.provide('templateDatabaseUrl', url.href)
  return async () => {
    await stopServer()
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  }
}
