import { randomUUID } from 'node:crypto'
import { type Kysely, sql } from 'kysely'
import { Migrator } from 'kysely/migration'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type StatusData, statusEvent } from '../../src/contracts/sync-status-events.ts'
import { topics } from '../../src/contracts/topics.ts'
import { outboxMessage } from '../../src/outbox/messages.ts'
import { migrations } from '../../src/roles/migrations.ts'
import type { TestDatabase } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { newCifId, statusMessagesOf } from './fixtures.ts'

const MIGRATION = '0007_status_published_from_feed'
const names = Object.keys(migrations).sort()
const before = names[names.indexOf(MIGRATION) - 1]!
const migrator = (db: Kysely<unknown>) => new Migrator({ db, provider: { getMigrations: async () => migrations } })

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase(1)
})
afterAll(async () => database?.close())

const delivered = (cifId: string, endSystem: string): StatusData<'DELIVERED'> => ({
  kind: 'DELIVERED',
  cifId,
  customerVersion: 1,
  eventId: randomUUID(),
  endSystem,
  deliveryId: '1',
  state: 'SUCCESS',
  attempts: 1,
  externalId: null,
  lastError: null,
  remarks: 'created',
  at: new Date().toISOString()
})

/** A status as the version before 0007 recorded it: a feed row and an outbox copy, in one transaction. */
async function recordedTwice(db: Kysely<TestDatabase>, data: StatusData<'DELIVERED'>): Promise<string> {
  const { cifId } = data
  const event = statusEvent('DELIVERED', randomUUID(), 'branch-portal', data)
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('sync_status_update')
      .values({ owner_source_system: 'branch-portal', cif_id: cifId, kind: 'DELIVERED', status: JSON.stringify(data) })
      .execute()
    await trx.insertInto('outbox_message').values(outboxMessage(topics.syncStatus, event)).execute()
  })
  return JSON.stringify(event)
}

const upgrade = async () => {
  const { error } = await migrator(database.db as Kysely<unknown>).migrateToLatest()
  if (error) throw error
}

describe('upgrading to one row per status (0007)', () => {
  it('publishes from the feed what the outbox still held, with the same ids; what went out stays out', async () => {
    const { error } = await migrator(database.db as Kysely<unknown>).migrateTo(before)
    if (error) throw error
    const cifId = newCifId()
    const cards = delivered(cifId, 'cards')
    const sent = [await recordedTwice(database.db, delivered(cifId, 'crm')), await recordedTwice(database.db, cards)]
    await sql`update outbox_message set status = 'SENT', sent_at = now() where payload = any(${sent})`.execute(database.db)
    // Statuses alike but for their row, the first of them sent (a relay's batch ended between them): the
    // others are each published once, by the newest feed rows.
    const pending = [await recordedTwice(database.db, cards), await recordedTwice(database.db, cards)]
    pending.push(await recordedTwice(database.db, delivered(cifId, 'core-banking')))
    await upgrade()

    const published = (await statusMessagesOf(database.db, cifId)).map((message) => JSON.parse(message.payload))
    expect(published).toEqual(pending.map((payload) => JSON.parse(payload)))
    const outbox = await database.db
      .selectFrom('outbox_message')
      .select(['payload', 'status'])
      .where('message_key', '=', cifId)
      .orderBy('id')
      .execute()
    expect(outbox).toEqual(sent.map((payload) => ({ payload, status: 'SENT' })))
    const feed = await database.db.selectFrom('sync_status_update').select(['published_at']).where('cif_id', '=', cifId).orderBy('id').execute()
    expect(feed.map((row) => row.published_at !== null)).toEqual([true, true, false, false, false])
  })

  it('is undone only once every status is published', async () => {
    const { error: refused } = await migrator(database.db as Kysely<unknown>).migrateTo(before)
    expect(refused).toEqual(new Error('3 status updates are not yet published; let the status relay send them first'))
    await sql`update sync_status_update set published_at = now() where published_at is null`.execute(database.db)
    const { error } = await migrator(database.db as Kysely<unknown>).migrateTo(before)
    expect(error).toBeUndefined()
  })

  it('refuses, changing nothing, while the outbox holds a status with no feed row', async () => {
    const cifId = newCifId()
    await recordedTwice(database.db, delivered(cifId, 'crm'))
    await database.db.deleteFrom('sync_status_update').where('cif_id', '=', cifId).execute()
    await expect(upgrade()).rejects.toThrow(/1 pending status messages in outbox_message match no feed row/)
    const outbox = await database.db.selectFrom('outbox_message').select('status').where('message_key', '=', cifId).execute()
    expect(outbox).toEqual([{ status: 'PENDING' }])
    await database.db.deleteFrom('outbox_message').where('message_key', '=', cifId).execute()
    await upgrade()
  })
})
