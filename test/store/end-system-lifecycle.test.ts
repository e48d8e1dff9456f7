import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { syncerProblems } from '../../src/contracts/problems.ts'
import {
  pausedEndSystems,
  pauseEndSystem,
  resumeEndSystem,
  retireRemovedEndSystems,
  supersedeQueued
} from '../../src/syncer/delivery/end-system-store.ts'
import { remark } from '../../src/syncer/delivery/states.ts'
import { overdueVersions, tellOverdue } from '../../src/syncer/status/overdue.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import {
  attemptsOf,
  claim,
  claimOne,
  decisions,
  deliveriesOf,
  deliveryOf,
  madeAt,
  newCifId,
  newEndSystem,
  record,
  refusalOf,
  statusesOf,
  storeVersions
} from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

const syncer = () => asSyncer(database.db)
const versions = (n: number) => Array.from({ length: n }, (_, i) => i + 1)
const systemActions = (endSystem: string) =>
  database.db
    .selectFrom('operator_action')
    .select(['action', 'operator', 'reason', 'delivery_id', 'from_state'])
    .where('end_system', '=', endSystem)
    .orderBy('id')
    .execute()

describe('pausing and resuming an end system', () => {
  it('holds its deliveries unattempted with the pause in their remarks while other systems go on, and resumes them in order', async () => {
    const crm = newEndSystem('crm')
    const cards = newEndSystem('cards')
    const [first, second] = [newCifId(), newCifId()]
    await storeVersions(database.db, first, [1], [crm, cards])
    // One failed once already and waits for its retry: the pause must not spend its budget.
    await record(database.db, await claimOne(database.db, crm), decisions.retry(0))

    const pause = await pauseEndSystem(syncer(), { endSystem: crm, operator: 'ops.tan', reason: 'crm maintenance window' })
    expect(pause).toMatchObject({ endSystem: crm, pausedBy: 'ops.tan', reason: 'crm maintenance window' })
    // Stored while paused: it says so from the start.
    await storeVersions(database.db, second, [1, 2], [crm, cards])
    const paused = remark('paused', { operator: 'ops.tan', reason: 'crm maintenance window' })
    expect(paused).toBe('paused by ops.tan: crm maintenance window')
    const waiting = [...(await deliveriesOf(database.db, first)), ...(await deliveriesOf(database.db, second))].filter((d) => d.end_system === crm)
    expect(waiting.map((d) => [d.state, d.remarks])).toEqual([
      ['RETRY_SCHEDULED', paused],
      ['PENDING', paused],
      ['PENDING', paused]
    ])
    expect(await claim(database.db, crm)).toEqual([])
    // Other systems go on.
    expect((await claim(database.db, cards)).map((d) => d.cif_id)).toEqual([first, second])
    expect(await pausedEndSystems(syncer())).toEqual([pause])

    await resumeEndSystem(syncer(), { endSystem: crm, operator: 'ops.lim', reason: 'maintenance over' })
    expect(await pausedEndSystems(syncer())).toEqual([])
    const resumed = remark('resumed', { system: crm, operator: 'ops.lim', reason: 'maintenance over' })
    // In order: the retry, then the other customer's create; its update only after the create.
    const taken = await claim(database.db, crm)
    expect(taken.map((d) => [d.cif_id, d.customer_version, d.round_attempts, d.remarks])).toEqual([
      [first, 1, 2, resumed],
      [second, 1, 1, resumed]
    ])
    expect(await attemptsOf(database.db, taken[1]!.id)).toEqual([])
    expect(await systemActions(crm)).toEqual([
      { action: 'PAUSE', operator: 'ops.tan', reason: 'crm maintenance window', delivery_id: null, from_state: null },
      { action: 'RESUME', operator: 'ops.lim', reason: 'maintenance over', delivery_id: null, from_state: null }
    ])
  })

  it('refuses a pause of a paused system and a resume of a running one, saying which it is', async () => {
    const crm = newEndSystem('crm')
    expect((await refusalOf(resumeEndSystem(syncer(), { endSystem: crm, operator: 'ops.tan', reason: 'go' }))).type).toBe(
      syncerProblems.endSystemStateConflict
    )
    await pauseEndSystem(syncer(), { endSystem: crm, operator: 'ops.tan', reason: 'maintenance' })
    const twice = await refusalOf(pauseEndSystem(syncer(), { endSystem: crm, operator: 'ops.lim', reason: 'maintenance too' }))
    expect(twice.type).toBe(syncerProblems.endSystemStateConflict)
    expect(twice.message).toMatch(new RegExp(`End system ${crm} is paused already, by ops.tan since `))
    expect(twice.extra).toEqual({ paused: true })
    expect((await systemActions(crm)).map((a) => a.action)).toEqual(['PAUSE'])
    await resumeEndSystem(syncer(), { endSystem: crm, operator: 'ops.tan', reason: 'done' })
  })
})

