import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import pg from 'pg'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { topics } from '../../src/contracts/topics.ts'
import type { OutboxTables } from '../../src/outbox/tables.ts'
import { recordStatuses, type StatusChange, sequenceStatusUpdates, statusQueue, unsentStatuses } from '../../src/syncer/status/sync-status.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { genericPlan } from '../support/plans.ts'
import { newCifId } from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())
// Each test sees only its own statuses: the queue is the whole table.
beforeEach(async () => {
  await database.db.updateTable('sync_status_update').set({ published_at: new Date() }).where('published_at', 'is', null).execute()
})

const syncer = () => asSyncer(database.db).$omitTables<keyof OutboxTables>()
const inSync = (cifId: string): StatusChange => ({
  owner: 'branch-portal',
  kind: 'IN_SYNC',
  status: { cifId, customerVersion: 1, eventId: randomUUID(), endSystems: ['crm'] }
})
const record = (changes: StatusChange[]) =>
  asSyncer(database.db)
    .transaction()
    .execute((trx) => recordStatuses(trx, changes))
/** Recorded with their feed positions at once, as the attempt recorder does. */
const recordPositioned = (changes: StatusChange[]) =>
  asSyncer(database.db)
    .transaction()
    .execute((trx) => recordStatuses(trx, changes, 'positioned now, committed next'))
/** Recorded and given feed positions, as the syncer's sequencer does: what the relay can take. */
const recordSequenced = async (changes: StatusChange[]) => {
  await record(changes)
  await sequenceStatusUpdates(asSyncer(database.db))
}
/** One relay's claim, rolled back: what it would send. */
const claimOnce = async (limit = 100) => {
  let claimed: Awaited<ReturnType<typeof statusQueue.claim>> = []
  await syncer()
    .transaction()
    .execute(async (trx) => {
      claimed = await statusQueue.claim(trx, limit)
      throw new Error('roll back')
    })
    .catch(() => {})
  return claimed
}

describe("a status message's id", () => {
  it('is time-ordered (UUID version 7): statuses recorded later sort after earlier ones, whichever way they were recorded', async () => {
    const cifIds = Array.from({ length: 40 }, () => newCifId())
    await record(cifIds.slice(0, 20).map(inSync))
    await recordPositioned(cifIds.slice(20).map(inSync))
    const rows = await database.db.selectFrom('sync_status_update').select('event_id').where('cif_id', 'in', cifIds).orderBy('id').execute()
    const ids = rows.map((row) => row.event_id ?? 'none')
    expect(ids).toHaveLength(40)
    for (const id of ids) expect(id[14], id).toBe('7')
    expect([...ids].sort()).toEqual(ids)
  })
})

describe('the feed as the status relay queue', () => {
  it('sends each status as its row holds it, with the same id until it is marked sent', async () => {
    const cifId = newCifId()
    await recordSequenced([inSync(cifId)])
    const [first] = await claimOnce()
    expect(first).toMatchObject({
      topic: topics.syncStatus,
      message_key: cifId,
      headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' }
    })
    const event = JSON.parse(first!.payload)
    const row = await database.db
      .selectFrom('sync_status_update')
      .select(['event_id', 'status', 'created_at'])
      .where('cif_id', '=', cifId)
      .executeTakeFirstOrThrow()
    expect(event).toMatchObject({
      id: row.event_id,
      subject: cifId,
      sourcesystem: 'branch-portal',
      type: 'cif.sync.customer.in-sync',
      data: row.status
    })
    expect(await claimOnce()).toEqual([first])
    expect(await statusQueue.oldestUnsentAt(syncer())).toEqual(row.created_at)

    await syncer()
      .transaction()
      .execute((trx) => statusQueue.markSent(trx, [first!.id]))
    expect(await claimOnce()).toEqual([])
    expect(await statusQueue.oldestUnsentAt(syncer())).toBeUndefined()
  })

  it("takes a customer's next status only once the earlier one is sent, while relays race", async () => {
    const [a, b] = [newCifId(), newCifId()]
    await recordSequenced([inSync(a), inSync(a), inSync(b)])
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    let heldNow!: (ids: string[]) => void
    const held = new Promise<string[]>((resolve) => (heldNow = resolve))
    const firstRelay = syncer()
      .transaction()
      .execute(async (trx) => {
        const claimed = await statusQueue.claim(trx, 1)
        heldNow(claimed.map((m) => m.message_key))
        await released
        await statusQueue.markSent(
          trx,
          claimed.map((m) => m.id)
        )
      })
    expect(await held).toEqual([a])
    // a's second status waits behind its first, locked by the other relay.
    expect((await claimOnce()).map((m) => m.message_key)).toEqual([b])
    release()
    await firstRelay
    expect((await claimOnce()).map((m) => m.message_key)).toEqual([a, b])
  })

  it('records a failed send on the rows, which stay unsent', async () => {
    const cifId = newCifId()
    await recordSequenced([inSync(cifId)])
    const [claimed] = await claimOnce()
    await statusQueue.recordFailure(syncer(), [claimed!.id], 'Kafka away')
    await statusQueue.recordFailure(syncer(), [claimed!.id], 'Kafka still away')
    const row = await database.db
      .selectFrom('sync_status_update')
      .select(['publish_attempts', 'last_error', 'published_at'])
      .where('id', '=', claimed!.id)
      .executeTakeFirstOrThrow()
    expect(row).toEqual({ publish_attempts: 2, last_error: 'Kafka still away', published_at: null })
    expect(await claimOnce()).toEqual([claimed])
  })

  it('never holds up the feed positions: a claim held open leaves the rows without one alone', async () => {
    await recordSequenced([inSync(newCifId())])
    await record([inSync(newCifId())])
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    let heldNow!: (count: number) => void
    const held = new Promise<number>((resolve) => (heldNow = resolve))
    const relay = syncer()
      .transaction()
      .execute(async (trx) => {
        heldNow((await statusQueue.claim(trx, 100)).length)
        await released
      })
    expect(await held).toBe(1)
    const waited = new Promise<string>((resolve) => setTimeout(() => resolve('waited for the relay'), 3000))
    expect(await Promise.race([sequenceStatusUpdates(asSyncer(database.db)), waited])).toBe(1)
    release()
    await relay
  })

  it('wakes the relay when statuses are recorded with their feed positions, no sequencer round needed', async () => {
    const listener = new pg.Client({ connectionString: database.url })
    await listener.connect()
    try {
      const notified = new Promise<string>((resolve) => listener.on('notification', (n) => resolve(n.channel)))
      await listener.query(`listen ${statusQueue.channel}`)
      const cifId = newCifId()
      await recordPositioned([inSync(cifId)])
      expect(await notified).toBe(statusQueue.channel)
      expect((await claimOnce()).map((m) => m.message_key)).toEqual([cifId])
    } finally {
      await listener.end()
    }
  })
})

