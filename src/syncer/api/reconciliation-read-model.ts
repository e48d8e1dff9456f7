import { Refusal, syncerProblems } from '../../contracts/problems.ts'
import type { DeliveryState } from '../delivery/states.ts'
import { runDeliveries } from '../reconciliation/run-store.ts'
import { progress } from '../reconciliation/runs.ts'
import type { FindingRow, ReconciliationRunRow, SyncerDb } from '../tables.ts'
import type { Finding, FindingFilters, Run, RunFilters } from './reconciliation-schemas.ts'

const PAGE = 100

/** A run as the admin API shows it: a backfill's progress counts deliveries that succeeded, a reconciliation's customers compared. */
export async function toRun(db: SyncerDb, row: ReconciliationRunRow, now = new Date()): Promise<Run> {
  const deliveries = (await runDeliveries(db, row.id)) as Record<DeliveryState, number>
  const done = row.kind === 'BACKFILL' ? (deliveries.SUCCESS ?? 0) : row.done
  return {
    runId: row.id,
    kind: row.kind,
    state: row.state,
    endSystems: row.end_systems,
    cifIds: row.cif_ids,
    since: row.since?.toISOString() ?? null,
    repair: row.repair,
    requestedBy: row.requested_by,
    startedAt: row.started_at.toISOString(),
    finishedAt: row.finished_at?.toISOString() ?? null,
    counts: row.counts,
    errors: row.errors,
    progress: progress(done, row.total, row.started_at, row.finished_at && row.kind === 'RECONCILE' ? row.finished_at : now),
    queued: row.kind === 'BACKFILL' ? row.done : 0,
    deliveries
  }
}

export function toFinding(row: FindingRow): Finding {
  return {
    findingId: row.id,
    runId: row.run_id,
    cifId: row.cif_id,
    endSystem: row.end_system,
    situation: row.situation,
    customerVersion: row.customer_version,
    heldVersion: row.held_version,
    externalId: row.external_id,
    differences: row.differences,
    repairDeliveryId: row.repair_delivery_id,
    foundAt: row.found_at.toISOString()
  }
}

export async function runById(db: SyncerDb, id: string): Promise<ReconciliationRunRow> {
  const row = await db.selectFrom('reconciliation_run').selectAll().where('id', '=', id).executeTakeFirst()
  if (!row) throw new Refusal(syncerProblems.runNotFound, `No reconciliation or backfill run has the id ${id}.`)
  return row
}

/** Runs, newest first. */
export async function findRuns(db: SyncerDb, filters: RunFilters): Promise<ReconciliationRunRow[]> {
  return db
    .selectFrom('reconciliation_run')
    .selectAll()
    .$if(filters.kind !== undefined, (q) => q.where('kind', '=', filters.kind!))
    .$if(filters.after !== undefined, (q) => q.where('id', '<', filters.after!))
    .orderBy('id', 'desc')
    .limit(PAGE)
    .execute()
}

export async function findFindings(db: SyncerDb, runId: string, filters: FindingFilters): Promise<Finding[]> {
  await runById(db, runId)
  const rows = await db
    .selectFrom('reconciliation_finding')
    .selectAll()
    .where('run_id', '=', runId)
    .$if(filters.situation !== undefined, (q) => q.where('situation', '=', filters.situation!))
    .$if(filters.after !== undefined, (q) => q.where('id', '>', filters.after!))
    .orderBy('id')
    .limit(Number(filters.limit ?? PAGE))
    .execute()
  return rows.map(toFinding)
}

export async function findingById(db: SyncerDb, id: string): Promise<FindingRow> {
  const row = await db.selectFrom('reconciliation_finding').selectAll().where('id', '=', id).executeTakeFirst()
  if (!row) throw new Refusal(syncerProblems.findingNotFound, `No reconciliation finding has the id ${id}.`)
  return row
}