describe('retiring a system removed from the configuration', () => {
  /** A syncer starting with every end system this file made except `removed`. */
  async function startWithout(removed: string): Promise<Map<string, number>> {
    const others = await database.db.selectFrom('delivery').select('end_system').distinct().where('end_system', '<>', removed).execute()
    return retireRemovedEndSystems(
      syncer(),
      others.map((row) => row.end_system)
    )
  }

  it('retires its open deliveries once, with remarks and a status each, leaving what it holds, and tells a version then in sync', async () => {
    const crm = newEndSystem('crm')
    const cards = newEndSystem('cards')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1, 2], [crm, cards])
    await record(database.db, await claimOne(database.db, crm), decisions.success('C-1'))
    await record(database.db, await claimOne(database.db, cards), decisions.success('K-1'))
    await record(database.db, await claimOne(database.db, cards), decisions.success())

    expect(await startWithout(crm)).toEqual(new Map([[crm, 1]]))
    const retired = remark('retired', { system: crm })
    expect((await deliveriesOf(database.db, cifId)).map((d) => [d.end_system, d.customer_version, d.state, d.remarks])).toEqual([
      [cards, 1, 'SUCCESS', expect.anything()],
      [cards, 2, 'SUCCESS', expect.anything()],
      [crm, 1, 'SUCCESS', expect.anything()],
      [crm, 2, 'RETIRED', retired]
    ])
    expect(retired).toBe(`retired: ${crm} is no longer in the end systems file, so this was never sent`)
    // A second start (or a second syncer) finds nothing more to do.
    expect(await startWithout(crm)).toEqual(new Map())
    const { feed } = await statusesOf(database.db, cifId)
    expect(feed.map((s) => [s.kind, s.data.endSystem ?? s.data.endSystems, s.data.customerVersion])).toEqual([
      ['DELIVERED', crm, 1],
      ['DELIVERED', cards, 1],
      ['IN_SYNC', [cards, crm], 1],
      ['DELIVERED', cards, 2],
      ['RETIRED', crm, 2],
      // Version 2 is in every system still configured.
      ['IN_SYNC', [cards], 2]
    ])
  })

  it('lets new deliveries flow when the system comes back', async () => {
    const crm = newEndSystem('crm')
    const [before, after] = [newCifId(), newCifId()]
    await storeVersions(database.db, before, [1], [crm])
    await startWithout(crm)
    await storeVersions(database.db, after, [1], [crm])
    expect((await claim(database.db, crm)).map((d) => d.cif_id)).toEqual([after])
  })
})

describe('coalescing queued versions', () => {
  it('sends the create, supersedes versions 2-9 by 10, and sends 10 once the create succeeded', async () => {
    const cards = newEndSystem('cards')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, versions(10), [cards])
    expect(await supersedeQueued(syncer(), cards, 16)).toBe(8)
    const create = await claimOne(database.db, cards)
    expect(create.customer_version).toBe(1)
    const newest = await deliveryOf(database.db, cifId, cards, 10)
    const superseded = (await deliveriesOf(database.db, cifId)).filter((d) => d.state === 'SUPERSEDED')
    expect(superseded.map((d) => d.customer_version)).toEqual([2, 3, 4, 5, 6, 7, 8, 9])
    expect(superseded[0]!.remarks).toBe(
      `superseded by version 10 (delivery ${newest.id}): ${cards} takes the full record, so only the newest queued version is sent`
    )
    expect(superseded.every((d) => d.completed_at !== null && d.attempts === 0)).toBe(true)
    // Nothing else is due while the create is in flight.
    expect(await supersedeQueued(syncer(), cards, 16)).toBe(0)
    expect(await claim(database.db, cards)).toEqual([])
    await record(database.db, create, decisions.success('K-1'))
    expect(await supersedeQueued(syncer(), cards, 16)).toBe(0)
    expect((await claimOne(database.db, cards)).customer_version).toBe(10)
    const { feed } = await statusesOf(database.db, cifId)
    expect(feed.filter((s) => s.kind === 'SUPERSEDED').map((s) => [s.data.customerVersion, s.data.state])).toEqual(
      versions(9)
        .slice(1)
        .map((v) => [v, 'SUPERSEDED'])
    )
  })

  it('supersedes queued updates behind a delivered create, and one waiting for its retry, by the newest', async () => {
    const cards = newEndSystem('cards')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1, 2], [cards])
    await record(database.db, await claimOne(database.db, cards), decisions.success('K-1'))
    await record(database.db, await claimOne(database.db, cards), decisions.retry(0))
    await storeVersions(database.db, cifId, [3, 4], [cards])
    expect(await supersedeQueued(syncer(), cards, 16)).toBe(2)
    expect((await deliveriesOf(database.db, cifId)).map((d) => d.state)).toEqual(['SUCCESS', 'SUPERSEDED', 'SUPERSEDED', 'PENDING'])
    expect((await claimOne(database.db, cards)).customer_version).toBe(4)
  })

  it('coalesces nothing while the system is paused: the newest is decided when it goes', async () => {
    const cards = newEndSystem('cards')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [cards])
    await record(database.db, await claimOne(database.db, cards), decisions.success('K-1'))
    await storeVersions(database.db, cifId, [2, 3], [cards])
    await pauseEndSystem(syncer(), { endSystem: cards, operator: 'ops.tan', reason: 'maintenance' })
    expect(await supersedeQueued(syncer(), cards, 16)).toBe(0)
    await resumeEndSystem(syncer(), { endSystem: cards, operator: 'ops.tan', reason: 'done' })
    expect(await supersedeQueued(syncer(), cards, 16)).toBe(1)
    expect((await claimOne(database.db, cards)).customer_version).toBe(3)
  })
})

