// The history phase of `npm run bench`: the same measures on the stack as it is, then again once the
// transaction table holds years of a bank's attempts (10 million, 3 million deliveries, times BENCH_SCALE),
// generated directly in PostgreSQL. What the syncer and the APIs do must cost what the due or returned work
// costs, not what the table holds: each measure is printed with its ratio, filled to empty.
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import * as hdr from 'hdr-histogram-js'
import { type Kysely, type RawBuilder, sql } from 'kysely'
import { DEFAULT_IN_SYNC_DEADLINE_MS } from '../src/platform/config.ts'
import { attemptsQuery, deliveriesQuery } from '../src/syncer/api/read-model.ts'
import { countStatement, markedCount, rollUpSettledCounts } from '../src/syncer/delivery/delivery-counts.ts'
import { claimStatement } from '../src/syncer/delivery/delivery-store.ts'
import { attemptPartitionName } from '../src/syncer/retention.ts'
import { overdueStatement } from '../src/syncer/status/overdue.ts'
import { deliveryMonthSql } from '../src/syncer/tables.ts'
import { asSyncer, type TestDatabase } from '../test/support/database.ts'
import { waitUntilDrained } from '../test/support/invariants.ts'
import { percentiles, runLoad } from '../test/support/load.ts'
import { operatorKey, type ProcessStack, sourceKey } from '../test/support/stack.ts'

type Say = (text: string) => void
type Percentiles = ReturnType<typeof percentiles>

/** An end system no lane serves: the claim's probe finds its due deliveries, and nobody takes them; it holds the FAILED page too. */
const PROBE_SYSTEM = 'history-claim-probe'
const CLAIM_LIMIT = 32
/** The FAILED deliveries both halves hold while the APIs are measured: the admin API's page. */
const FAILED_PAGE = 100
/** Far from the CIF service's numbers (1,000,000,000 on): the history's CIF IDs are its own. */
const HISTORY_CIF_BASE = 60_000_000_000

/** The buffers a plan node touched, found in memory or read. */
const buffersOf = (node: { 'Shared Hit Blocks'?: number; 'Shared Read Blocks'?: number }): number =>
  (node['Shared Hit Blocks'] ?? 0) + (node['Shared Read Blocks'] ?? 0)

/** Latency percentiles (ms) of `runs` calls of `call`, one after the other. */
async function timed(runs: number, call: (i: number) => Promise<unknown>): Promise<Percentiles> {
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 })
  for (let i = 0; i < runs; i++) {
    const start = performance.now()
    await call(i)
    histogram.recordValue(Math.max(1, Math.round((performance.now() - start) * 1000)))
  }
  return percentiles(histogram)
}

/** A statement's plan as run, with its buffers. */
async function analyzed<DB>(db: Kysely<DB>, statement: RawBuilder<unknown>): Promise<Record<string, number>> {
  const { rows } = await sql<{ 'QUERY PLAN': { Plan: Record<string, number> }[] }>`explain (analyze, buffers, format json) ${statement}`.execute(db)
  return rows[0]!['QUERY PLAN'][0]!.Plan
}

/**
 * `count` events of customers of the probes' own, made now (`cifId` and `version` are SQL of `i`, 1 to
 * `count`), for the deliveries of the probe system; `remove` deletes those deliveries, then the events.
 */
function probeEvents(db: Kysely<TestDatabase>, name: string, count: number, cifId: RawBuilder<unknown>, version: RawBuilder<unknown>) {
  const id = sql`md5(${sql.lit(name)} || i)::uuid`
  const ids = sql`(select ${id} from generate_series(1, ${count}) i)`
  return {
    ids,
    insert: () =>
      sql`
        insert into sync_event (event_id, cif_id, event_type, customer_version, owner_source_system, acting_source_system, event,
          event_time, kafka_partition, kafka_offset)
        select ${id}, (${cifId})::text, 'cif.customer.created', ${version}, 'branch-portal', 'branch-portal', null, now(), 0, i
        from generate_series(1, ${count}) i`.execute(db),
    remove: async () => {
      await sql`delete from delivery where end_system = ${PROBE_SYSTEM}`.execute(db)
      await sql`delete from sync_event where event_id in ${ids}`.execute(db)
    }
  }
}

