import { sql } from 'kysely'
import type { CustomerEvent } from '../../contracts/customer-events.ts'
import { type Situation, toldSituations } from '../../contracts/sync-status-events.ts'
import { blockBehindFailures, stateList } from '../delivery/delivery-store.ts'
import { initialState, settledStates, waitingStates } from '../delivery/states.ts'
import { recordStatuses, type StatusChange } from '../status/sync-status.ts'
import type { DeliveryOperation, FindingRow, ReconciliationRunRow, SyncerDb, SyncerTx } from '../tables.ts'
import type { RunKind } from './runs.ts'
import { isRepairable, repairs } from './situations.ts'

export interface RunRequest {
  kind: RunKind
  endSystems: string[]
  cifIds?: string[] | undefined
  since?: Date | undefined
  /** Situations repaired as soon as found. */
  repair?: readonly Situation[] | undefined
  requestedBy: string
  /** Taken by the caller at once for this long (the CLI works its own run); otherwise any syncer takes it. */
  leaseMs?: number | undefined
}

/** A customer as the CIF last published it: the syncer's latest stored event of that CIF ID. */
export interface LatestCustomer {
  cif_id: string
  event_id: string
  customer_version: number
  owner_source_system: string
  /** Null when the payload is gone (retention from before it kept each customer's latest, or an erasure). */
  event: CustomerEvent | null
}

/** A finding about to be stored: its pair, its situation and what it says. */
export interface NewFinding {
  cifId: string
  endSystem: string
  situation: Exclude<Situation, 'IN_SYNC'>
  customerVersion: number | null
  heldVersion: number | null
  externalId: string | null
  differences: { field: string; expected: string; held: string }[] | null
  /** For the status message: the customer's owner and latest event (none for an ORPHAN). */
  owner: string | null
  eventId: string | null
}

/** Customers in a run's scope: its CIF IDs, or those whose latest version arrived since `since`; never an erased one. */
function latestCustomers(run: Pick<ReconciliationRunRow, 'cif_ids' | 'since'>, after: string | null) {
  return sql<LatestCustomer>`
    select * from (
      select distinct on (e.cif_id) e.cif_id, e.event_id, e.customer_version, e.owner_source_system, e.event, e.received_at
      from sync_event e
      where e.cif_id > ${after ?? ''} ${run.cif_ids ? sql`and e.cif_id = any(${run.cif_ids}::text[])` : sql``}
      order by e.cif_id, e.customer_version desc) latest
    where not exists (select 1 from customer_erasure x where x.cif_id = latest.cif_id)
      ${run.since ? sql`and latest.received_at >= ${run.since}` : sql``}`
}

export async function createRun(db: SyncerDb, request: RunRequest): Promise<ReconciliationRunRow> {
  const scope = { cif_ids: request.cifIds?.length ? request.cifIds : null, since: request.since ?? null }
  // A backfill's total is the customers its system holds no record of; a reconciliation's, every customer in scope.
  const { rows } = await sql<{ total: number }>`
    select count(*)::int as total from (${latestCustomers(scope, null)}) c
    ${
      request.kind === 'BACKFILL'
        ? sql`where not exists (select 1 from customer_xref x where x.cif_id = c.cif_id and x.end_system = any(${request.endSystems}::text[]))`
        : sql``
    }`.execute(db)
  return db
    .insertInto('reconciliation_run')
    .values({
      kind: request.kind,
      end_systems: request.endSystems,
      ...scope,
      repair: [...(request.repair ?? [])],
      requested_by: request.requestedBy,
      total: rows[0]!.total,
      lease_until: request.leaseMs ? sql<Date>`now() + make_interval(secs => ${request.leaseMs / 1000})` : null
    })
    .returningAll()
    .executeTakeFirstOrThrow()
}

/**
 * Takes a RUNNING run nobody works on (never taken, or its worker's lease ran out: that process stopped), for
 * `leaseMs`: one of `runId` only when given. A crashed run is so resumed where its last page ended.
 */
export async function claimRun(db: SyncerDb, leaseMs: number, runId?: string): Promise<ReconciliationRunRow | undefined> {
  const { rows } = await sql<ReconciliationRunRow>`
    update reconciliation_run r set lease_until = now() + make_interval(secs => ${leaseMs / 1000}), updated_at = now()
    where r.id = (
      select id from reconciliation_run
      where state = 'RUNNING' and (lease_until is null or lease_until < now()) ${runId ? sql`and id = ${runId}` : sql``}
      order by id limit 1
      for update skip locked)
    returning r.*`.execute(db)
  return rows[0]
}

