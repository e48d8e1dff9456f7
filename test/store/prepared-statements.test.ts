import { type Kysely, sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CustomerCreator } from '../../src/cif/customer-store.ts'
import { executePrepared } from '../../src/platform/database/index.ts'
import { recordAttempts } from '../../src/syncer/delivery/delivery-store.ts'
import { newPerson } from '../integration/helpers.ts'
import { asCif, asSyncer } from '../support/database.ts'
import { devSigningKey } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { claim, decisions, finished, newCifId, newEndSystem, storeVersions } from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase(2)
})
afterAll(async () => database?.close())

/** The statements prepared on the connection `db` runs on, and how often each was executed since. */
async function preparedOn<DB>(db: Kysely<DB>): Promise<{ statement: string; runs: number }[]> {
  const { rows } = await sql<{ statement: string; runs: number }>`
    select statement, (generic_plans + custom_plans)::integer as runs from pg_prepared_statements order by statement`.execute(db)
  return rows
}

describe('prepared statements', () => {
  it('prepares a statement run through executePrepared once per connection, and runs it again by name', async () => {
    await database.db.connection().execute(async (connection) => {
      const square = (n: number) => sql<{ square: number }>`select ${n}::integer * ${n}::integer as square`.compile(connection)
      const answers = []
      for (const n of [2, 3, 4]) answers.push((await executePrepared(connection, square(n))).rows[0]!.square)
      expect(answers).toEqual([4, 9, 16])
      expect((await preparedOn(connection)).filter((p) => p.statement === square(0).sql)).toEqual([{ statement: square(0).sql, runs: 3 }])
    })
  })

  it('leaves every other statement unprepared', async () => {
    await database.db.connection().execute(async (connection) => {
      const before = await preparedOn(connection)
      expect((await sql<{ n: number }>`select ${5}::integer as n`.execute(connection)).rows).toEqual([{ n: 5 }])
      await connection.selectFrom('customer').select('cif_id').limit(1).execute()
      expect(await preparedOn(connection)).toEqual(before)
    })
  })

  it("runs a create's statements prepared, and still creates the customer", async () => {
    await database.db.connection().execute(async (connection) => {
      const caller = { sourceSystem: 'branch-portal', may: () => true }
      const creator = new CustomerCreator(asCif(connection), devSigningKey)
      const person = newPerson()
      const created = await creator.create(person as never, caller)
      await creator.create(newPerson() as never, caller, {
        key: 'prepared-1',
        requestHash: 'h',
        answer: (customer) => ({ status: 201, body: customer, headers: {} })
      })
      const prepared = (await preparedOn(connection)).filter((p) => /\b(customer|cif_number_seq)\b/.test(p.statement))
      expect(prepared).toHaveLength(2)
      expect(prepared).toEqual(
        expect.arrayContaining([
          { statement: expect.stringContaining('insert into idempotency_key'), runs: 2 },
          { statement: expect.stringContaining("nextval('cif_number_seq')"), runs: 2 }
        ])
      )
      if (created.kind !== 'created') throw new Error('expected a new customer')
      const stored = await connection.selectFrom('customer').select(['cif_id', 'external_id']).where('cif_id', '=', created.customer.cifId).execute()
      expect(stored).toEqual([{ cif_id: created.customer.cifId, external_id: person.externalId }])
    })
  })

  it('prepares a statement again once a migration changed what it returns, outside a transaction at once', async () => {
    await database.db.connection().execute(async (connection) => {
      await sql`create table reshaped_outside (id integer)`.execute(connection)
      await sql`insert into reshaped_outside values (1)`.execute(connection)
      const all = sql<Record<string, unknown>>`select * from reshaped_outside where id = ${1}`.compile(connection)
      expect((await executePrepared(connection, all)).rows).toEqual([{ id: 1 }])
      await sql`alter table reshaped_outside add column note text default 'added'`.execute(connection)
      expect((await executePrepared(connection, all)).rows).toEqual([{ id: 1, note: 'added' }])
      expect((await executePrepared(connection, all)).rows).toEqual([{ id: 1, note: 'added' }])
    })
  })

  it('inside a transaction, fails that transaction only: the next one finds the statement prepared again', async () => {
    await database.db.connection().execute(async (connection) => {
      await sql`create table reshaped_inside (id integer)`.execute(connection)
      await sql`insert into reshaped_inside values (1)`.execute(connection)
      const all = sql<Record<string, unknown>>`select * from reshaped_inside where id = ${1}`.compile(connection)
      expect((await executePrepared(connection, all)).rows).toEqual([{ id: 1 }])
      await sql`alter table reshaped_inside add column note text default 'added'`.execute(connection)
      const read = () => connection.transaction().execute(async (trx) => (await executePrepared(trx, all)).rows)
      await expect(read()).rejects.toThrow(/cached plan must not change result type/)
      expect(await read()).toEqual([{ id: 1, note: 'added' }])
    })
  })

  it('after one connection meets a plan made stale by a migration, prepares again on every connection', async () => {
    await sql`create table reshaped_everywhere (id integer)`.execute(database.db)
    await sql`insert into reshaped_everywhere values (1)`.execute(database.db)
    const all = sql<Record<string, unknown>>`select * from reshaped_everywhere where id = ${1}`.compile(database.db)
    let firstDone!: () => void
    const firstReady = new Promise<void>((resolve) => (firstDone = resolve))
    let altered!: () => void
    const alteredNow = new Promise<void>((resolve) => (altered = resolve))
    // Two connections of the pool (it has two), each with the statement prepared before the migration.
    const second = database.db.connection().execute(async (connection) => {
      expect((await executePrepared(connection, all)).rows).toEqual([{ id: 1 }])
      firstDone()
      await alteredNow
      return connection.transaction().execute(async (trx) => (await executePrepared(trx, all)).rows)
    })
    await database.db.connection().execute(async (connection) => {
      expect((await executePrepared(connection, all)).rows).toEqual([{ id: 1 }])
      await firstReady
      await sql`alter table reshaped_everywhere add column note text default 'added'`.execute(connection)
      const read = () => connection.transaction().execute(async (trx) => (await executePrepared(trx, all)).rows)
      await expect(read()).rejects.toThrow(/cached plan must not change result type/)
      altered()
    })
    expect(await second).toEqual([{ id: 1, note: 'added' }])
  })

  it("runs the syncer's claim, attempt batch and status statements prepared, whatever the batch's size", async () => {
    const crm = newEndSystem('crm')
    const customers = [newCifId(), newCifId(), newCifId()]
    for (const cifId of customers) await storeVersions(database.db, cifId, [1], [crm])
    await database.db.connection().execute(async (connection) => {
      const before = new Set((await preparedOn(connection)).map((p) => p.statement))
      const [one, ...two] = await claim(connection, crm, 1).then(async (first) => [...first, ...(await claim(connection, crm, 2))])
      await recordAttempts(asSyncer(connection), [finished(one!, decisions.retry(0))])
      await recordAttempts(
        asSyncer(connection),
        two.map((delivery) => finished(delivery, decisions.success()))
      )
      const prepared = (await preparedOn(connection)).filter((p) => !before.has(p.statement))
      const runsOf = (pattern: RegExp) => prepared.filter((p) => pattern.test(p.statement)).map((p) => p.runs)
      expect(runsOf(/with due as materialized/)).toEqual([2])
      expect(runsOf(/insert into delivery_attempt/)).toEqual([2])
      expect(runsOf(/with moved as/)).toEqual([2])
      expect(runsOf(/insert into sync_status_update/)).toEqual([2])
      expect(runsOf(/from "sync_event" .* for update/)).toEqual([1])
    })
  })
})
