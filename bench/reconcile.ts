// The drift phase of `npm run bench` (`npm run bench -- reconcile`): N customers (100,000 times BENCH_SCALE) held
// by the three simulated systems, drift injected into a random 1% of them for each kind and system, then one
// reconciliation run through the syncer's admin API, as an operator starts it. Reports the share of the drift
// found (it must be all of it, and nothing else), records compared per second, and the repair time.
// The customers are written straight into the syncer's tables and the systems' stores (as if delivered long
// ago): the phase measures reading back, not delivering 300,000 creates first.
import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import { request } from 'undici'
import { cifIdFromNumber } from '../src/contracts/cif-id.ts'
import { customerEventTypes } from '../src/contracts/customer-events.ts'
import { loadEndSystems } from '../src/syncer/delivery/end-systems-config.ts'
import { mappingInput } from '../src/syncer/delivery/lane.ts'
import { operatorKey, type ProcessStack } from '../test/support/stack.ts'

type Say = (text: string) => void

/** Far from the CIF service's numbers and the history phase's: the phase's CIF IDs are its own. */
const BENCH_CIF_BASE = 7_000_000_000
const ORPHAN_CIF_BASE = 8_000_000_000
const SEED_CONCURRENCY = 32
const DB_BATCH = 5000
/** How each system is made to drift from a customer's record: a field of its own shape given another value. */
const alteredField: Record<string, Record<string, unknown>> = {
  'core-banking': { customerType: 'CORPORATE' },
  crm: { email: 'someone.else@example.net' },
  cards: { mobile: '+6500000000' }
}

function benchEvent(cifId: string, i: number): Record<string, unknown> {
  return {
    specversion: '1.0',
    id: randomUUID(),
    source: 'urn:cif-syncer:cif-service',
    type: customerEventTypes.created,
    subject: cifId,
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    customerversion: 1,
    sourcesystem: 'branch-portal',
    data: {
      cifId,
      version: 1,
      sourceSystem: 'branch-portal',
      legalForm: 'PERSON',
      firstName: 'Bench',
      lastName: `Customer${String.fromCharCode(65 + (i % 26))}${String.fromCharCode(65 + (Math.floor(i / 26) % 26))}`,
      dateOfBirth: '1980-01-01',
      mobileNumber: `+659${String(i).padStart(7, '0')}`,
      email: `bench.${i}@example.com`,
      branchCode: 'BR01',
      identifiers: [{ type: 'NATIONAL_ID', value: `B${String(i).padStart(8, '0')}`, issuingCountry: 'SG' }]
    }
  }
}

async function inParallel<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!)
    })
  )
}

async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const response = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  const text = await response.body.text()
  return { status: response.statusCode, body: text ? JSON.parse(text) : null }
}

