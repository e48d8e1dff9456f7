import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { claimDue, claimStatement } from '../../src/syncer/delivery/delivery-store.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { genericPlan } from '../support/plans.ts'
import {
  claim,
  claimHeldOpen,
  claimOne,
  decisions,
  deliveryById,
  deliveryOf,
  LEASE_MS,
  newCifId,
  newEndSystem,
  record,
  storeVersions,
  within
} from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

describe('claiming due deliveries', () => {
  it('takes only due deliveries of the one end system, up to the limit, in due order, as IN_FLIGHT with a lease', async () => {
    const crm = newEndSystem('crm')
    const cards = newEndSystem('cards')
    const customers = [newCifId(), newCifId(), newCifId(), newCifId()]
    for (const cifId of customers) await storeVersions(database.db, cifId, [1], [crm, cards])
    // The last customer's delivery is not due yet (a retry scheduled for later, say).
    const notDue = await deliveryOf(database.db, customers[3]!, crm, 1)
    await database.db.updateTable('delivery').set({ next_attempt_at: sql<Date>`now() + interval '1 hour'` }).where('id', '=', notDue.id).execute()

    // The lease is the one of the attempt about to be made: the first of its round.
    const claimed = await claimDue(asSyncer(database.db), crm, 2, [45_000, 90_000])
    expect(claimed.map((d) => d.cif_id)).toEqual([customers[0], customers[1]])
    for (const d of claimed) {
      expect(d).toMatchObject({
        state: 'IN_FLIGHT',
        attempts: 1,
        round_attempts: 1,
        end_system: crm,
        event_type: 'cif.customer.created',
        owner_source_system: 'branch-portal'
      })
      expect(d.event).toMatchObject({ subject: d.cif_id, customerversion: 1 })
      const { rows } = await sql<{
        ms: number
      }>`select extract(epoch from lease_until - updated_at) * 1000 as ms from delivery where id = ${d.id}`.execute(database.db)
      expect(Number(rows[0]!.ms)).toBe(45_000)
    }

    const rest = await claim(database.db, crm)
    expect(rest.map((d) => d.cif_id)).toEqual([customers[2]])
    expect(await deliveryById(database.db, notDue.id)).toMatchObject({ state: 'PENDING', attempts: 0, lease_until: null })
    const cardsStates = await database.db.selectFrom('delivery').select('state').where('end_system', '=', cards).execute()
    expect(cardsStates.map((d) => d.state)).toEqual(['PENDING', 'PENDING', 'PENDING', 'PENDING'])
  })

  it('brings the personal data of the customer’s other versions, each distinct set once, for masking', async () => {
    const crm = newEndSystem('crm')
    const [cifId, alone] = [newCifId(), newCifId()]
    await storeVersions(database.db, cifId, [1, 2, 3], [crm])
    await storeVersions(database.db, alone, [1], [crm])
    const claimed = await claim(database.db, crm)
    expect(claimed.map((d) => [d.cif_id, d.customer_version])).toEqual([
      [cifId, 1],
      [alone, 1]
    ])
    const others = claimed[0]!.other_versions!
    expect(others.map((o) => o.email).sort()).toEqual(['v2@example.com', 'v3@example.com'])
    // Only personal data: what masking needs, no more.
    expect(others[0]).toMatchObject({ firstName: 'Ada', lastName: 'Lovelace', dateOfBirth: '1985-12-10', externalId: `bp-${cifId}` })
    expect(others[0]).not.toHaveProperty('branchCode')
    expect(claimed[1]!.other_versions).toBeNull()
  })

  it('takes nothing when the limit is zero', async () => {
    const crm = newEndSystem('crm')
    await storeVersions(database.db, newCifId(), [1], [crm])
    expect(await claim(database.db, crm, 0)).toEqual([])
    expect(await claim(database.db, crm, 1)).toHaveLength(1)
  })

  it('counts attempts across claims, and leases the next attempt of the round for its own timeout, the last lease past the table', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [crm])
    const leases = [10_000, 20_000, 30_000]
    const leaseOf = async (id: string) => {
      const { rows } = await sql<{
        ms: number
      }>`select extract(epoch from lease_until - updated_at) * 1000 as ms from delivery where id = ${id}`.execute(database.db)
      return Number(rows[0]!.ms)
    }
    const seen: number[] = []
    for (let n = 1; n <= 4; n++) {
      const [taken] = await claimDue(asSyncer(database.db), crm, 10, leases)
      expect(taken).toMatchObject({ state: 'IN_FLIGHT', attempts: n, round_attempts: n })
      seen.push(await leaseOf(taken!.id))
      await record(database.db, taken!, decisions.retry(0))
    }
    expect(seen).toEqual([10_000, 20_000, 30_000, 30_000])
  })

  it('never takes a later version of a customer while an earlier one for the same system is not SUCCESS or SKIPPED', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    const other = newCifId()
    await storeVersions(database.db, cifId, [1, 2, 3], [crm])
    await storeVersions(database.db, other, [1], [crm])

    // Only the create goes; another customer's delivery is not held up by this one.
    const firstRound = await claim(database.db, crm)
    expect(firstRound.map((d) => [d.cif_id, d.customer_version])).toEqual([
      [cifId, 1],
      [other, 1]
    ])
    const create = firstRound[0]!
    // IN_FLIGHT: the update waits.
    expect(await claim(database.db, crm)).toEqual([])
    // RETRY_SCHEDULED, due later: the update, though due itself, still waits.
    await record(database.db, create, decisions.retry(3_600_000))
    expect(await claim(database.db, crm)).toEqual([])
    expect((await deliveryOf(database.db, cifId, crm, 2)).state).toBe('PENDING')

    // Once the create is held by the end system, version 2 goes, and version 3 still waits for it.
    await database.db.updateTable('delivery').set({ next_attempt_at: sql<Date>`now()` }).where('id', '=', create.id).execute()
    await record(database.db, await claimOne(database.db, crm), decisions.success('crm-1'))
    const update = await claimOne(database.db, crm)
    expect([update.customer_version, update.operation]).toEqual([2, 'update'])
    // The update carries the record id the create got.
    expect(update.xref_external_id).toBe('crm-1')
    expect(await claim(database.db, crm)).toEqual([])
    await record(database.db, update, decisions.success())
    expect((await claimOne(database.db, crm)).customer_version).toBe(3)
  })

  it('holds back a later version stored before an earlier one arrived, from then on', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [2], [crm])
    await storeVersions(database.db, cifId, [1], [crm])
    expect((await claim(database.db, crm)).map((d) => d.customer_version)).toEqual([1])
  })
})

