import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { problemTypeUri } from '../../src/contracts/problems.ts'
import { openDatabase } from '../../src/platform/database/index.ts'
import { createHttpServer } from '../../src/platform/http/server.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { freePort } from '../integration/free-port.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'

// Found by the soak: with PostgreSQL restarting or its link cut, the CIF service answered its callers 500
// "An unexpected error occurred", which tells a source system nothing about whether to try again. A database
// out of reach is a 503 with Retry-After; a statement the database refused stays a 500.

let database: OwnDatabase
const app = await createHttpServer({
  logger: createLogger('silent', 'test'),
  bodyLimitBytes: 1024,
  title: 't',
  description: 'd',
  readinessChecks: {}
})

beforeAll(async () => {
  database = await ownDatabase(2)
  // No server listens there: the pool's connect is refused.
  const nowhere = openDatabase<unknown>(`postgres://postgres:local-only@127.0.0.1:${await freePort()}/none`, { maxConnections: 1 })
  app.get('/refused-connection', async () => sql`select 1`.execute(nowhere.db))
  // The connection goes in the middle of a transaction, as when PostgreSQL is restarted under a request.
  app.get('/connection-lost', async () =>
    database.db.transaction().execute(async (trx) => {
      const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)
      await sql`select pg_terminate_backend(${rows[0]!.pid})`.execute(database.db)
      return sql`select 1`.execute(trx)
    })
  )
  app.get('/statement-refused', async () => sql`select 1 / 0`.execute(database.db))
  app.addHook('onClose', () => nowhere.close())
})

afterAll(async () => {
  await app.close()
  await database.close()
})

describe('a request while the database cannot be reached', () => {
  it.each(['/refused-connection', '/connection-lost'])('%s is a 503 problem with Retry-After: nothing was stored, try again', async (url) => {
    const response = await app.inject({ method: 'GET', url })
    expect(response.statusCode).toBe(503)
    expect(response.headers['retry-after']).toBe('5')
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(response.json()).toMatchObject({ type: problemTypeUri('service-unavailable'), status: 503, instance: url })
  })

  it('is told apart from a statement the database refused, which stays a 500', async () => {
    const response = await app.inject({ method: 'GET', url: '/statement-refused' })
    expect(response.statusCode).toBe(500)
    expect(response.headers['retry-after']).toBeUndefined()
    expect(response.json()).toMatchObject({ type: problemTypeUri('internal-error') })
  })
})
