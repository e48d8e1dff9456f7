import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { topics } from '../../src/contracts/topics.ts'
import { outboxQueue, pendingMessages } from '../../src/outbox/relay.ts'
import { asOutbox } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { newCifId } from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

describe("the outbox relay's claim", () => {
  it("probes each candidate's earlier pending message by key, whatever the statistics say", async () => {
    // Statistics taken while the outbox was all sent (as autovacuum leaves them), then an outage's backlog.
    const insert = (count: number, status: string) => sql`
      insert into outbox_message (event_id, topic, message_key, payload, headers, status)
      select gen_random_uuid(), ${topics.customerEvents}, ${newCifId()} || n, '{}', '{}'::jsonb, ${status}
      from generate_series(1, ${count}::int) n`
    await insert(5000, 'SENT').execute(database.db)
    await sql`analyze outbox_message`.execute(database.db)
    await insert(3000, 'PENDING').execute(database.db)

    const { rows } = await sql`explain (format json) ${pendingMessages([topics.customerEvents], 500)}`.execute(database.db)
    const plan = JSON.stringify(rows[0])
    expect(plan).not.toMatch(/"Join Type":"(Anti|Semi)"/)
    expect(plan).toMatch(/"Index Cond":"\(\(topic = o\.topic\) AND \(message_key = o\.message_key\)/)
    const claimed = await asOutbox(database.db)
      .transaction()
      .execute((trx) => outboxQueue([topics.customerEvents]).claim(trx, 500))
    expect(claimed).toHaveLength(500)
  })
})