/** The next `limit` customers of the run after where it stands, in CIF ID order. */
export async function customerPage(db: SyncerDb, run: ReconciliationRunRow, limit: number): Promise<LatestCustomer[]> {
  const { rows } = await sql<LatestCustomer>`select * from (${latestCustomers(run, run.after_cif_id)}) c order by cif_id limit ${limit}`.execute(db)
  return rows
}

/** Per customer and system: the record id the syncer knows, and whether a delivery is still under way (not judged then). */
export async function pairStates(
  db: SyncerDb,
  cifIds: string[],
  endSystems: string[]
): Promise<Map<string, { externalId: string | null; underWay: boolean }>> {
  const { rows } = await sql<{ cif_id: string; end_system: string; external_id: string | null; under_way: boolean }>`
    select c.cif_id, s.end_system, x.external_id,
      exists (select 1 from delivery d where d.cif_id = c.cif_id and d.end_system = s.end_system
              and d.state not in (${stateList(settledStates)})) as under_way
    from unnest(${cifIds}::text[]) c(cif_id) cross join unnest(${endSystems}::text[]) s(end_system)
    left join customer_xref x on x.cif_id = c.cif_id and x.end_system = s.end_system`.execute(db)
  return new Map(rows.map((row) => [pairKey(row.cif_id, row.end_system), { externalId: row.external_id, underWay: row.under_way }]))
}

export const pairKey = (cifId: string, endSystem: string): string => `${cifId}:${endSystem}`

/** Live work first: whether a system has deliveries of the intake's due now (a run waits for them). */
export async function liveWorkDue(db: SyncerDb, endSystem: string): Promise<boolean> {
  const { rows } = await sql<{ due: boolean }>`
    select exists (select 1 from delivery d where d.end_system = ${endSystem} and d.state in (${stateList(waitingStates)})
                   and d.next_attempt_at <= now() and d.reconciliation_run_id is null) as due`.execute(db)
  return rows[0]!.due
}

/** Which of `cifIds` the CIF ever published (the syncer holds an event of it). */
export async function knownCifIds(db: SyncerDb, cifIds: string[]): Promise<Set<string>> {
  if (cifIds.length === 0) return new Set()
  const rows = await db
    .selectFrom('sync_event')
    .select('cif_id')
    .distinct()
    .where('cif_id', 'in', [...new Set(cifIds)])
    .execute()
  return new Set(rows.map((row) => row.cif_id))
}

/** The remark a repair delivery carries into its first attempt, so the transaction table says why it went. */
export function repairRemark(runId: string, finding: Pick<FindingRow, 'situation' | 'held_version' | 'differences'>): string {
  const fields = finding.differences?.map((d) => d.field) ?? []
  const detail =
    finding.situation === 'STALE'
      ? ` (it held version ${finding.held_version})`
      : finding.situation === 'ALTERED'
        ? ` (differing: ${fields.join(', ')})`
        : finding.situation === 'MISSING'
          ? ' (the record was gone)'
          : ' (no record id was known)'
  return `reconciliation run ${runId} found ${finding.situation}${detail}; repaired with the latest version`
}

/**
 * Repairs findings: each a normal delivery of the customer's latest version (a create for MISSING and
 * UNLINKED, an update for ALTERED and STALE), through the same lanes, retries and ordering as any other,
 * marked with its run. A finding is repaired once; ORPHAN and IN_SYNC are not repairable. Returns the
 * deliveries made.
 */