describe('claims made at the same time', () => {
  it('skips the deliveries another claim has locked instead of waiting for it, and never takes one twice', async () => {
    const crm = newEndSystem('crm')
    const customers = [newCifId(), newCifId(), newCifId(), newCifId()]
    for (const cifId of customers) await storeVersions(database.db, cifId, [1], [crm])

    // The first claim locks two deliveries and holds them, uncommitted.
    const first = claimHeldOpen(database.db, crm, 2)
    try {
      const taken = await within(first.claimed, 5000, 'the first claim never ran')
      expect(taken.map((d) => d.cif_id)).toEqual([customers[0], customers[1]])
      // The second claim, on another connection, gets the other two at once.
      const second = await within(claim(database.db, crm), 5000, 'the second claim waited for the first one to commit')
      expect(second.map((d) => d.cif_id)).toEqual([customers[2], customers[3]])
    } finally {
      first.release()
    }
    await first.done
    const rows = await database.db.selectFrom('delivery').select(['state', 'attempts']).where('end_system', '=', crm).execute()
    expect(rows.every((row) => row.state === 'IN_FLIGHT' && row.attempts === 1)).toBe(true)
  })

  it('shares a backlog between many claimers without giving any delivery to two of them', async () => {
    const crm = newEndSystem('crm')
    for (let i = 0; i < 30; i++) await storeVersions(database.db, newCifId(), [1], [crm])
    const rounds = await Promise.all(Array.from({ length: 5 }, () => claim(database.db, crm, 8)))
    const ids = rounds.flat().map((d) => d.id)
    expect(new Set(ids).size).toBe(ids.length)
    const rows = await database.db.selectFrom('delivery').select(['id', 'state', 'attempts']).where('end_system', '=', crm).execute()
    // Every delivery taken was taken once: one attempt each.
    expect(
      rows
        .filter((row) => row.state === 'IN_FLIGHT')
        .map((row) => row.id)
        .sort()
    ).toEqual([...ids].sort())
    expect(rows.every((row) => row.attempts === (row.state === 'IN_FLIGHT' ? 1 : 0))).toBe(true)
  })
})

