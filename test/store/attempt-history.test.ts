import { randomUUID } from 'node:crypto'
import { type Kysely, sql } from 'kysely'
import { Migrator } from 'kysely/migration'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { migrateToLatest, openDatabase } from '../../src/platform/database/index.ts'
import { migrations } from '../../src/roles/migrations.ts'
import { attemptsQuery, findAttempts } from '../../src/syncer/api/read-model.ts'
import { recoverExpiredLeases } from '../../src/syncer/delivery/delivery-store.ts'
import { attemptPartitionName, prepareAttemptMonths, retireAttemptMonths } from '../../src/syncer/retention.ts'
import { asSyncer, type TestDatabase } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { claim, claimOne, decisions, expireLease, newCifId, newEndSystem, record, storeVersions } from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

const db = () => database.db
const syncer = () => asSyncer(db())

/** The first instant of the month `offset` months from now's (UTC). */
function monthFromNow(offset: number): Date {
  const now = new Date()
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1))
}

async function partitions(): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'delivery_attempt'::regclass order by 1`.execute(db())
  return rows.map((row) => row.name)
}

/** Which partition holds each attempt of a delivery, by attempt number. */
async function whereAttemptsAre(deliveryId: string): Promise<string[]> {
  const { rows } = await sql<{ partition: string }>`
    select tableoid::regclass::text as partition from delivery_attempt where delivery_id = ${deliveryId} order by attempt_number`.execute(db())
  return rows.map((row) => row.partition)
}

async function tableExists(name: string): Promise<boolean> {
  const { rows } = await sql<{ exists: boolean }>`select to_regclass(${name}) is not null as exists`.execute(db())
  return rows[0]!.exists
}

/** A delivery (of a customer and end system of its own) made as if the syncer had stored it on `createdAt`. */
async function deliveryCreatedOn(createdAt: string): Promise<{ system: string; id: string }> {
  const system = newEndSystem()
  const cifId = newCifId()
  await storeVersions(db(), cifId, [1], [system])
  const { id } = await db()
    .updateTable('delivery')
    .set({ created_at: createdAt })
    .where('cif_id', '=', cifId)
    .returning('id')
    .executeTakeFirstOrThrow()
  return { system, id }
}

describe("the transaction table's months", () => {
  it('has the partitions of this month and the next two from the migration, and makes further ones once, even when two syncers race', async () => {
    const expected = [0, 1, 2].map((offset) => attemptPartitionName(monthFromNow(offset)))
    expect(await partitions()).toEqual(expect.arrayContaining([...expected, 'delivery_attempt_default']))
    expect(await prepareAttemptMonths(syncer())).toEqual([])

    expect(await prepareAttemptMonths(syncer(), 4)).toEqual([3, 4].map((offset) => attemptPartitionName(monthFromNow(offset))))
    const [one, other] = await Promise.all([prepareAttemptMonths(syncer(), 6), prepareAttemptMonths(syncer(), 6)])
    expect([...one!, ...other!].sort()).toEqual([5, 6].map((offset) => attemptPartitionName(monthFromNow(offset))))
    expect(await partitions()).toEqual(expect.arrayContaining([0, 1, 2, 3, 4, 5, 6].map((offset) => attemptPartitionName(monthFromNow(offset)))))
  })

  it("keeps an attempt of a month with no partition in the default one, and moves it into the month's partition once made", async () => {
    const answered = await deliveryCreatedOn('2020-03-15T10:00:00Z')
    await record(db(), await claimOne(db(), answered.system), decisions.success('CRM-1'))
    // Lease recovery's placeholder, then the late answer of the same attempt: the writers' shared key must meet.
    const lost = await deliveryCreatedOn('2020-03-31T23:59:59.999999Z')
    const stale = await claimOne(db(), lost.system)
    await expireLease(db(), lost.id)
    expect(await recoverExpiredLeases(syncer())).toBe(1)
    expect([...(await whereAttemptsAre(answered.id)), ...(await whereAttemptsAre(lost.id))]).toEqual([
      'delivery_attempt_default',
      'delivery_attempt_default'
    ])

    expect(await prepareAttemptMonths(syncer())).toEqual(['delivery_attempt_2020_03'])
    expect([...(await whereAttemptsAre(answered.id)), ...(await whereAttemptsAre(lost.id))]).toEqual([
      'delivery_attempt_2020_03',
      'delivery_attempt_2020_03'
    ])
    expect(await db().selectFrom('delivery_attempt').select('id').where(sql<boolean>`delivery_month = '2020-03-01'`).execute()).toHaveLength(2)

    expect(await record(db(), stale, decisions.success('CRM-LATE'))).toBe(false)
    const attempts = await db().selectFrom('delivery_attempt').select(['attempt_number', 'status']).where('delivery_id', '=', lost.id).execute()
    expect(attempts).toEqual([{ attempt_number: 1, status: 'SUCCESS' }])
  })

  it('retires a month past the retention only once every delivery made in it has settled, detaching or dropping it as configured', async () => {
    const keepYear = { months: 12, action: 'detach' } as const
    expect(await retireAttemptMonths(syncer(), { months: 0, action: 'drop' })).toEqual([])
    // The late answer above left its delivery to be tried again: March 2020 still holds an open delivery.
    const { rows: waiting } = await sql<{ id: string; end_system: string }>`
      select id, end_system from delivery where created_at >= '2020-03-01' and created_at < '2020-04-01' and state <> 'SUCCESS'`.execute(db())
    expect(waiting).toHaveLength(1)
    expect(await retireAttemptMonths(syncer(), keepYear)).toEqual([])
    expect(await partitions()).toContain('delivery_attempt_2020_03')

    await record(db(), await claimOne(db(), waiting[0]!.end_system), decisions.success('CRM-2'))
    expect(await retireAttemptMonths(syncer(), keepYear)).toEqual(['delivery_attempt_2020_03'])
    expect(await partitions()).not.toContain('delivery_attempt_2020_03')
    expect(await db().selectFrom('delivery_attempt').select('id').where(sql<boolean>`delivery_month = '2020-03-01'`).execute()).toEqual([])
    // Detached, the month is a table of its own for the bank's archive, with every attempt in it.
    const { rows: archived } = await sql<{ n: string }>`select count(*) as n from delivery_attempt_2020_03`.execute(db())
    expect(Number(archived[0]!.n)).toBe(3)

    const dropped = await deliveryCreatedOn('2020-05-02T00:00:00Z')
    await record(db(), await claimOne(db(), dropped.system), decisions.success('CRM-3'))
    expect(await prepareAttemptMonths(syncer())).toEqual(['delivery_attempt_2020_05'])
    expect(await retireAttemptMonths(syncer(), { months: 12, action: 'drop' })).toEqual(['delivery_attempt_2020_05'])
    expect(await tableExists('delivery_attempt_2020_05')).toBe(false)
    // This month and the ones ahead are never retired, however short the retention.
    expect(await retireAttemptMonths(syncer(), { months: 1, action: 'drop' })).toEqual([])
    expect(await partitions()).toContain(attemptPartitionName(monthFromNow(0)))
  })

  it("leaves a late attempt of a detached month in the default partition: the archive's name is taken", async () => {
    const late = await deliveryCreatedOn('2020-03-20T00:00:00Z')
    await record(db(), await claimOne(db(), late.system), decisions.success('CRM-4'))
    expect(await prepareAttemptMonths(syncer())).toEqual([])
    expect(await whereAttemptsAre(late.id)).toEqual(['delivery_attempt_default'])
  })
})

describe("the admin API's attempts of a customer or a delivery", () => {
  it('come from every month its deliveries were made in, and none of another customer', async () => {
    const cifId = newCifId()
    const system = newEndSystem()
    await storeVersions(db(), cifId, [1, 2], [system])
    await storeVersions(db(), newCifId(), [1], [system])
    const first = await db()
      .updateTable('delivery')
      .set({ created_at: '2020-08-10T00:00:00Z' })
      .where('cif_id', '=', cifId)
      .where('customer_version', '=', 1)
      .returning('id')
      .executeTakeFirstOrThrow()
    for (let claimed = await claim(db(), system); claimed.length > 0; claimed = await claim(db(), system)) {
      for (const delivery of claimed) await record(db(), delivery, decisions.success('X'))
    }
    expect((await findAttempts(syncer(), { cifId })).map((a) => a.customerVersion)).toEqual([1, 2])
    expect((await findAttempts(syncer(), { deliveryId: first.id })).map((a) => a.deliveryId)).toEqual([first.id])
    expect(await findAttempts(syncer(), { cifId: newCifId() })).toEqual([])
  })
})

describe("the admin API's attempts up to an instant", () => {
  it('plan and read only the months up to it, and still find an attempt that started then', async () => {
    const old = await deliveryCreatedOn('2020-08-10T00:00:00Z')
    const delivery = await claimOne(db(), old.system)
    await record(db(), delivery, decisions.success('X'), {
      startedAt: new Date('2020-08-20T00:00:00Z'),
      finishedAt: new Date('2020-08-20T00:00:01Z')
    })
    const filters = { endSystem: old.system, to: '2020-09-01T00:00:00Z' }
    expect((await findAttempts(syncer(), filters)).map((a) => a.deliveryId)).toEqual([old.id])
    const plan = JSON.stringify(await (await attemptsQuery(syncer(), filters))!.explain('json'))
    const thisMonth = attemptPartitionName(monthFromNow(0))
    expect(await tableExists(thisMonth)).toBe(true)
    expect(plan).not.toContain(thisMonth)
    expect(plan).toContain('delivery_attempt_default')
    const unbounded = JSON.stringify(await (await attemptsQuery(syncer(), { endSystem: old.system }))!.explain('json'))
    expect(unbounded).toContain(thisMonth)
  })
})

describe('migration 0006', () => {
  let filled: { db: Kysely<unknown>; close(): Promise<void> } | undefined
  const name = `cif_syncer_test_convert_${randomUUID().replaceAll('-', '').slice(0, 12)}`
  const serverUrl = (path: string) => {
    const url = new URL(inject('templateDatabaseUrl'))
    url.pathname = `/${path}`
    return url.href
  }
  afterAll(async () => {
    await filled?.close()
    const admin = openDatabase<unknown>(serverUrl('postgres'), { maxConnections: 1 })
    await sql.raw(`drop database if exists ${name} with (force)`).execute(admin.db)
    await admin.close()
  })

  it('converts a filled transaction table: every attempt kept, in the partition of its delivery month, ids going on after them', async () => {
    const admin = openDatabase<unknown>(serverUrl('postgres'), { maxConnections: 1 })
    await sql.raw(`create database ${name}`).execute(admin.db)
    await admin.close()
    filled = openDatabase<unknown>(serverUrl(name), { maxConnections: 1 })
    const filledDb = filled.db as Kysely<TestDatabase>
    const before = Object.fromEntries(Object.entries(migrations).filter(([version]) => version < '0006'))
    const { error } = await new Migrator({ db: filled.db, provider: { getMigrations: async () => before } }).migrateToLatest()
    expect(error).toBeUndefined()

    await sql`
      insert into sync_event (event_id, cif_id, event_type, customer_version, owner_source_system, acting_source_system, event,
        event_time, kafka_partition, kafka_offset)
      values ('00000000-0000-4000-8000-000000000001', '10000000009', 'cif.customer.created', 1, 'branch-portal', 'branch-portal', null, now(), 0, 1);
      insert into delivery (event_id, cif_id, end_system, operation, customer_version, state, attempts, created_at)
      values ('00000000-0000-4000-8000-000000000001', '10000000009', 'crm', 'create', 1, 'SUCCESS', 2, '2024-02-10T12:00:00Z'),
             ('00000000-0000-4000-8000-000000000001', '10000000009', 'cards', 'create', 1, 'SUCCESS', 1, '2024-02-29T23:59:59.999999Z'),
             ('00000000-0000-4000-8000-000000000001', '10000000009', 'core-banking', 'create', 1, 'FAILED', 1, now());
      insert into delivery_attempt (delivery_id, event_id, cif_id, event_type, customer_version, end_system, attempt_number, status,
        http_status, response_message, remarks, timeout_ms, duration_ms, started_at, finished_at)
      select d.id, d.event_id, d.cif_id, 'cif.customer.created', 1, d.end_system, n, case when d.state = 'SUCCESS' and n = d.attempts then 'SUCCESS' else 'ERROR' end,
        503, 'HTTP 503', 'retry ' || n, 30000, 12, d.created_at + make_interval(secs => n), d.created_at + make_interval(secs => n + 1)
      from delivery d cross join generate_series(1, d.attempts) n`.execute(filled.db)
    const attemptColumns = ['id', 'delivery_id', 'end_system', 'attempt_number', 'status', 'remarks', 'started_at', 'finished_at'] as const
    const held = await filledDb.selectFrom('delivery_attempt').select(attemptColumns).orderBy('id').execute()
    expect(held).toHaveLength(4)

    await migrateToLatest(filled.db, migrations)

    expect(await filledDb.selectFrom('delivery_attempt').select(attemptColumns).orderBy('id').execute()).toEqual(held)
    const { rows: placed } = await sql<{ end_system: string; partition: string; delivery_month: string }>`
      select end_system, tableoid::regclass::text as partition, delivery_month::text from delivery_attempt order by id`.execute(filled.db)
    const thisMonth = attemptPartitionName(monthFromNow(0))
    expect(placed.map((row) => [row.end_system, row.partition])).toEqual([
      ['crm', 'delivery_attempt_2024_02'],
      ['crm', 'delivery_attempt_2024_02'],
      ['cards', 'delivery_attempt_2024_02'],
      ['core-banking', thisMonth]
    ])
    // From the oldest delivery's month to two months ahead, and the default partition.
    const { rows: made } = await sql<{ n: string }>`select count(*) as n from pg_inherits where inhparent = 'delivery_attempt'::regclass`.execute(
      filled.db
    )
    const now0 = monthFromNow(0)
    expect(Number(made[0]!.n)).toBe((now0.getUTCFullYear() - 2024) * 12 + now0.getUTCMonth() - 1 + 3 + 1)

    const { rows: added } = await sql<{ id: string }>`
      insert into delivery_attempt (delivery_id, delivery_month, event_id, cif_id, event_type, customer_version, end_system, attempt_number,
        status, timeout_ms, duration_ms, started_at, finished_at)
      select id, '2024-02-01', event_id, cif_id, 'cif.customer.created', 1, end_system, 3, 'SUCCESS', 30000, 5, now(), now()
      from delivery where end_system = 'crm'
      returning id`.execute(filled.db)
    expect(Number(added[0]!.id)).toBeGreaterThan(Number(held.at(-1)!.id))
    // The attempt's key holds the partition key: a second answer for the same attempt meets the first.
    await expect(
      sql`insert into delivery_attempt (delivery_id, delivery_month, event_id, cif_id, event_type, customer_version, end_system, attempt_number,
          status, timeout_ms, duration_ms, started_at, finished_at)
        select id, '2024-02-01', event_id, cif_id, 'cif.customer.created', 1, end_system, 3, 'ERROR', 30000, 5, now(), now()
        from delivery where end_system = 'crm'`.execute(filled.db)
    ).rejects.toThrow(/duplicate key value violates unique constraint/)
  })
})