export async function repairFindings(
  trx: SyncerTx,
  which: { findingIds: string[] } | { runId: string },
  askedBy?: { operator: string; reason: string }
): Promise<string[]> {
  const chosen = await trx
    .selectFrom('reconciliation_finding')
    .selectAll()
    .$if('findingIds' in which, (q) => q.where('id', 'in', 'findingIds' in which && which.findingIds.length ? which.findingIds : ['0']))
    .$if('runId' in which, (q) => q.where('run_id', '=', 'runId' in which ? which.runId : '0'))
    .where('repair_delivery_id', 'is', null)
    .orderBy('id')
    .forUpdate()
    .execute()
  const repairable = chosen.filter((finding) => isRepairable(finding.situation))
  if (repairable.length === 0) return []
  const rows = repairable.map((finding) => ({
    finding_id: finding.id,
    run_id: finding.run_id,
    cif_id: finding.cif_id,
    end_system: finding.end_system,
    operation: repairs[finding.situation] as DeliveryOperation,
    remarks: repairRemark(finding.run_id, finding) + (askedBy ? `, asked by ${askedBy.operator}: ${askedBy.reason}` : '')
  }))
  // The latest version now, which may be newer than the one the run compared: that is what the system must hold.
  const { rows: made } = await sql<{ id: string; finding_id: string }>`
    with wanted as (
      select * from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
        as w(finding_id bigint, run_id bigint, cif_id text, end_system text, operation text, remarks text)),
    made as (
      insert into delivery (event_id, cif_id, end_system, operation, customer_version, state, remarks, reconciliation_run_id, event_time)
      select l.event_id, w.cif_id, w.end_system, w.operation, l.customer_version, ${initialState}, w.remarks, w.run_id, l.event_time
      from wanted w
      cross join lateral (
        select e.event_id, e.customer_version, e.event_time from sync_event e
        where e.cif_id = w.cif_id and e.event is not null order by e.customer_version desc limit 1) l
      returning id, cif_id, end_system, reconciliation_run_id)
    update reconciliation_finding f set repair_delivery_id = m.id
    from made m join wanted w on w.cif_id = m.cif_id and w.end_system = m.end_system and w.run_id = m.reconciliation_run_id
    where f.id = w.finding_id
    returning m.id, f.id as finding_id`.execute(trx)
  await blockBehindFailures(trx, { deliveryIds: made.map((row) => row.id) })
  return made.map((row) => row.id)
}

/** Repairs asked for by an operator, in a transaction of their own. */
export async function repairOnRequest(
  db: SyncerDb,
  which: { findingIds: string[] } | { runId: string },
  askedBy: { operator: string; reason: string }
): Promise<string[]> {
  return db.transaction().execute((trx) => repairFindings(trx, which, askedBy))
}

export interface PageOutcome {
  /** The last customer of the page: the run resumes after it. */
  lastCifId: string
  customers: number
  errors: number
  /** Pairs by situation (IN_SYNC included), and `underWay`: pairs not judged while a delivery was under way. */
  counts: Record<string, number>
  findings: NewFinding[]
  leaseMs: number
}

const addCounts = (a: Record<string, number>, b: Record<string, number>): Record<string, number> =>
  Object.fromEntries([...new Set([...Object.keys(a), ...Object.keys(b)])].map((key) => [key, (a[key] ?? 0) + (b[key] ?? 0)]))

/**
 * Stores what a page of a run found, in one transaction with where the run stands: its findings (each pair
 * once per run), the repairs the run makes by itself, the status messages, the counts and the cursor. A
 * crash before the commit leaves the page to be done again, whole.
 */
export async function recordPage(db: SyncerDb, runId: string, page: PageOutcome): Promise<FindingRow[]> {
  return db.transaction().execute(async (trx) => {
    const run = await trx.selectFrom('reconciliation_run').selectAll().where('id', '=', runId).forUpdate().executeTakeFirstOrThrow()
    const stored = await storeFindings(trx, run, page.findings)
    await trx
      .updateTable('reconciliation_run')
      .set({
        after_cif_id: page.lastCifId,
        done: run.done + page.customers,
        errors: run.errors + page.errors,
        counts: JSON.stringify(addCounts(run.counts, page.counts)),
        updated_at: new Date(),
        lease_until: sql<Date>`now() + make_interval(secs => ${page.leaseMs / 1000})`
      })
      .where('id', '=', runId)
      .execute()
    return stored
  })
}

async function storeFindings(trx: SyncerTx, run: ReconciliationRunRow, findings: NewFinding[]): Promise<FindingRow[]> {
  if (findings.length === 0) return []
  const stored = await trx
    .insertInto('reconciliation_finding')
    .values(
      findings.map((f) => ({
        run_id: run.id,
        cif_id: f.cifId,
        end_system: f.endSystem,
        situation: f.situation,
        customer_version: f.customerVersion,
        held_version: f.heldVersion,
        external_id: f.externalId,
        differences: f.differences ? JSON.stringify(f.differences) : null
      }))
    )
    .onConflict((oc) => oc.columns(['run_id', 'end_system', 'cif_id']).doNothing())
    .returningAll()
    .execute()
  const automatic = stored.filter((finding) => run.repair.includes(finding.situation))
  if (automatic.length) await repairFindings(trx, { findingIds: automatic.map((finding) => finding.id) })
  const byPair = new Map(findings.map((f) => [pairKey(f.cifId, f.endSystem), f]))
  const told = (toldSituations as readonly string[]).includes.bind(toldSituations)
  await recordStatuses(
    trx,
    stored.flatMap((finding): StatusChange[] => {
      const found = byPair.get(pairKey(finding.cif_id, finding.end_system))!
      if (!told(finding.situation) || !found.owner || !found.eventId || finding.customer_version === null) return []
      return [
        {
          owner: found.owner,
          kind: 'DRIFT_FOUND',
          status: {
            cifId: finding.cif_id,
            customerVersion: finding.customer_version,
            eventId: found.eventId,
            endSystem: finding.end_system,
            runId: run.id,
            findingId: finding.id,
            situation: finding.situation as (typeof toldSituations)[number],
            fields: found.differences?.map((d) => d.field) ?? []
          }
        }
      ]
    })
  )
  return stored
}

