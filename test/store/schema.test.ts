import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { reconciliationSituations } from '../../src/contracts/sync-status-events.ts'
import { deliveriesQuery } from '../../src/syncer/api/read-model.ts'
import { countStatement, markedCount } from '../../src/syncer/delivery/delivery-counts.ts'
import { requestKinds, requestStates } from '../../src/syncer/delivery/four-eyes.ts'
import { attemptStatuses, deliveryStates, openStates, operatorActions, settledStates } from '../../src/syncer/delivery/states.ts'
import { runKinds, runStates } from '../../src/syncer/reconciliation/runs.ts'
import { overdueStatement } from '../../src/syncer/status/overdue.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { planWithoutSeqScans } from '../support/plans.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase(1)
})
afterAll(async () => database?.close())

/**
 * The values a column's CHECK (... in (...)) constraint allows, as PostgreSQL holds it: the one check on that
 * column alone (checks across columns, such as "decided when not PENDING", are not lists of values).
 */
async function allowedValues(table: string, column: string): Promise<string[]> {
  const { rows } = await sql<{ definition: string }>`
    select pg_get_constraintdef(c.oid) as definition from pg_constraint c
    join pg_class t on t.oid = c.conrelid
    where t.relname = ${table} and c.contype = 'c' and pg_get_constraintdef(c.oid) like ${`%${column}%`}
      and array_length(c.conkey, 1) = 1`.execute(database.db)
  expect(rows, `${table}.${column} has one check constraint`).toHaveLength(1)
  return [...rows[0]!.definition.matchAll(/'([A-Z_]+)'::text/g)].map((m) => m[1]!).sort()
}

interface PlanNode {
  'Plan Rows': number
  'Index Cond'?: string
  Filter?: string
  Plans?: PlanNode[]
}
const nodesOf = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodesOf)]

describe('the database holds the states the code declares', () => {
  it('allows exactly the delivery states of the state machine', async () => {
    expect(await allowedValues('delivery', 'state')).toEqual([...deliveryStates].sort())
  })

  it('allows exactly the attempt statuses and operator actions', async () => {
    expect(await allowedValues('delivery_attempt', 'status')).toEqual([...attemptStatuses].sort())
    expect(await allowedValues('operator_action', 'action')).toEqual(Object.values(operatorActions).sort())
  })

  it('allows exactly the reconciliation situations, run kinds and run states the code declares', async () => {
    expect(await allowedValues('reconciliation_finding', 'situation')).toEqual(Object.keys(reconciliationSituations).sort())
    expect(await allowedValues('reconciliation_run', 'kind')).toEqual(Object.keys(runKinds).sort())
    expect(await allowedValues('reconciliation_run', 'state')).toEqual([...runStates].sort())
  })

  it('allows exactly the action request kinds and states of four-eyes.ts', async () => {
    expect(await allowedValues('action_request', 'kind')).toEqual(Object.keys(requestKinds).sort())
    expect(await allowedValues('action_request', 'state')).toEqual([...requestStates].sort())
  })
})

describe('the database has an index for each look-up the code makes', () => {
  it("finds an event's deliveries by index (the foreign key's check, retention's purge), whatever runs made them", async () => {
    const plan = await planWithoutSeqScans(database.db, sql`select 1 from delivery where event_id = '7d8160cc-2ad6-e1bb-c332-ca0c2a3f7eec'::uuid`)
    expect(plan).not.toMatch(/Seq Scan/)
  })

  it('lists the deliveries in any one state from an index, the settled ones no success reaches in their page order', async () => {
    const plans: Record<string, string> = {}
    for (const state of deliveryStates) {
      // The admin list's own query, as a subquery: `explain (select …)` plans it as it is.
      plans[state] = await planWithoutSeqScans(database.db, sql`${deliveriesQuery(asSyncer(database.db), { state, limit: '100' })}`)
    }
    for (const [state, plan] of Object.entries(plans)) expect(plan, state).not.toMatch(/Seq Scan on delivery/)
    // SUCCESS is most of the table: the primary key in id order finds a page of it at once. The other settled
    // states are rare, and read in the list's order from their own index.
    for (const state of settledStates.filter((state) => state !== 'SUCCESS')) {
      expect(plans[state], state).toMatch(/Index Scan using delivery_settled_undelivered/)
    }
  })
})

/** The mark the summary's count would be given now (delivery-counts.ts `markedCount`). */
const currentMark = () => markedCount(asSyncer(database.db), async (_trx, mark) => mark)

