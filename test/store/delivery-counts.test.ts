import fc from 'fast-check'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { countDeliveries, type DeliveryCount, rollUpSettledCounts } from '../../src/syncer/delivery/delivery-counts.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { claimOne, decisions, deliveryOf, newCifId, newEndSystem, record, skipApproved, storeVersions } from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

const db = () => database.db

/** What the summary must say: the whole table counted, as it was counted before the totals. */
async function countedWhole(): Promise<DeliveryCount[]> {
  const rows = await db()
    .selectFrom('delivery')
    .select(['end_system', 'state', (eb) => eb.fn.countAll<string>().as('n')])
    .groupBy(['end_system', 'state'])
    .orderBy('end_system')
    .orderBy('state')
    .execute()
  return rows.map((row) => ({ endSystem: row.end_system, state: row.state, count: Number(row.n) }))
}

type Outcome = 'success' | 'failed' | 'retrying' | 'pending' | 'skipped'

/** One delivery of a new customer to `system`, left in the state the outcome names. */
async function deliveryThat(outcome: Outcome, system: string): Promise<void> {
  const cifId = newCifId()
  // A waiting one goes to a system no claim here serves, so that the next claim of `system` finds one only.
  if (outcome === 'pending') return storeVersions(db(), cifId, [1], [`${system}-unserved`])
  await storeVersions(db(), cifId, [1], [system])
  const claimed = await claimOne(db(), system)
  if (outcome === 'success') await record(db(), claimed, decisions.success('X-1'))
  else if (outcome === 'retrying') await record(db(), claimed, decisions.retry(3_600_000))
  else await record(db(), claimed, decisions.fail())
  if (outcome === 'skipped') {
    const failed = await deliveryOf(db(), cifId, system, 1)
    await skipApproved(db(), { deliveryId: failed.id, operator: 'ops.tan', reason: 'not wanted' })
  }
}

/** Time passes: every delivery settled so far settled `minutes` earlier, and the mark was moved `minutes` earlier. */
async function settledEarlier(minutes: number): Promise<void> {
  await sql`update delivery set completed_at = completed_at - make_interval(mins => ${minutes}) where completed_at is not null`.execute(db())
  await sql`update delivery_settled_count_mark set counted_before = counted_before - make_interval(mins => ${minutes})`.execute(db())
}

const markOf = async () => (await db().selectFrom('delivery_settled_count_mark').select('counted_before').executeTakeFirstOrThrow()).counted_before

