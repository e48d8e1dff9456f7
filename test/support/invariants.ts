import { sql } from 'kysely'
import { loadEndSystems } from '../../src/syncer/delivery/end-systems-config.ts'
import type { ProcessStack } from './stack.ts'

interface SimulatedRecord {
  id: string
  cifId: string
  version: number
  payload: Record<string, unknown>
}

export interface InvariantReport {
  customers: number
  versions: number
  deliveries: number
  repeatedCalls: number
  /** Customers whose latest version is not where it should be (must be 0). */
  lost: number
  problems: string[]
}

/** How far past its timeout an attempt may end on a crowded machine (timers and the event loop run late); a call
 * its timeout does not cover runs far longer (a trickling answer: its whole length). */
const ATTEMPT_OVERRUN_SLACK_MS = 3000

/**
 * Checks, with the CIF database as the truth, that every customer's every version reached every end
 * system: one record per customer per system holding the latest version, a SUCCESS attempt for every
 * delivery, none left IN_FLIGHT, and an "in sync" status for every customer's latest version.
 */
export async function checkInvariants(
  stack: ProcessStack,
  since: Date,
  inSyncSeen: (cifId: string, version: number) => boolean
): Promise<InvariantReport> {
  const { db } = stack.database
  const customers = await db.selectFrom('customer').select(['cif_id', 'version', 'record']).where('created_at', '>=', since).execute()
  const problems: string[] = []
  const lost = new Set<string>()
  // The systems the syncer delivers to: the simulator also runs one no shipped file names (lending, for a backfill).
  const configured = new Set(loadEndSystems(stack.env.SYNCER_END_SYSTEMS_FILE!, stack.env).map((system) => system.name))
  const systems = ((await (await fetch(`${stack.simulatorUrl}/systems`)).json()) as { name: string; repeated: number }[]).filter((system) =>
    configured.has(system.name)
  )
  const recordsBySystem = new Map<string, Map<string, SimulatedRecord[]>>()
  for (const system of systems) {
    const records = (await (await fetch(`${stack.simulatorUrl}/systems/${system.name}/records`)).json()) as SimulatedRecord[]
    const byCif = new Map<string, SimulatedRecord[]>()
    for (const record of records) byCif.set(record.cifId, [...(byCif.get(record.cifId) ?? []), record])
    recordsBySystem.set(system.name, byCif)
  }
  const problem = (cifId: string, text: string): void => {
    lost.add(cifId)
    if (problems.length < 20) problems.push(`${cifId}: ${text}`)
  }

  const events = await db
    .selectFrom('sync_event')
    .select(['cif_id', (eb) => eb.fn.countAll<string>().as('n')])
    .where('cif_id', 'in', customers.length ? customers.map((c) => c.cif_id) : [''])
    .groupBy('cif_id')
    .execute()
  const eventCount = new Map(events.map((e) => [e.cif_id, Number(e.n)]))
  for (const customer of customers) {
    if (eventCount.get(customer.cif_id) !== customer.version) {
      problem(customer.cif_id, `the syncer has ${eventCount.get(customer.cif_id) ?? 0} of ${customer.version} versions`)
    }
    for (const [system, byCif] of recordsBySystem) {
      const held = byCif.get(customer.cif_id) ?? []
      if (held.length !== 1) problem(customer.cif_id, `${system} holds ${held.length} records`)
      else if (held[0]!.version !== customer.version) problem(customer.cif_id, `${system} holds version ${held[0]!.version} of ${customer.version}`)
      else if (system === 'crm' && held[0]!.payload.email !== (customer.record as { email?: string }).email) {
        problem(customer.cif_id, 'crm holds another email than the latest version')
      }
    }
    if (!inSyncSeen(customer.cif_id, customer.version)) problem(customer.cif_id, `no "in sync" status for version ${customer.version}`)
  }

  const { rows: unfinished } = await sql<{ cif_id: string; state: string; successes: string }>`
    select d.cif_id, d.state, (select count(*) from delivery_attempt a where a.delivery_id = d.id and a.status = 'SUCCESS') as successes
    from delivery d join customer c on c.cif_id = d.cif_id
    where c.created_at >= ${since}
      and (d.state <> 'SUCCESS' or not exists (select 1 from delivery_attempt a where a.delivery_id = d.id and a.status = 'SUCCESS'))`.execute(db)
  for (const row of unfinished) problem(row.cif_id, `a delivery is ${row.state} with ${row.successes} SUCCESS attempts`)
  // A call's timeout bounds it whatever the network does (a black hole, an answer that trickles in); one that
  // lasted well past it waited on something the timeout did not cover. Not lost, but wrong.
  const { rows: overran } = await sql<{ cif_id: string; end_system: string; duration_ms: number; timeout_ms: number }>`
    select a.cif_id, a.end_system, a.duration_ms, a.timeout_ms from delivery_attempt a join customer c on c.cif_id = a.cif_id
    where c.created_at >= ${since} and a.duration_ms > a.timeout_ms + ${ATTEMPT_OVERRUN_SLACK_MS}
    order by a.duration_ms - a.timeout_ms desc limit 5`.execute(db)
  for (const row of overran) {
    problems.push(`${row.cif_id}: an attempt at ${row.end_system} took ${row.duration_ms} ms with a timeout of ${row.timeout_ms} ms`)
  }
  const deliveries = await db
    .selectFrom('delivery')
    .innerJoin('customer', 'customer.cif_id', 'delivery.cif_id')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('customer.created_at', '>=', since)
    .executeTakeFirstOrThrow()
  return {
    customers: customers.length,
    versions: customers.reduce((sum, c) => sum + c.version, 0),
    deliveries: Number(deliveries.n),
    repeatedCalls: systems.reduce((sum, s) => sum + s.repeated, 0),
    lost: lost.size,
    problems
  }
}

/** Waits until every delivery of customers made since `since` is finished, or the time is up. */
export async function waitUntilDrained(stack: ProcessStack, since: Date, timeoutMs: number): Promise<number> {
  const started = Date.now()
  for (;;) {
    const { rows } = await sql<{ open: string; missing: string }>`
      select
        (select count(*) from delivery d join customer c on c.cif_id = d.cif_id
           where c.created_at >= ${since} and d.state <> 'SUCCESS') as open,
        (select coalesce(sum(c.version), 0) - (select count(*) from sync_event e join customer c2 on c2.cif_id = e.cif_id where c2.created_at >= ${since})
           from customer c where c.created_at >= ${since}) as missing`.execute(stack.database.db)
    if (Number(rows[0]!.open) === 0 && Number(rows[0]!.missing) === 0) return Date.now() - started
    if (Date.now() - started > timeoutMs) return -1
    await new Promise((r) => setTimeout(r, 250))
  }
}