/** Stores a page of a system's list: the ORPHANs on it, and the cursor reached (true: the list was read to the end). */
export async function recordListing(
  db: SyncerDb,
  runId: string,
  endSystem: string,
  reached: string | true,
  orphanFindings: NewFinding[],
  leaseMs: number
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const run = await trx.selectFrom('reconciliation_run').selectAll().where('id', '=', runId).forUpdate().executeTakeFirstOrThrow()
    const stored = await storeFindings(trx, run, orphanFindings)
    await trx
      .updateTable('reconciliation_run')
      .set({
        listing: JSON.stringify({ ...run.listing, [endSystem]: reached }),
        counts: JSON.stringify(addCounts(run.counts, stored.length ? { ORPHAN: stored.length } : {})),
        updated_at: new Date(),
        lease_until: sql<Date>`now() + make_interval(secs => ${leaseMs / 1000})`
      })
      .where('id', '=', runId)
      .execute()
  })
}

/**
 * Stores a page of a backfill: a create of each customer's latest version to the run's system, for those it
 * holds no record of and has no delivery under way, marked with the run; and where the run stands.
 */
export async function queueBackfill(
  db: SyncerDb,
  run: ReconciliationRunRow,
  customers: LatestCustomer[],
  lastCifId: string,
  leaseMs: number
): Promise<number> {
  const endSystem = run.end_systems[0]!
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ id: string }>`
      insert into delivery (event_id, cif_id, end_system, operation, customer_version, state, remarks, reconciliation_run_id, event_time)
      select c.event_id, c.cif_id, ${endSystem}, ${'create' satisfies DeliveryOperation}, c.customer_version, ${initialState},
        ${`backfill run ${run.id}: this system held no record of the customer`}, ${run.id},
        (select e.event_time from sync_event e where e.event_id = c.event_id)
      from unnest(${customers.map((c) => c.event_id)}::uuid[], ${customers.map((c) => c.cif_id)}::text[], ${customers.map((c) => c.customer_version)}::int[])
        as c(event_id, cif_id, customer_version)
      where not exists (select 1 from customer_xref x where x.cif_id = c.cif_id and x.end_system = ${endSystem})
        and not exists (select 1 from delivery d where d.cif_id = c.cif_id and d.end_system = ${endSystem} and d.state not in (${stateList(settledStates)}))
      returning id`.execute(trx)
    await blockBehindFailures(trx, { deliveryIds: rows.map((row) => row.id) })
    await sql`
      update reconciliation_run set after_cif_id = ${lastCifId}, done = done + ${rows.length}, updated_at = now(),
        lease_until = now() + make_interval(secs => ${leaseMs / 1000})
      where id = ${run.id}`.execute(trx)
    return rows.length
  })
}

export async function finishRun(db: SyncerDb, runId: string): Promise<void> {
  await db
    .updateTable('reconciliation_run')
    .set({ state: 'DONE', finished_at: new Date(), updated_at: new Date(), lease_until: null })
    .where('id', '=', runId)
    .execute()
}

/** The deliveries a run asked for, by state: what a backfill's progress counts as done. */
export async function runDeliveries(db: SyncerDb, runId: string): Promise<Record<string, number>> {
  const rows = await db
    .selectFrom('delivery')
    .select(['state', (eb) => eb.fn.countAll<string>().as('count')])
    .where('reconciliation_run_id', '=', runId)
    .groupBy('state')
    .execute()
  return Object.fromEntries(rows.map((row) => [row.state, Number(row.count)]))
}

/** The latest run of a kind that covers `endSystem`, for the schedule. */
export async function latestRunStart(db: SyncerDb, kind: RunKind, endSystem: string): Promise<Date | undefined> {
  const row = await db
    .selectFrom('reconciliation_run')
    .select('started_at')
    .where('kind', '=', kind)
    .where(sql<boolean>`${endSystem} = any(end_systems)`)
    .orderBy('started_at', 'desc')
    .limit(1)
    .executeTakeFirst()
  return row?.started_at
}