describe('the summary counts the open deliveries from an index that holds only them', () => {
  beforeAll(async () => {
    // A history: 3,000 deliveries settled a day ago and 30 FAILED ones among them, the proportions that make an
    // index of the open ones worth reading (on a nearly empty table any plan costs the same); visibility as after
    // a vacuum (the history's pages are all-visible), as the planner prices an index-only scan by how much is.
    await sql`
      insert into sync_event (event_id, cif_id, event_type, customer_version, owner_source_system, acting_source_system, event,
        event_time, kafka_partition, kafka_offset)
      select md5('schema-overdue' || i)::uuid, (70000000000::bigint + i)::text, 'cif.customer.created', 1, 'branch-portal',
        'branch-portal', null, now() - interval '1 day', 0, i
      from generate_series(1, 3030) i`.execute(database.db)
    await sql`
      insert into delivery (event_id, cif_id, end_system, operation, customer_version, state, event_time, completed_at)
      select event_id, cif_id, 'crm', 'create', 1, state, event_time, case state when 'SUCCESS' then event_time end
      from sync_event, lateral (select case when kafka_offset % 101 = 0 then 'FAILED' else 'SUCCESS' end as state) s
      where event_id in (select md5('schema-overdue' || i)::uuid from generate_series(1, 3030) i)
      order by kafka_offset`.execute(database.db)
    await sql`vacuum analyze delivery`.execute(database.db)
  })

  it("has the open states of states.ts as the index's predicate", async () => {
    const { rows } = await sql<{ definition: string }>`select pg_get_indexdef('delivery_open_counts'::regclass) as definition`.execute(database.db)
    const predicate = rows[0]!.definition.split(' WHERE ')[1] ?? ''
    expect([...predicate.matchAll(/'([A-Z_]+)'::text/g)].map((m) => m[1]).sort()).toEqual([...openStates].sort())
  })

  it('counts the open states with an index-only scan of it, reading no delivery row', async () => {
    const plan = await planWithoutSeqScans(database.db, countStatement(await currentMark()))
    expect(plan).toMatch(/Index Only Scan using delivery_open_counts on delivery/)
    expect(plan).not.toMatch(/Seq Scan on delivery\b(?!_)/)
  })

  it('counts the overdue versions from the same index, reading no delivery row', async () => {
    const plan = await planWithoutSeqScans(database.db, overdueStatement(60_000))
    expect(plan).toMatch(/Index Only Scan using delivery_open_counts on delivery/)
  })

  it('plans the part settled since the mark from the mark itself: a few rows, not a third of the table', async () => {
    // The mark an hour ago, the history settled a day ago: nothing settled since it. Planned with the mark as a
    // subquery, PostgreSQL guessed a third of the table (about 1,000 rows here; 1 million at 10 million
    // attempts, where it sent parallel workers).
    await sql`update delivery_settled_count_mark set counted_before = now() - interval '1 hour'`.execute(database.db)
    const { rows } = await sql<{ 'QUERY PLAN': { Plan: PlanNode }[] }>`explain (format json) ${countStatement(await currentMark())}`.execute(
      database.db
    )
    const settledPart = nodesOf(rows[0]!['QUERY PLAN'][0]!.Plan).filter((node) =>
      /completed_at/.test(`${node['Index Cond'] ?? ''}${node.Filter ?? ''}`)
    )
    expect(settledPart.length).toBeGreaterThan(0)
    for (const node of settledPart) expect(node['Plan Rows']).toBeLessThan(50)
  })
})

/** The delivery table's storage parameters, as `name=value`. */
async function deliveryStorageOptions(): Promise<string[]> {
  const { rows } = await sql<{ options: string[] }>`select reloptions as options from pg_class where relname = 'delivery'`.execute(database.db)
  return rows[0]!.options
}

describe('the delivery table is vacuumed by what changed, not by a share of the history', () => {
  it('has fixed autovacuum thresholds of its own', async () => {
    expect(await deliveryStorageOptions()).toEqual(
      expect.arrayContaining(['autovacuum_vacuum_scale_factor=0', 'autovacuum_vacuum_insert_scale_factor=0', 'autovacuum_vacuum_threshold=10000'])
    )
  })
})

describe("the delivery table keeps a delivery's versions together, not in the history's pages", () => {
  it("fills its pages to 90%, keeping room for a delivery's next versions", async () => {
    expect(await deliveryStorageOptions()).toContain('fillfactor=90')
  })
})