async function admin(stack: ProcessStack, method: 'GET' | 'POST', path: string, body?: unknown): Promise<any> {
  const response = await request(`${stack.syncerUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${operatorKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {})
  })
  const answer = (await response.body.json()) as any
  if (response.statusCode >= 300) throw new Error(`${method} ${path}: ${response.statusCode} ${JSON.stringify(answer)}`)
  return answer
}

/** Shuffled with a fixed seed, so that each run drifts the same customers. */
function shuffled(n: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i)
  let seed = 11
  for (let i = n - 1; i > 0; i--) {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
    const j = seed % (i + 1)
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  return order
}

async function waitForRun(stack: ProcessStack, runId: string, say: Say): Promise<any> {
  for (;;) {
    const run = await admin(stack, 'GET', `/v1/admin/runs/${runId}`)
    if (run.state === 'DONE') return run
    say(`reconcile: run ${runId} ${run.progress.done}/${run.progress.total} customers, ${run.progress.perSecond}/s`)
    await new Promise((resolve) => setTimeout(resolve, 5000))
  }
}

export async function reconcilePhase(stack: ProcessStack, customers: number, say: Say): Promise<Record<string, unknown>> {
  const systems = loadEndSystems(stack.env.SYNCER_END_SYSTEMS_FILE!, stack.env).filter((s) => s.reconcile)
  const cifIds = Array.from({ length: customers }, (_, i) => cifIdFromNumber(BENCH_CIF_BASE + i))
  const events = cifIds.map((cifId, i) => benchEvent(cifId, i))

  // 1. Every customer in every system, through the systems' own create API, and the syncer's record of it.
  const seedStart = Date.now()
  const externalIds = new Map<string, string[]>()
  for (const system of systems) {
    const ids: string[] = new Array(customers)
    const create = system.operations.create
    await inParallel(
      events.map((event, i) => ({ event, i })),
      SEED_CONCURRENCY,
      async ({ event, i }) => {
        const body = await create.body.evaluate(mappingInput(event as never))
        const answer = await postJson(system.baseUrl + create.path, body, { ...system.authHeaders, 'idempotency-key': `${event.id}:${system.name}` })
        if (answer.status !== 201) throw new Error(`seeding ${system.name} failed: ${answer.status}`)
        ids[i] = String(await create.externalId!.evaluate(answer.body))
      }
    )
    externalIds.set(system.name, ids)
    say(`reconcile: ${customers} customers in ${system.name}`)
  }
  const { db } = stack.database
  for (let from = 0; from < customers; from += DB_BATCH) {
    const slice = events.slice(from, from + DB_BATCH)
    await sql`
      insert into sync_event (event_id, cif_id, event_type, customer_version, owner_source_system, acting_source_system, event,
        event_time, kafka_partition, kafka_offset)
      select e.id, e.cif_id, ${customerEventTypes.created}, 1, 'branch-portal', 'branch-portal', e.event, now(), 0, e.n
      from unnest(${slice.map((e) => e.id as string)}::uuid[], ${slice.map((e) => e.subject as string)}::text[],
        ${slice.map((e) => JSON.stringify(e))}::jsonb[], ${slice.map((_, k) => from + k)}::bigint[]) as e(id, cif_id, event, n)`.execute(db)
    for (const system of systems) {
      const ids = externalIds.get(system.name)!.slice(from, from + DB_BATCH)
      await sql`
        insert into delivery (event_id, cif_id, end_system, operation, customer_version, state, attempts, external_id, completed_at)
        select e.id, e.cif_id, ${system.name}, 'create', 1, 'SUCCESS', 1, e.external_id, now()
        from unnest(${slice.map((e) => e.id as string)}::uuid[], ${slice.map((e) => e.subject as string)}::text[], ${ids}::text[])
          as e(id, cif_id, external_id)`.execute(db)
      await sql`
        insert into customer_xref (cif_id, end_system, external_id)
        select e.cif_id, ${system.name}, e.external_id
        from unnest(${slice.map((e) => e.subject as string)}::text[], ${ids}::text[]) as e(cif_id, external_id)`.execute(db)
    }
  }
  await sql`analyze sync_event; analyze delivery; analyze customer_xref`.execute(db)
  const seedMs = Date.now() - seedStart
  say(`reconcile: seeded ${customers} customers × ${systems.length} systems in ${(seedMs / 1000).toFixed(0)} s`)

  // 2. Drift: a random 1% of the customers for each kind and system (disjoint within a system).
  const share = Math.max(1, Math.round(customers / 100))
  const injected = new Map<string, string>() // "cifId:system" → situation
  const order = shuffled(customers)
  let orphanNumber = 0
  for (const [s, system] of systems.entries()) {
    const rotated = [...order.slice((s * share * 5) % customers), ...order.slice(0, (s * share * 5) % customers)]
    const pick = (k: number) => rotated.slice(k * share, (k + 1) * share).map((i) => cifIds[i]!)
    const drift = (body: unknown) => postJson(`${stack.simulatorUrl}/systems/${system.name}/drift`, body)
    const kinds: [string, string[]][] = [
      ['MISSING', pick(0)],
      ['ALTERED', pick(1)],
      ['UNLINKED', pick(2)],
      ...(system.reconcile!.read.version ? ([['STALE', pick(3)]] as [string, string[]][]) : [])
    ]
    await inParallel(
      kinds.flatMap(([situation, ids]) => ids.map((cifId) => ({ situation, cifId }))),
      SEED_CONCURRENCY,
      async ({ situation, cifId }) => {
        injected.set(`${cifId}:${system.name}`, situation)
        if (situation === 'MISSING') await drift({ kind: 'delete', cifId })
        if (situation === 'ALTERED') await drift({ kind: 'alter', cifId, fields: alteredField[system.name] })
        if (situation === 'STALE') await drift({ kind: 'alter', cifId, fields: { version: 0 } })
      }
    )
    const unlinked = kinds.find(([situation]) => situation === 'UNLINKED')![1]
    await db.deleteFrom('customer_xref').where('end_system', '=', system.name).where('cif_id', 'in', unlinked).execute()
    const orphans = Array.from({ length: share }, () => cifIdFromNumber(ORPHAN_CIF_BASE + orphanNumber++))
    await inParallel(orphans, SEED_CONCURRENCY, async (cifId) => {
      injected.set(`${cifId}:${system.name}`, 'ORPHAN')
      await drift({ kind: 'orphan', cifId })
    })
  }
  say(`reconcile: drift injected into ${injected.size} pairs (${share} per kind and system)`)

  // 3. One run over everything, as an operator starts it.
  const runStart = Date.now()
  const started = await admin(stack, 'POST', '/v1/admin/reconciliations', {})
  const run = await waitForRun(stack, started.runId, say)
  const runMs = Date.now() - runStart
  const findings: any[] = []
  for (let after = '0'; ; ) {
    const page = (await admin(stack, 'GET', `/v1/admin/runs/${run.runId}/findings?limit=500&after=${after}`)).findings
    findings.push(...page)
    if (page.length < 500) break
    after = page.at(-1).findingId
  }
  const found = new Map(findings.map((f) => [`${f.cifId}:${f.endSystem}`, f.situation as string]))
  const rightly = [...injected].filter(([pair, situation]) => found.get(pair) === situation).length
  const falseFindings = [...found].filter(([pair, situation]) => injected.get(pair) !== situation)
  const compared = Object.entries(run.counts as Record<string, number>)
    .filter(([key]) => key !== 'underWay' && key !== 'ORPHAN')
    .reduce((sum, [, n]) => sum + n, 0)

  // 4. Repair the run's findings: normal deliveries through the syncer's lanes.
  const repairStart = Date.now()
  const { deliveryIds } = await admin(stack, 'POST', `/v1/admin/runs/${run.runId}/repair`, { reason: 'drift benchmark' })
  let repairStates: Record<string, number> = {}
  for (;;) {
    const { rows } = await sql<{ state: string; n: number }>`
      select state, count(*)::int as n from delivery where reconciliation_run_id = ${run.runId} group by state`.execute(db)
    repairStates = Object.fromEntries(rows.map((row) => [row.state, row.n]))
    // Settled, or FAILED (an operator's to look at): nothing more will move by itself.
    if (rows.every((row) => row.state === 'SUCCESS' || row.state === 'FAILED' || row.state === 'SKIPPED')) break
    await new Promise((resolve) => setTimeout(resolve, 1000))
  }
  const repairMs = Date.now() - repairStart

  // 5. Read the drifted customers back again: all in sync now (a sample of at most 10,000, the API's limit per run).
  const drifted = [...new Set([...injected].filter(([, s]) => s !== 'ORPHAN').map(([pair]) => pair.split(':')[0]!))].slice(0, 10_000)
  const check = await waitForRun(stack, (await admin(stack, 'POST', '/v1/admin/reconciliations', { cifIds: drifted })).runId, say)

  const result = {
    customers,
    endSystems: systems.map((s) => s.name),
    readRatePerSecondLimit: systems.map((s) => s.readBackRatePerSecond),
    seedMs,
    injected: injected.size,
    found: rightly,
    foundShare: Math.round((rightly / injected.size) * 10_000) / 100,
    falseFindings: falseFindings.length,
    falseFindingExamples: falseFindings.slice(0, 5),
    runMs,
    pairsCompared: compared,
    recordsComparedPerSecond: Math.round(compared / (runMs / 1000)),
    counts: run.counts,
    errors: run.errors,
    repairs: deliveryIds.length,
    repairStates,
    repairMs,
    afterRepair: { customers: drifted.length, counts: check.counts, errors: check.errors }
  }
  say(`reconcile: ${JSON.stringify(result)}`)
  return result
}