/**
 * The claim (delivery-store.ts `claimStatement`) of 32 of 1,000 due deliveries of one system, half of them
 * waiting behind an earlier version, rolled back each time so that every run finds the same work: its time,
 * and the buffers its plan touches (which, unlike time, a noisy machine does not move).
 */
async function measureClaim(stack: ProcessStack): Promise<{ latencyMs: Percentiles; buffers: number }> {
  const { db } = stack.database
  // Two versions each of 500 customers.
  const events = probeEvents(db, 'probe', 1000, sql`${HISTORY_CIF_BASE - 1_000_000}::bigint + (i + 1) / 2`, sql`2 - i % 2`)
  await events.insert()
  await sql`
    insert into delivery (event_id, cif_id, end_system, operation, customer_version, state, event_time)
    select event_id, cif_id, ${PROBE_SYSTEM}, case customer_version when 1 then 'create' else 'update' end, customer_version, 'PENDING',
      event_time
    from sync_event where event_id in ${events.ids}`.execute(db)
  try {
    const claim = claimStatement(PROBE_SYSTEM, CLAIM_LIMIT, [10_000])
    const query = claim.compile(db)
    const rolledBack = <T>(run: (trx: Kysely<TestDatabase>) => Promise<T>) =>
      db.connection().execute(async (connection) => {
        await sql`begin`.execute(connection)
        try {
          return await run(connection)
        } finally {
          await sql`rollback`.execute(connection)
        }
      })
    const latencyMs = await timed(200, () => rolledBack((trx) => trx.executeQuery(query)))
    const root = await rolledBack((trx) => analyzed(trx, claim))
    return { latencyMs, buffers: buffersOf(root) }
  } finally {
    await events.remove()
  }
}

/**
 * A page of FAILED deliveries (of the claim's probe system, customers of their own), each with its four ERROR
 * attempts, while `measure` runs, in both halves: the drains fail nothing, so "FAILED deliveries" and "ERROR
 * attempts of a system" would otherwise compare an empty answer with the history's full page. Removed after.
 */
async function withFailedPage<T>(stack: ProcessStack, measure: () => Promise<T>): Promise<T> {
  const { db } = stack.database
  const events = probeEvents(db, 'failed', FAILED_PAGE, sql`${HISTORY_CIF_BASE - 2_000_000}::bigint + i`, sql`1`)
  await events.insert()
  await sql`
    insert into delivery (event_id, cif_id, end_system, operation, customer_version, state, attempts, last_error, remarks, event_time)
    select event_id, cif_id, ${PROBE_SYSTEM}, 'create', 1, 'FAILED', 4, 'HTTP 422: {"error":"rejected"}', 'the end system refused it', event_time
    from sync_event where event_id in ${events.ids}`.execute(db)
  await sql`
    insert into delivery_attempt (delivery_id, delivery_month, event_id, cif_id, event_type, customer_version, end_system, attempt_number,
      status, http_status, response_message, remarks, timeout_ms, duration_ms, started_at, finished_at)
    select d.id, ${deliveryMonthSql(sql.ref('d.created_at'))}, d.event_id, d.cif_id, 'cif.customer.created', 1, d.end_system, n, 'ERROR', 422,
      d.last_error, d.remarks, 30000, 40, d.created_at, d.created_at + interval '40 milliseconds'
    from delivery d cross join generate_series(1, d.attempts) n where d.end_system = ${PROBE_SYSTEM}`.execute(db)
  try {
    return await measure()
  } finally {
    await sql`delete from delivery_attempt where end_system = ${PROBE_SYSTEM}`.execute(db)
    await events.remove()
  }
}

/**
 * A backlog of `customers` new customers made through the CIF API while the syncer is stopped, then the
 * syncer started and timed until every delivery of them is SUCCESS. The intake, the claims, the attempt
 * records and the status messages all write into the tables the history fills.
 */
