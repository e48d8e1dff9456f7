import { setTimeout as sleep } from 'node:timers/promises'
import type { Config } from '../platform/config.ts'
import { ConfigError } from '../platform/config.ts'
import { openDatabase } from '../platform/database/index.ts'
import { formatDuration } from '../platform/duration.ts'
import type { Logger } from '../platform/logger.ts'
import { findFindings, runById, toRun } from '../syncer/api/reconciliation-read-model.ts'
import { loadEndSystems } from '../syncer/delivery/end-systems-config.ts'
import { Reconciler } from '../syncer/reconciliation/reconciler.ts'
import { createRun, repairOnRequest } from '../syncer/reconciliation/run-store.ts'
import type { Situation } from '../syncer/reconciliation/situations.ts'
import type { SyncerDatabase, SyncerDb } from '../syncer/tables.ts'

/** The CLI's run: taken for itself at once; if the command stops, a syncer takes it up when this lease runs out. */
const CLI_LEASE_MS = 60_000

export interface ReconcileCommand {
  systems: string[]
  cifIds: string[]
  since: Date | undefined
  /** Repair every finding once the run is done (the syncers' lanes deliver the repairs). */
  repair: boolean
  by: string
}

type Out = (line: string) => void

async function withSyncerDatabase<T>(config: Config, run: (db: SyncerDb) => Promise<T>): Promise<T> {
  if (!config.databaseUrl) throw new ConfigError('Set DATABASE_URL to the database of the syncer (the local stack prints it).')
  const database = openDatabase<SyncerDatabase>(config.databaseUrl, { maxConnections: 4 })
  try {
    return await run(database.db)
  } finally {
    await database.close()
  }
}

const progressLine = (label: string, p: { done: number; total: number | null; perSecond: number; secondsLeft: number | null }): string =>
  `${label} ${p.done}/${p.total ?? '?'}, ${p.perSecond}/s, ${p.secondsLeft === null ? 'time left unknown' : `${formatDuration(p.secondsLeft * 1000)} left`}`

/**
 * `cif-syncer reconcile`: a reconciliation run worked by this process, its progress on the terminal, then its
 * counts and findings (masked). With --repair, its findings are repaired: deliveries the syncers send.
 */
export async function reconcileCommand(config: Config, log: Logger, command: ReconcileCommand, out: Out): Promise<void> {
  const endSystems = loadEndSystems(config.syncer.endSystemsFile)
  await withSyncerDatabase(config, async (db) => {
    const reconciler = new Reconciler({ db, endSystems, log, leaseMs: CLI_LEASE_MS })
    const unknown = command.systems.filter((name) => !reconciler.reconcilable.includes(name))
    if (unknown.length) throw new ConfigError(`Cannot read back ${unknown.join(', ')}; these can: ${reconciler.reconcilable.join(', ')}.`)
    const chosen = command.systems.length ? command.systems : reconciler.reconcilable
    const run = await createRun(db, {
      kind: 'RECONCILE',
      endSystems: chosen,
      cifIds: command.cifIds,
      since: command.since,
      repair: [...new Set(endSystems.filter((s) => chosen.includes(s.name)).flatMap((s) => s.reconcile?.repair ?? []))],
      requestedBy: command.by,
      leaseMs: CLI_LEASE_MS
    })
    out(`reconciliation run ${run.id}: ${chosen.join(', ')}, ${run.total} customers`)
    try {
      await reconciler.work(run, (state) => void toRun(db, state).then((shown) => out(progressLine(`  run ${run.id}:`, shown.progress))))
    } finally {
      await reconciler.stop()
    }
    const done = await toRun(db, await runById(db, run.id))
    out(`run ${run.id} ${done.state}: ${JSON.stringify(done.counts)}, ${done.errors} errors`)
    for (const situation of ['MISSING', 'ALTERED', 'STALE', 'UNLINKED', 'ORPHAN'] satisfies Situation[]) {
      for (const finding of await findFindings(db, run.id, { situation, limit: '20' })) {
        const fields = finding.differences?.map((d) => `${d.field}: ${d.held} (expected ${d.expected})`).join('; ')
        out(`  finding ${finding.findingId}: ${finding.endSystem} ${finding.cifId} ${situation}${fields ? ` ${fields}` : ''}`)
      }
    }
    if (command.repair) {
      const made = await repairOnRequest(db, { runId: run.id }, { operator: command.by, reason: 'asked on the command line (reconcile --repair)' })
      out(`repairs asked for: ${made.length} deliveries (the syncers send them)`)
    }
  })
}

/** `cif-syncer repair --run N | --finding N --reason ...`: findings repaired on request. */
export async function repairCommand(
  config: Config,
  which: { runId: string } | { findingIds: string[] },
  by: string,
  reason: string,
  out: Out
): Promise<void> {
  await withSyncerDatabase(config, async (db) => {
    const made = await repairOnRequest(db, which, { operator: by, reason })
    out(`repairs asked for: ${made.length} deliveries (${made.join(', ') || 'none'}); the syncers send them`)
  })
}

/**
 * `cif-syncer backfill --system X`: asks for a delivery of each customer's latest version the system holds no
 * record of (at the system's rate), then shows the deliveries' progress until all are settled. The syncers'
 * lanes deliver; stopping this command stops nothing but the display (a syncer takes up the queuing).
 */
export async function backfillCommand(config: Config, log: Logger, system: string, by: string, out: Out): Promise<void> {
  const endSystems = loadEndSystems(config.syncer.endSystemsFile)
  if (!endSystems.some((s) => s.name === system)) {
    throw new ConfigError(`${system} is not in the end systems file; these are: ${endSystems.map((s) => s.name).join(', ')}.`)
  }
  await withSyncerDatabase(config, async (db) => {
    const reconciler = new Reconciler({ db, endSystems, log, leaseMs: CLI_LEASE_MS })
    const run = await createRun(db, { kind: 'BACKFILL', endSystems: [system], requestedBy: by, leaseMs: CLI_LEASE_MS })
    out(`backfill run ${run.id}: ${run.total} customers to deliver to ${system}`)
    let shown = ''
    const show = async (): Promise<Awaited<ReturnType<typeof toRun>>> => {
      const state = await toRun(db, await runById(db, run.id))
      const line = `${progressLine(`  ${system}:`, state.progress)} (${state.queued} asked for)`
      if (line !== shown) out(line)
      shown = line
      return state
    }
    const queuing = reconciler.work(run).finally(() => reconciler.stop())
    for (;;) {
      const state = await show()
      const open = Object.entries(state.deliveries)
        .filter(([s]) => !['SUCCESS', 'SKIPPED', 'FAILED'].includes(s))
        .reduce((sum, [, n]) => sum + n, 0)
      if (state.state === 'DONE' && open === 0) {
        out(`backfill run ${run.id} done: ${JSON.stringify(state.deliveries)}`)
        break
      }
      await sleep(1000)
    }
    await queuing
  })
}