describe('the in-sync deadline', () => {
  const DEADLINE_MS = 60_000
  /** Makes a customer's versions as old as `ms`, as if the CIF service had made them that long ago. */
  const madeAgo = (cifId: string, ms: number) => madeAt(database.db, cifId, sql`now() - make_interval(secs => ${ms} / 1000.0)`)

  it('tells each version past the deadline and not in every system once, naming the systems it waits for', async () => {
    const crm = newEndSystem('crm')
    const cards = newEndSystem('cards')
    const [late, done, fresh] = [newCifId(), newCifId(), newCifId()]
    await storeVersions(database.db, late, [1], [crm, cards])
    await storeVersions(database.db, done, [1], [crm])
    await storeVersions(database.db, fresh, [1], [crm])
    await record(database.db, await claimOne(database.db, cards), decisions.success('K-1'))
    const crmDeliveries = await claim(database.db, crm)
    await record(database.db, crmDeliveries.find((d) => d.cif_id === done)!, decisions.success('C-1'))
    await madeAgo(late, 5 * DEADLINE_MS)
    await madeAgo(done, 5 * DEADLINE_MS)

    const before = await overdueVersions(syncer(), DEADLINE_MS)
    expect(before.count).toBeGreaterThanOrEqual(1)
    expect(await tellOverdue(syncer(), DEADLINE_MS)).toBeGreaterThanOrEqual(1)
    expect(await tellOverdue(syncer(), DEADLINE_MS)).toBe(0)
    const told = (await statusesOf(database.db, late)).feed.filter((s) => s.kind === 'OVERDUE')
    expect(told).toEqual([
      {
        kind: 'OVERDUE',
        data: {
          kind: 'OVERDUE',
          cifId: late,
          customerVersion: 1,
          eventId: expect.any(String),
          createdAt: expect.any(String),
          deadlineMs: DEADLINE_MS,
          waitingFor: [crm],
          at: expect.any(String)
        }
      }
    ])
    for (const cifId of [done, fresh]) expect((await statusesOf(database.db, cifId)).feed.filter((s) => s.kind === 'OVERDUE')).toEqual([])
    // Still counted (it is still overdue) until crm holds it.
    expect((await overdueVersions(syncer(), DEADLINE_MS)).count).toBe(before.count)
    await record(database.db, crmDeliveries.find((d) => d.cif_id === late)!, decisions.success('C-2'))
    expect((await overdueVersions(syncer(), DEADLINE_MS)).count).toBe(before.count - 1)
  })

  it('counts the overdue versions and says when the oldest was made', async () => {
    const crm = newEndSystem('crm')
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1, 2], [crm])
    const before = await overdueVersions(syncer(), DEADLINE_MS)
    await madeAgo(cifId, 1000 * DEADLINE_MS)
    const overdue = await overdueVersions(syncer(), DEADLINE_MS)
    // Both versions wait for crm; this customer's are the oldest of the file.
    expect(overdue.count).toBe(before.count + 2)
    const { rows } = await sql<{ oldest: Date }>`select min(event_time) as oldest from sync_event where cif_id = ${cifId}`.execute(database.db)
    expect(overdue.oldestCreatedAt).toBe(rows[0]!.oldest.toISOString())
  })

  it("refuses an open delivery without its version's time, which the count would miss", async () => {
    const cifId = newCifId()
    await storeVersions(database.db, cifId, [1], [])
    const insert = (state: string) =>
      sql`
      insert into delivery (event_id, cif_id, end_system, operation, customer_version, state)
      select event_id, cif_id, ${newEndSystem('crm')}, 'create', 1, ${state} from sync_event where cif_id = ${cifId}`.execute(database.db)
    await expect(insert('PENDING')).rejects.toThrow(/delivery_open_has_event_time/)
    // A settled one needs none: the history settled before migration 0019 has none.
    await expect(insert('SUCCESS')).resolves.toBeDefined()
  })
})