async function measureDrain(stack: ProcessStack, customers: number, say: Say) {
  await stack.syncer.stop()
  const since = new Date()
  const traffic = await runLoad({ cifUrl: stack.cifUrl, apiKey: sourceKey, ratePerSecond: 200, durationMs: Math.ceil((customers / 200) * 1000) })
  for (;;) {
    const { rows } = await sql<{ n: string }>`select count(*) as n from outbox_message where status = 'PENDING'`.execute(stack.database.db)
    if (Number(rows[0]!.n) === 0) break
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  say(`history: ${traffic.creates} customers waiting on the topic; starting the syncer`)
  const startedAt = Date.now()
  await stack.syncer.start()
  const drainMs = await waitUntilDrained(stack, since, 600_000)
  if (drainMs < 0) throw new Error('the history drain did not finish in 10 minutes')
  const { rows } = await sql<{ n: string; first: Date; last: Date }>`
    select count(*) as n, min(d.completed_at) as first, max(d.completed_at) as last
    from delivery d join customer c on c.cif_id = d.cif_id where c.created_at >= ${since}`.execute(stack.database.db)
  const { n, first, last } = rows[0]!
  const deliveries = Number(n)
  const cifIds = [...traffic.requestedAt.keys()].map((key) => key.split(':')[0]!)
  return {
    since,
    customers: traffic.creates,
    deliveries,
    deliveriesPerSecond: Math.round((deliveries / (last.getTime() - startedAt)) * 1000),
    deliveriesPerSecondRunning: Math.round((deliveries / Math.max(1, last.getTime() - first.getTime())) * 1000),
    cifIds
  }
}

/**
 * Each API query the callback and admin APIs answer, one request after the other, against this drain's
 * customers. The time-window filters start when this half's drain began: "the last hour" would hold the
 * other half's drain too in the filled half (minutes earlier), twice the rows of the empty half, where a
 * bank's last hour holds only that hour's traffic however long its history.
 */
async function measureApis(stack: ProcessStack, cifIds: string[], cursor: string, since: Date): Promise<Record<string, Percentiles>> {
  const get = async (path: string, key: string) => {
    const response = await fetch(`${stack.syncerUrl}${path}`, { headers: { authorization: `Bearer ${key}` } })
    if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${await response.text()}`)
    await response.arrayBuffer()
  }
  const cif = (i: number) => cifIds[(i * 7919) % cifIds.length]!
  const from = since.toISOString()
  const queries: Record<string, [runs: number, (i: number) => Promise<void>]> = {
    'callback: customer': [200, (i) => get(`/v1/sync/customers/${cif(i)}`, sourceKey)],
    'callback: updates after a cursor': [100, () => get(`/v1/sync/updates?after=${cursor}&limit=100`, sourceKey)],
    'admin: attempts of a customer': [200, (i) => get(`/v1/admin/attempts?cifId=${cif(i)}`, operatorKey)],
    'admin: ERROR attempts of a system': [50, () => get(`/v1/admin/attempts?endSystem=${PROBE_SYSTEM}&status=ERROR&limit=100`, operatorKey)],
    'admin: attempts of a system since the drain began': [50, () => get(`/v1/admin/attempts?endSystem=crm&from=${from}&limit=100`, operatorKey)],
    'admin: deliveries of a customer': [200, (i) => get(`/v1/admin/deliveries?cifId=${cif(i)}`, operatorKey)],
    'admin: FAILED deliveries': [50, () => get('/v1/admin/deliveries?state=FAILED&limit=100', operatorKey)],
    'admin: deliveries of a system since the drain began': [50, () => get(`/v1/admin/deliveries?endSystem=crm&from=${from}&limit=100`, operatorKey)],
    'admin: summary': [10, () => get('/v1/admin/summary', operatorKey)]
  }
  const results: Record<string, Percentiles> = {}
  for (const [name, [runs, call]] of Object.entries(queries)) results[name] = await timed(runs, call)
  return results
}

async function feedCursor(stack: ProcessStack): Promise<string> {
  const { rows } = await sql<{ seq: string | null }>`select max(seq)::text as seq from sync_status_update`.execute(stack.database.db)
  return rows[0]!.seq ?? '0'
}

/**
 * The summary's two statements: the count (delivery-counts.ts `countStatement`), the buffers its plan touches,
 * the plan itself (to see which index each part read), and whether it counts every delivery, as the table
 * counted whole does; and the overdue versions' count (status/overdue.ts, at the default deadline), its buffers
 * and plan.
 */
async function measureSummary(stack: ProcessStack): Promise<{
  buffers: number
  countsEveryDelivery: boolean
  deliveryDeadRows: number
  sinceAutovacuumS: number | null
  plan: unknown
  overdue: { buffers: number; plan: unknown }
}> {
  const { db } = stack.database
  // The plan, the count and the table counted whole in the count's own snapshot: the syncer rolls up meanwhile.
  const { plan, rows, all } = await markedCount(asSyncer(db), async (trx, mark) => ({
    plan: await analyzed(trx, countStatement(mark)),
    rows: (await countStatement(mark).execute(trx)).rows,
    all: (await sql<{ n: string }>`select count(*)::text as n from delivery`.execute(trx)).rows
  }))
  const overduePlan = await analyzed(db, overdueStatement(DEFAULT_IN_SYNC_DEADLINE_MS))
  // How much the index entries of dead row versions weigh in (migration 0017): the table's dead rows, and
  // how long ago autovacuum last went through it.
  const { rows: vacuum } = await sql<{ deadRows: string; sinceAutovacuumS: number | null }>`
    select n_dead_tup::text as "deadRows", extract(epoch from now() - last_autovacuum)::float8 as "sinceAutovacuumS"
    from pg_stat_user_tables where relname = 'delivery'`.execute(db)
  return {
    buffers: buffersOf(plan),
    countsEveryDelivery: rows.reduce((sum, row) => sum + Number(row.n), 0) === Number(all[0]!.n),
    deliveryDeadRows: Number(vacuum[0]!.deadRows),
    sinceAutovacuumS: vacuum[0]!.sinceAutovacuumS === null ? null : Math.round(vacuum[0]!.sinceAutovacuumS),
    plan,
    overdue: { buffers: buffersOf(overduePlan), plan: overduePlan }
  }
}

interface PlanNode {
  'Node Type': string
  'Index Name'?: string
  'Relation Name'?: string
  'Actual Rows'?: number
  'Actual Loops'?: number
  'Shared Hit Blocks'?: number
  'Shared Read Blocks'?: number
  'Actual Total Time'?: number
  Plans?: PlanNode[]
}

/** A plan as lines, one per node, indented by depth: what it read, how, and how much. */
function outline(node: PlanNode, depth = 0): string[] {
  const on = node['Index Name'] ? ` using ${node['Index Name']}` : ''
  const relation = node['Relation Name'] ? ` on ${node['Relation Name']}` : ''
  const buffers = buffersOf(node)
  const line = `${'  '.repeat(depth)}${node['Node Type']}${on}${relation}: rows ${node['Actual Rows']} x${node['Actual Loops']}, buffers ${buffers}`
  return [line, ...(node.Plans ?? []).flatMap((child) => outline(child, depth + 1))]
}

/**
 * The plans of the admin filters the history slowed most (session 8), as the admin API builds them
 * (read-model.ts): the time, the buffers and the outline of each, to say where each one's time goes.
 */
async function measureFilterPlans(stack: ProcessStack, since: Date): Promise<Record<string, { ms: number; buffers: number; plan: string[] }>> {
  const db = asSyncer(stack.database.db)
  const from = since.toISOString()
  const queries = {
    'admin: ERROR attempts of a system': await attemptsQuery(db, { endSystem: PROBE_SYSTEM, status: 'ERROR', limit: '100' }),
    'admin: attempts of a system since the drain began': await attemptsQuery(db, { endSystem: 'crm', from, limit: '100' }),
    'admin: FAILED deliveries': deliveriesQuery(db, { state: 'FAILED', limit: '100' }),
    'admin: deliveries of a system since the drain began': deliveriesQuery(db, { endSystem: 'crm', from, limit: '100' })
  }
  const plans: Record<string, { ms: number; buffers: number; plan: string[] }> = {}
  for (const [name, query] of Object.entries(queries)) {
    const [explained] = (await query!.explain('json', sql`analyze, buffers`)) as unknown as {
      'QUERY PLAN': { Plan: PlanNode; 'Execution Time': number }[]
    }[]
    const { Plan: root, 'Execution Time': ms } = explained!['QUERY PLAN'][0]!
    plans[name] = { ms, buffers: buffersOf(root), plan: outline(root) }
  }
  return plans
}

/** Buffers PostgreSQL's checkpointer has written so far: a checkpoint writing while a half is measured shows. */
async function checkpointBuffersWritten(stack: ProcessStack): Promise<number> {
  const { rows } = await sql<{ written: string }>`select buffers_written::text as written from pg_stat_checkpointer`.execute(stack.database.db)
  return Number(rows[0]!.written)
}

async function measureAll(stack: ProcessStack, customers: number, say: Say) {
  const writtenBefore = await checkpointBuffersWritten(stack)
  const claim = await measureClaim(stack)
  say(`history: claim p50 ${claim.latencyMs.p50} ms, ${claim.buffers} buffers`)
  const cursor = await feedCursor(stack)
  const { cifIds, since, ...drain } = await measureDrain(stack, customers, say)
  say(`history: drain ${drain.deliveriesPerSecond} deliveries/s (${drain.deliveries})`)
  const { apis, summary, filterPlans } = await withFailedPage(stack, async () => {
    const apis = await measureApis(stack, cifIds, cursor, since)
    say(`history: APIs p50 ${JSON.stringify(Object.fromEntries(Object.entries(apis).map(([name, p]) => [name, p.p50])))}`)
    const summary = await measureSummary(stack)
    say(
      `history: summary count ${summary.buffers} buffers${summary.countsEveryDelivery ? '' : ' (! not every delivery counted)'}, overdue count ${summary.overdue.buffers}`
    )
    return { apis, summary, filterPlans: await measureFilterPlans(stack, since) }
  })
  const checkpointBuffers = (await checkpointBuffersWritten(stack)) - writtenBefore
  say(`history: the checkpointer wrote ${checkpointBuffers} buffers meanwhile`)
  return { claim, drain, apis, summary, filterPlans, checkpointBuffers, loadAverage: Number(loadavg()[0]!.toFixed(2)) }
}

/**
 * Years of history, directly in PostgreSQL: `events` customer events (two versions per customer, spread over
 * the last 24 months), three deliveries each (almost all SUCCESS; some FAILED, some SKIPPED), one in ten of
 * them retried or redriven 24 times (an outage's worth), so about 3.4 attempts per delivery; a status update
 * per successful delivery, published long ago. The month partitions are made first, as the syncer would have made them.
 */
export async function fillHistory(db: Kysely<TestDatabase>, events: number, say: Say) {
  const timings: Record<string, number> = {}
  const step = async (name: string, query: ReturnType<typeof sql>) => {
    const start = performance.now()
    // Consistent by construction: no foreign key trigger per generated row (a bulk load's usual setting).
    await db.connection().execute(async (connection) => {
      await sql`set session_replication_role = replica`.execute(connection)
      try {
        await query.execute(connection)
      } finally {
        await sql`set session_replication_role = origin`.execute(connection)
      }
    })
    timings[name] = Number(((performance.now() - start) / 1000).toFixed(1))
    say(`history: ${name} in ${timings[name]} s`)
  }
  const { rows: months } = await sql<{ month: Date }>`
    select generate_series(date_trunc('month', now() at time zone 'UTC') - interval '25 months', date_trunc('month', now() at time zone 'UTC'),
      interval '1 month') at time zone 'UTC' as month`.execute(db)
  for (const { month } of months) {
    const next = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 1))
    await sql`create table if not exists ${sql.id(attemptPartitionName(month))} partition of delivery_attempt
      for values from (${sql.lit(month.toISOString().slice(0, 10))}) to (${sql.lit(next.toISOString().slice(0, 10))})`.execute(db)
  }
  const { rows } = await sql<{ id: string }>`select coalesce(max(id), 0)::text as id from delivery`.execute(db)
  const after = rows[0]!.id
  await step(
    'events',
    sql`
      insert into sync_event (event_id, cif_id, event_type, customer_version, owner_source_system, acting_source_system, event,
        event_time, received_at, kafka_partition, kafka_offset)
      select md5('history' || i)::uuid, (${HISTORY_CIF_BASE}::bigint + (i + 1) / 2)::text,
        case i % 2 when 1 then 'cif.customer.created' else 'cif.customer.updated' end, 2 - i % 2, 'branch-portal', 'branch-portal', null,
        t, t, i % 12, i
      from generate_series(1, ${events}) i, lateral (select now() - interval '1 day' - interval '730 days' * (1 - i::float8 / ${events}) as t) spread`
  )
  await step(
    'deliveries',
    sql`
      insert into delivery (event_id, cif_id, end_system, operation, customer_version, state, attempts, round_attempts, next_attempt_at,
        external_id, last_error, remarks, created_at, updated_at, completed_at, event_time)
      select e.event_id, e.cif_id, s.name, case e.customer_version when 1 then 'create' else 'update' end, e.customer_version, v.state,
        v.attempts, v.attempts, e.received_at, 'X-' || e.cif_id, null, 'delivered', e.received_at, e.received_at + interval '1 minute',
        case when v.state = 'FAILED' then null else e.received_at + interval '1 minute' end, e.event_time
      from generate_series(1, ${events}) i
      join sync_event e on e.event_id = md5('history' || i)::uuid
      cross join (values (0, 'core-banking'), (1, 'crm'), (2, 'cards')) s(n, name),
      lateral (select i * 3 + s.n as j) k,
      lateral (select
        case when k.j % 400 = 0 and e.customer_version = 2 then 'FAILED' when k.j % 97 = 0 then 'SKIPPED' else 'SUCCESS' end as state,
        case when k.j % 10 = 0 then 25 else 1 end as attempts) v
      order by i, s.n`
  )
  await step(
    'attempts',
    sql`
      insert into delivery_attempt (delivery_id, delivery_month, event_id, cif_id, event_type, customer_version, end_system, attempt_number,
        status, http_status, response_message, remarks, timeout_ms, duration_ms, started_at, finished_at)
      select d.id, ${deliveryMonthSql(sql.ref('d.created_at'))}, d.event_id, d.cif_id,
        case d.operation when 'create' then 'cif.customer.created' else 'cif.customer.updated' end, d.customer_version, d.end_system, n,
        case when n = d.attempts and d.state = 'SUCCESS' then 'SUCCESS' else 'ERROR' end,
        case when n = d.attempts and d.state = 'SUCCESS' then 201 else 503 end,
        case when n = d.attempts and d.state = 'SUCCESS' then 'HTTP 201' else 'HTTP 503: {"error":"maintenance"}' end,
        case when n = d.attempts and d.state = 'SUCCESS' then 'delivered'
          else d.end_system || ' answered 503 (a fault on its side); retry ' || n || ' of 24 in 10 s' end,
        30000, 40 + n, d.created_at + make_interval(secs => n * 10), d.created_at + make_interval(secs => n * 10) + interval '40 milliseconds'
      from delivery d cross join lateral generate_series(1, d.attempts) n
      where d.id > ${after}`
  )
  await step(
    'status updates',
    sql`
      insert into sync_status_update (seq, owner_source_system, cif_id, kind, status, created_at, published_at)
      select nextval('sync_status_seq'), 'branch-portal', d.cif_id, 'DELIVERED',
        jsonb_build_object('kind', 'DELIVERED', 'cifId', d.cif_id, 'customerVersion', d.customer_version, 'eventId', d.event_id,
          'endSystem', d.end_system, 'deliveryId', d.id::text, 'state', d.state, 'attempts', d.attempts, 'at', d.completed_at),
        -- Published on cif.sync.status when they were made, as the history's are (until session 11 they were
        -- left unpublished: the status relay then spent the filled half publishing three million of them).
        d.completed_at, d.completed_at + interval '1 second'
      from delivery d where d.id > ${after} and d.state = 'SUCCESS' order by d.id`
  )
  for (const table of ['sync_event', 'delivery', 'delivery_attempt', 'sync_status_update']) {
    await step(`vacuum analyze ${table}`, sql`vacuum analyze ${sql.id(table)}`)
  }
  // A syncer running through those two years would have kept the settled deliveries' counts as they
  // settled (its retention round, once a minute); one round now does the same for the generated ones. The
  // empty half's syncer has already moved the mark past them (they settled "months ago"): the totals are
  // counted again from the start, as a syncer that had been there all along would have them.
  const rollUpStart = performance.now()
  await sql`delete from delivery_settled_count`.execute(db)
  await sql`update delivery_settled_count_mark set counted_before = '-infinity'`.execute(db)
  await rollUpSettledCounts(asSyncer(db))
  timings['settled counts rolled up'] = Number(((performance.now() - rollUpStart) / 1000).toFixed(1))
  const tables: Record<string, { rows: number; mb: number }> = {}
  for (const table of ['sync_event', 'delivery', 'delivery_attempt', 'sync_status_update']) {
    const { rows: size } = await sql<{ rows: string; mb: string }>`
      select (select count(*) from ${sql.id(table)})::text as rows,
        (coalesce((select sum(pg_total_relation_size(relid)) from pg_partition_tree(${table}::regclass) where isleaf),
          pg_total_relation_size(${table}::regclass)) / 1048576)::text as mb`.execute(db)
    tables[table] = { rows: Number(size[0]!.rows), mb: Math.round(Number(size[0]!.mb)) }
  }
  // A checkpoint still spreading six gigabytes of writes would share the disk and the cores with the filled
  // half's measures: finished here, and each half records what the checkpointer wrote while it was measured
  // (S11d: nothing in either; the filled half's slowness until then was the status relay, see the statuses).
  await step('checkpoint', sql`checkpoint`)
  return {
    seconds: Number(
      Object.values(timings)
        .reduce((a, b) => a + b, 0)
        .toFixed(1)
    ),
    steps: timings,
    tables
  }
}

const ratio = (filled: number, empty: number) => Number((filled / Math.max(empty, 0.001)).toFixed(2))

export async function historyPhase(stack: ProcessStack, scale: number, say: Say): Promise<Record<string, unknown>> {
  const events = Math.round(1_000_000 * scale)
  const customers = Math.max(300, Math.round(3000 * scale))
  say(`history: measuring before the fill (${customers} customers drained)`)
  const empty = await measureAll(stack, customers, say)
  say(`history: generating ${events} events, ${events * 3} deliveries and their attempts`)
  const generation = await fillHistory(stack.database.db, events, say)
  say(`history: generated in ${generation.seconds} s: ${JSON.stringify(generation.tables)}`)
  const filled = await measureAll(stack, customers, say)
  const apis = Object.fromEntries(Object.keys(empty.apis).map((name) => [name, ratio(filled.apis[name]!.p50, empty.apis[name]!.p50)]))
  return {
    generation,
    empty,
    filled,
    ratios: {
      claimP50: ratio(filled.claim.latencyMs.p50, empty.claim.latencyMs.p50),
      claimBuffers: ratio(filled.claim.buffers, empty.claim.buffers),
      summaryBuffers: ratio(filled.summary.buffers, empty.summary.buffers),
      drainDeliveriesPerSecond: ratio(empty.drain.deliveriesPerSecond, filled.drain.deliveriesPerSecond),
      apiP50: apis
    },
    note: 'ratios are filled over empty for times and buffers, empty over filled for the drain rate: above 1 is slower with the history'
  }
}