describe('the summary counts settled deliveries from kept totals, and the rest live', () => {
  it('adds to the totals only what settled more than a minute ago, once, and counts the rest live', async () => {
    const system = newEndSystem()
    await deliveryThat('success', system)
    await deliveryThat('success', system)
    await deliveryThat('failed', system)
    // Settled just now: within the margin left to writers the activity view does not show, so it stays live.
    expect((await rollUpSettledCounts(asSyncer(db()))).added).toBe(0)
    await settledEarlier(60)
    expect((await rollUpSettledCounts(asSyncer(db()))).added).toBe(2)
    const totals = await db().selectFrom('delivery_settled_count').selectAll().where('end_system', '=', system).execute()
    expect(totals).toEqual([{ end_system: system, state: 'SUCCESS', deliveries: '2' }])
    // Nothing is added twice, and the FAILED one (open: a redrive moves it) is never in the totals.
    expect((await rollUpSettledCounts(asSyncer(db()))).added).toBe(0)
    await deliveryThat('success', system)
    expect(await countDeliveries(asSyncer(db()))).toEqual(await countedWhole())
    expect((await countDeliveries(asSyncer(db()))).filter((c) => c.endSystem === system)).toEqual([
      { endSystem: system, state: 'FAILED', count: 1 },
      { endSystem: system, state: 'SUCCESS', count: 3 }
    ])
  })

  it('moves the mark to a minute ago when no transaction is open, never back', async () => {
    await rollUpSettledCounts(asSyncer(db()))
    const mark = await markOf()
    expect(Date.now() - mark.getTime()).toBeGreaterThanOrEqual(60_000 - 1000)
    expect(Date.now() - mark.getTime()).toBeLessThan(2 * 60_000)
    await rollUpSettledCounts(asSyncer(db()))
    expect((await markOf()).getTime()).toBeGreaterThanOrEqual(mark.getTime())
  })

  it('never moves the mark past the start of a transaction still open, and counts what it settled once', async () => {
    const system = newEndSystem()
    await deliveryThat('retrying', system)
    await settledEarlier(30)
    await rollUpSettledCounts(asSyncer(db()))
    const markBefore = await markOf()
    const { started, startedText, pid, rollUp } = await db()
      .transaction()
      .execute(async (trx) => {
        // Settles with completed_at = the start of this transaction, then stays open while a roll-up runs.
        const { rows } = await sql<{ started: Date; startedText: string; pid: number }>`
          update delivery set state = 'SUCCESS', completed_at = now(), updated_at = now()
          where end_system = ${system} returning completed_at as started, now()::text as "startedText", pg_backend_pid() as pid`.execute(trx)
        await new Promise((resolve) => setTimeout(resolve, 1500))
        // Open longer than a second: reported as holding the mark back, at a threshold of a second.
        return { ...rows[0]!, rollUp: await rollUpSettledCounts(asSyncer(db()), 1000) }
      })
    const mark = await markOf()
    expect(mark.getTime()).toBeLessThanOrEqual(started.getTime() - 60_000)
    expect(mark.getTime()).toBeGreaterThanOrEqual(markBefore.getTime())
    expect(rollUp.heldBy?.pid).toBe(pid)
    expect(rollUp.heldBy?.openSince).toBe(startedText)
    // Nothing open that long now: nothing reported.
    expect((await rollUpSettledCounts(asSyncer(db()), 1000)).heldBy).toBeNull()
    // Committed after that roll-up: counted live now, then in the totals, once.
    expect(await countDeliveries(asSyncer(db()))).toEqual(await countedWhole())
    await settledEarlier(30)
    expect((await rollUpSettledCounts(asSyncer(db()))).added).toBeGreaterThanOrEqual(1)
    const totals = await db().selectFrom('delivery_settled_count').select(['state', 'deliveries']).where('end_system', '=', system).execute()
    expect(totals).toEqual([{ state: 'SUCCESS', deliveries: '1' }])
    expect(await countDeliveries(asSyncer(db()))).toEqual(await countedWhole())
  })

  it('counts a delivery that settled at the very instant of the mark once: live, then in the totals', async () => {
    const system = newEndSystem()
    await deliveryThat('success', system)
    await settledEarlier(30)
    await rollUpSettledCounts(asSyncer(db()))
    await deliveryThat('success', system)
    await sql`update delivery set completed_at = (select counted_before from delivery_settled_count_mark)
              where end_system = ${system} and completed_at > now() - interval '1 minute'`.execute(db())
    expect(await countDeliveries(asSyncer(db()))).toEqual(await countedWhole())
    await settledEarlier(30)
    expect((await rollUpSettledCounts(asSyncer(db()))).added).toBeGreaterThanOrEqual(1)
    expect(await countDeliveries(asSyncer(db()))).toEqual(await countedWhole())
    const totals = await db().selectFrom('delivery_settled_count').select('deliveries').where('end_system', '=', system).execute()
    expect(totals).toEqual([{ deliveries: '2' }])
  })

  it('counts each delivery once when several syncers roll up at the same time', async () => {
    const system = newEndSystem()
    for (let i = 0; i < 5; i++) await deliveryThat('success', system)
    await settledEarlier(30)
    await Promise.all([1, 2, 3].map(() => rollUpSettledCounts(asSyncer(db()))))
    const totals = await db().selectFrom('delivery_settled_count').select('deliveries').where('end_system', '=', system).execute()
    expect(totals).toEqual([{ deliveries: '5' }])
    expect(await countDeliveries(asSyncer(db()))).toEqual(await countedWhole())
  })

  it('always equals the whole table counted, whatever settles, when, and when the totals are rolled up', async () => {
    const systems = [newEndSystem('cards'), newEndSystem('cards')]
    const step = fc.oneof(
      fc.record({
        kind: fc.constant('deliver' as const),
        outcome: fc.constantFrom<Outcome>('success', 'failed', 'retrying', 'pending', 'skipped'),
        system: fc.constantFrom(...systems)
      }),
      fc.record({ kind: fc.constant('time passes' as const), minutes: fc.integer({ min: 1, max: 40 }) }),
      fc.record({ kind: fc.constant('roll up' as const) })
    )
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 8 }), async (steps) => {
        for (const s of steps) {
          if (s.kind === 'deliver') await deliveryThat(s.outcome, s.system)
          else if (s.kind === 'time passes') await settledEarlier(s.minutes)
          else await rollUpSettledCounts(asSyncer(db()))
          expect(await countDeliveries(asSyncer(db()))).toEqual(await countedWhole())
        }
      }),
      { numRuns: 12 }
    )
  })
})