describe("the status relay's claim", () => {
  it("probes each candidate's earlier unsent status by customer, in the generic plan it runs prepared", async () => {
    // A drain's few hundred unsent statuses, the statistics knowing them: prepared, the NOT EXISTS this claim
    // had was planned as an anti join against all of them, compared with every candidate (24 ms at 300).
    await recordPositioned(Array.from({ length: 300 }, () => inSync(newCifId())))
    await sql`analyze sync_status_update`.execute(database.db)
    const plan = await genericPlan(database.db, unsentStatuses(500).compile(database.db))
    expect(plan).not.toMatch(/"Join Type":"(Anti|Semi)"/)
    expect(plan).toMatch(/"Index Name":"sync_status_update_unpublished_cif"[^}]*"Index Cond":"\(\(cif_id = u\.cif_id\)/)
    expect(await claimOnce(500)).toHaveLength(300)
  })
})

describe('feed positions given as statuses are recorded', () => {
  it('follow commit order: a second transaction gets its positions only once the first has committed', async () => {
    const [first, second] = [newCifId(), newCifId()]
    let commit!: () => void
    const committing = new Promise<void>((resolve) => (commit = resolve))
    let positioned!: () => void
    const firstPositioned = new Promise<void>((resolve) => (positioned = resolve))
    const firstTransaction = asSyncer(database.db)
      .transaction()
      .execute(async (trx) => {
        await recordStatuses(trx, [inSync(first)], 'positioned now, committed next')
        positioned()
        await committing
      })
    await firstPositioned
    let secondDone = false
    const secondTransaction = recordPositioned([inSync(second), inSync(second)]).then(() => {
      secondDone = true
    })
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(secondDone).toBe(false)
    commit()
    await Promise.all([firstTransaction, secondTransaction])
    const rows = await database.db
      .selectFrom('sync_status_update')
      .select(['cif_id', 'seq'])
      .where('cif_id', 'in', [first, second])
      .orderBy('id')
      .execute()
    expect(rows.map((r) => r.cif_id)).toEqual([first, second, second])
    const seqs = rows.map((r) => Number(r.seq))
    expect(seqs.every((seq) => seq > 0)).toBe(true)
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs)
    expect(await sequenceStatusUpdates(asSyncer(database.db))).toBe(0)
  })

  it('leave an erasure holding rows without a position alone: the sequencer takes the others', async () => {
    const [erased, other] = [newCifId(), newCifId()]
    await record([inSync(erased)])
    await record([inSync(other)])
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    let lockedNow!: () => void
    const locked = new Promise<void>((resolve) => (lockedNow = resolve))
    const erasure = asSyncer(database.db)
      .transaction()
      .execute(async (trx) => {
        await trx.updateTable('sync_status_update').set({ last_error: null }).where('cif_id', '=', erased).execute()
        lockedNow()
        await released
      })
    await locked
    const waited = new Promise<string>((resolve) => setTimeout(() => resolve('waited for the erasure'), 3000))
    expect(await Promise.race([sequenceStatusUpdates(asSyncer(database.db)), waited])).toBe(1)
    release()
    await erasure
    expect(await sequenceStatusUpdates(asSyncer(database.db))).toBe(1)
  })
})
