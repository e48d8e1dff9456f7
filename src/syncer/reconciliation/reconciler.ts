import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import { RateLimiter } from 'limiter'
import type { Logger } from '../../platform/logger.ts'
import type { EndSystemConfig, ReconcileConfig } from '../delivery/end-systems-config.ts'
import { mappingInput } from '../delivery/lane.ts'
import { personalDataMasker } from '../delivery/masking.ts'
import type { ReconciliationRunRow, SyncerDb } from '../tables.ts'
import { EndSystemReader } from './end-system-reader.ts'
import {
  claimRun,
  createRun,
  customerPage,
  finishRun,
  knownCifIds,
  type LatestCustomer,
  latestRunStart,
  liveWorkDue,
  type NewFinding,
  pairKey,
  pairStates,
  queueBackfill,
  recordListing,
  recordPage
} from './run-store.ts'
import { classify, orphans, shownDifference, textsOf } from './situations.ts'

export interface ReconcilerOptions {
  db: SyncerDb
  endSystems: EndSystemConfig[]
  log: Logger
  /** How long a run stays this process's without a page done; then another may take it over. */
  leaseMs?: number
  pageSize?: number
  /** How long a run waits for a system's due live deliveries before it reads that system anyway. */
  liveFirstMaxWaitMs?: number
}

const DEFAULT_LEASE_MS = 60_000
const DEFAULT_PAGE_SIZE = 100
const LIVE_FIRST_MAX_WAIT_MS = 30_000
/** Any fixed number: one syncer at a time starts the scheduled runs. */
const SCHEDULE_LOCK = 7_270_011

interface Reachable {
  system: EndSystemConfig
  /** Paces reads and backfill deliveries: the system's own rate. */
  limiter: RateLimiter
  /** Only for systems that can be read back (`read` and `compare`). */
  readBack: { reconcile: ReconcileConfig; reader: EndSystemReader } | undefined
}

/** Takes `count` tokens, a bucket's worth at a time (the limiter refuses more than its bucket at once). */
async function take(limiter: RateLimiter, count: number, perSecond: number): Promise<void> {
  for (let left = count; left > 0; left -= perSecond) await limiter.removeTokens(Math.min(left, perSecond))
}

/**
 * Works reconciliation and backfill runs page by page: reads customers back from the end systems (gently: a
 * rate limit per system, and a system's due live deliveries first), classifies each pair, stores findings,
 * counts and where it stands after every page, so a run a crash interrupted is taken up where it stopped.
 */
export class Reconciler {
  readonly #db: SyncerDb
  readonly #log: Logger
  readonly #systems = new Map<string, Reachable>()
  readonly #configured: Map<string, EndSystemConfig>
  readonly #leaseMs: number
  readonly #pageSize: number
  readonly #liveFirstMaxWaitMs: number
  #stopped = false
  #working: Promise<void> | undefined