/** Deliveries of `count` customers (versions 1 and 2 each) to `system`, stored in one statement as the intake does. */
const burst = (system: string, from: number, count: number, state: string) => sql`
  with events as (
    insert into sync_event (event_id, cif_id, event_type, customer_version, owner_source_system, acting_source_system,
                            event, event_time, kafka_partition, kafka_offset)
    select gen_random_uuid(), '9' || lpad(n::text, 10, '0'), 'cif.customer.updated', v, 'branch-portal', 'branch-portal',
           '{}'::jsonb, now(), 0, n * 2 + v
    from generate_series(${from}::int, ${from + count - 1}::int) n, generate_series(1, 2) v
    returning event_id, cif_id, customer_version, event_time)
  insert into delivery (event_id, cif_id, end_system, operation, customer_version, state, event_time)
  select event_id, cif_id, ${system}, case customer_version when 1 then 'create' else 'update' end, customer_version, ${state}, event_time
  from events`

describe('the claim’s plan', () => {
  it('probes each candidate’s earlier versions by customer, even while the statistics describe the table before a burst', async () => {
    const system = newEndSystem('burst')
    // A system that has been running: its deliveries settled, and the statistics taken then (as autovacuum
    // left them when a Kafka outage's backlog lands): open deliveries look as if there were none.
    await burst(system, 1, 10_000, 'SUCCESS').execute(database.db)
    await sql`analyze delivery`.execute(database.db)
    await burst(system, 10_001, 4000, 'PENDING').execute(database.db)

    const { rows } = await sql<Record<string, unknown>>`explain (format json) ${claimStatement(system, 32, [LEASE_MS])}`.execute(database.db)
    const plan = JSON.stringify(rows[0])
    // No join whose inner side the planner may choose to scan whole: a probe by customer for each candidate.
    expect(plan).not.toMatch(/"Join Type":"(Anti|Semi)"/)
    expect(plan).toMatch(/"Index Name":"delivery_open_by_customer"[^}]*"Index Cond":"\(\(cif_id = d\.cif_id\)/)
    // The claim's update takes the chosen rows by primary key, not by a scan of the system's deliveries.
    expect(plan).toMatch(/"Operation":"Update".*"CTE Name":"due".*"Index Name":"delivery_pkey"/)
    // And version 2 of a customer still waits for its version 1.
    const claimed = await claim(database.db, system, 100)
    expect(claimed).toHaveLength(100)
    expect(claimed.every((d) => d.customer_version === 1)).toBe(true)
  })

  it('reads no more due deliveries than it takes, though a whole intake batch shares one due time', async () => {
    const system = newEndSystem('batch')
    // The intake stores up to 250 events in one transaction: their deliveries share one next_attempt_at, now().
    await burst(system, 20_001, 250, 'PENDING').execute(database.db)
    await sql`analyze delivery`.execute(database.db)
    const plan = await genericPlan(database.db, claimStatement(system, 15, [LEASE_MS]).compile(database.db), { analyze: true })
    // In (next_attempt_at, id) order from the index itself, not the whole batch read and sorted by id.
    expect(plan).not.toMatch(/"Sort Key":\["d\.next_attempt_at"/)
    const due = /"Index Name":"delivery_due"[^{}]*?"Actual Rows":([\d.]+)/.exec(plan)
    expect(Number(due?.[1])).toBe(15)
  })
})