  constructor(options: ReconcilerOptions) {
    this.#db = options.db
    this.#log = options.log
    this.#leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS
    this.#pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE
    this.#liveFirstMaxWaitMs = options.liveFirstMaxWaitMs ?? LIVE_FIRST_MAX_WAIT_MS
    this.#configured = new Map(options.endSystems.map((system) => [system.name, system]))
    for (const system of options.endSystems) {
      this.#systems.set(system.name, {
        system,
        limiter: new RateLimiter({ tokensPerInterval: system.readBackRatePerSecond, interval: 'second' }),
        readBack: system.reconcile && { reconcile: system.reconcile, reader: new EndSystemReader(system, system.reconcile) }
      })
    }
  }

  /** The systems a reconciliation can read back (they have `read` and `compare`). */
  get reconcilable(): string[] {
    return [...this.#configured.values()].filter((system) => system.reconcile).map((system) => system.name)
  }

  get configured(): string[] {
    return [...this.#configured.keys()]
  }

  /** Starts the runs each system's schedule (`reconcile.everyMinutes`) says are due; one syncer at a time. */
  async startScheduledRuns(): Promise<ReconciliationRunRow[]> {
    const due = [...this.#configured.values()].filter((system) => system.reconcile?.everyMinutes)
    if (due.length === 0) return []
    return this.#db.transaction().execute(async (trx) => {
      const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(${SCHEDULE_LOCK}) as locked`.execute(trx)
      if (!rows[0]!.locked) return []
      const started: ReconciliationRunRow[] = []
      for (const system of due) {
        const last = await latestRunStart(trx, 'RECONCILE', system.name)
        if (last && Date.now() - last.getTime() < system.reconcile!.everyMinutes! * 60_000) continue
        started.push(
          await createRun(trx, {
            kind: 'RECONCILE',
            endSystems: [system.name],
            repair: system.reconcile!.repair,
            requestedBy: 'schedule'
          })
        )
      }
      return started
    })
  }

  /** Takes a run nobody works on (or `runId`) and works it to its end; undefined when there was none to take. */
  async workOne(runId?: string, onPage?: (run: ReconciliationRunRow) => void): Promise<ReconciliationRunRow | undefined> {
    const run = await claimRun(this.#db, this.#leaseMs, runId)
    if (!run) return undefined
    await this.work(run, onPage)
    return run
  }

  /** Works a run this process holds the lease of, page after page, to its end (or until stopped). */
  async work(run: ReconciliationRunRow, onPage?: (run: ReconciliationRunRow) => void): Promise<void> {
    this.#working = this.#work(run, onPage)
    try {
      await this.#working
    } finally {
      this.#working = undefined
    }
  }

  async #work(run: ReconciliationRunRow, onPage?: (run: ReconciliationRunRow) => void): Promise<void> {
    this.#log.info({ runId: run.id, kind: run.kind, endSystems: run.end_systems }, 'run taken')
    const current = () => this.#db.selectFrom('reconciliation_run').selectAll().where('id', '=', run.id).executeTakeFirstOrThrow()
    let state = run
    for (;;) {
      if (this.#stopped) return
      const page = await customerPage(this.#db, state, this.#pageSize)
      if (page.length === 0) break
      if (state.kind === 'BACKFILL') await this.#backfillPage(state, page)
      else await this.#reconcilePage(state, page)
      state = await current()
      onPage?.(state)
    }
    if (state.kind === 'RECONCILE' && !state.cif_ids && !state.since) {
      for (const name of state.end_systems) {
        if (this.#stopped) return
        await this.#listOrphans(state, name)
      }
    }
    if (this.#stopped) return
    await finishRun(this.#db, run.id)
    state = await current()
    onPage?.(state)
    this.#log.info({ runId: run.id, counts: state.counts, errors: state.errors }, 'run done')
  }

  async #liveFirst(endSystem: string): Promise<void> {
    const until = Date.now() + this.#liveFirstMaxWaitMs
    while (!this.#stopped && Date.now() < until && (await liveWorkDue(this.#db, endSystem))) await sleep(200)
  }

  async #reconcilePage(run: ReconciliationRunRow, page: LatestCustomer[]): Promise<void> {
    const systems = run.end_systems.map((name) => this.#systems.get(name))
    const pairs = await pairStates(
      this.#db,
      page.map((c) => c.cif_id),
      run.end_systems
    )
    const counts: Record<string, number> = {}
    const count = (key: string) => {
      counts[key] = (counts[key] ?? 0) + 1
    }
    const findings: NewFinding[] = []
    let errors = 0
    for (const name of run.end_systems) await this.#liveFirst(name)
    await Promise.all(
      page.flatMap((customer) =>
        systems.map(async (entry, i) => {
          const name = run.end_systems[i]!
          const readBack = entry?.readBack
          if (!entry || !readBack) {
            errors++ // not configured here, or not readable: said in the run's errors, never guessed
            return
          }
          const pair = pairs.get(pairKey(customer.cif_id, name))!
          if (pair.underWay) return count('underWay')
          if (!customer.event) {
            errors++
            return
          }
          await entry.limiter.removeTokens(1)
          const read = await readBack.reader.read(customer.cif_id, pair.externalId)
          if (read.kind === 'error') {
            errors++
            return
          }
          const input = mappingInput(customer.event)
          // As JSON, as a system would hold it: JSONata's arrays carry properties of their own, and undefined is left out.
          const expected = JSON.parse(JSON.stringify((await readBack.reconcile.compare.evaluate(input)) ?? null)) as unknown
          const found = classify(read, expected, customer.customer_version, customer.cif_id)
          count(found.situation)
          if (found.situation === 'IN_SYNC') return
          const mask = personalDataMasker(input.customer)
          const plain = new Set(textsOf(expected).filter((text) => mask(text) === text))
          const shown = (value: unknown) => shownDifference(value, mask, plain)
          findings.push({
            cifId: customer.cif_id,
            endSystem: name,
            situation: found.situation,
            customerVersion: customer.customer_version,
            heldVersion: found.situation === 'STALE' ? found.heldVersion : read.kind === 'found' ? (read.heldVersion ?? null) : null,
            externalId: pair.externalId,
            differences:
              'differences' in found ? found.differences.map((d) => ({ field: d.field, expected: shown(d.expected), held: shown(d.held) })) : null,
            owner: customer.owner_source_system,
            eventId: customer.event_id
          })
        })
      )
    )
    // Stopped mid-page: its reads may have been cut short. Nothing of it is stored; the run does it again.
    if (this.#stopped) return
    if (errors) this.#log.warn({ runId: run.id, errors }, 'pairs could not be read back; counted as errors')
    await recordPage(this.#db, run.id, {
      lastCifId: page.at(-1)!.cif_id,
      customers: page.length,
      errors,
      counts,
      findings,
      leaseMs: this.#leaseMs
    })
  }

  /** Pages through a system's list for records of CIF IDs the CIF never published (ORPHAN), from where the run left it. */
  async #listOrphans(run: ReconciliationRunRow, name: string): Promise<void> {
    const entry = this.#systems.get(name)
    const reader = entry?.readBack?.reconcile.list && entry.readBack.reader
    if (!entry || !reader) return
    let cursor = run.listing[name]
    while (cursor !== true && !this.#stopped) {
      await entry.limiter.removeTokens(1)
      const page = await reader.list(cursor ?? '')
      if ('kind' in page) {
        this.#log.warn({ runId: run.id, endSystem: name, reason: page.message }, 'list could not be read; orphans not looked for')
        await recordListing(this.#db, run.id, name, true, [], this.#leaseMs)
        return
      }
      const known = await knownCifIds(
        this.#db,
        page.records.map((r) => r.cifId)
      )
      const orphaned = new Set(
        orphans(
          page.records.map((r) => r.cifId),
          known
        )
      )
      const findings = page.records
        .filter((record) => orphaned.delete(record.cifId))
        .map(
          (record): NewFinding => ({
            cifId: record.cifId,
            endSystem: name,
            situation: 'ORPHAN',
            customerVersion: null,
            heldVersion: null,
            externalId: record.externalId,
            differences: null,
            owner: null,
            eventId: null
          })
        )
      cursor = page.next ?? true
      if (this.#stopped) return
      await recordListing(this.#db, run.id, name, cursor, findings, this.#leaseMs)
    }
  }

  async #backfillPage(run: ReconciliationRunRow, page: LatestCustomer[]): Promise<void> {
    const name = run.end_systems[0]!
    const entry = this.#systems.get(name)
    await this.#liveFirst(name)
    const pairs = await pairStates(
      this.#db,
      page.map((c) => c.cif_id),
      [name]
    )
    const wanted = page.filter((c) => {
      const pair = pairs.get(pairKey(c.cif_id, name))!
      return c.event && !pair.externalId && !pair.underWay
    })
    // The rate limit paces the deliveries a backfill asks for, so the system gets them no faster than it allows.
    if (entry) await take(entry.limiter, wanted.length, entry.system.readBackRatePerSecond)
    if (this.#stopped) return
    await queueBackfill(this.#db, run, wanted, page.at(-1)!.cif_id, this.#leaseMs)
  }

  /** Stops after the page in hand; the run keeps its place (its lease runs out, and any syncer takes it up). */
  async stop(): Promise<void> {
    this.#stopped = true
    await this.#working?.catch(() => {})
    await Promise.all([...this.#systems.values()].map((entry) => entry.readBack?.reader.close()))
  }
}
