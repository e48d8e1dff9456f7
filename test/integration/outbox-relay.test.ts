import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CifService } from '../../src/cif/service.ts'
import { topics } from '../../src/contracts/topics.ts'
import { OutboxRelay, outboxQueue } from '../../src/outbox/relay.ts'
import { type DatabaseHandle, openDatabase } from '../../src/platform/database/index.ts'
import type { LocalKafka } from '../../src/platform/local/kafka-broker.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { asOutbox, type TestDatabase } from '../support/database.ts'
import { call, connections, newPerson, startOwnBroker, startTestCifService, type TopicMessage, TopicReader } from './helpers.ts'
import { eventually } from './syncer-helpers.ts'

const log = createLogger(process.env.LOG_LEVEL ?? 'warn', 'outbox-test')
let database: DatabaseHandle<TestDatabase>

beforeAll(() => {
  database = openDatabase<TestDatabase>(connections().databaseUrl, { maxConnections: 4 })
})
afterAll(async () => {
  await database?.close()
})

/** Versions per customer as first seen on the topic, after dropping redeliveries of the same event id. */
function versionsByCustomer(messages: TopicMessage[], cifIds: Set<string>): Map<string, number[]> {
  const seen = new Set<string>()
  const versions = new Map<string, number[]>()
  for (const message of messages) {
    if (!cifIds.has(message.key) || seen.has(message.value.id)) continue
    seen.add(message.value.id)
    versions.set(message.key, [...(versions.get(message.key) ?? []), message.value.customerversion])
  }
  return versions
}

async function pendingFor(cifIds: string[]): Promise<number> {
  const rows = await database.db
    .selectFrom('outbox_message')
    .select('id')
    .where('status', '=', 'PENDING')
    .where('message_key', 'in', cifIds)
    .execute()
  return rows.length
}

describe('Kafka stopped during a burst of creates and updates', () => {
  let kafka: LocalKafka
  let broker: Awaited<ReturnType<typeof startOwnBroker>>
  let cif: CifService

  beforeAll(async () => {
    broker = await startOwnBroker()
    kafka = broker.kafka
    cif = await startTestCifService({ kafka: kafka.cluster }, { OUTBOX_STALL_MS: '10000', OUTBOX_UNREADY_AFTER_MS: '2000' })
  })
  afterAll(async () => {
    await cif?.close()
    await broker?.remove()
  })

  it('accepts every create while Kafka is down and publishes every event, in order per customer, once it is back', async () => {
    const cifIds: string[] = []
    const createAndUpdate = async (): Promise<void> => {
      const created = await call(cif.url, 'POST', '/v1/customers', { body: newPerson() })
      expect(created.status).toBe(201)
      cifIds.push(created.body.cifId)
      for (const [version, branchCode] of [
        [1, 'AAA01'],
        [2, 'BBB02']
      ] as const) {
        const patched = await call(cif.url, 'PATCH', `/v1/customers/${created.body.cifId}`, {
          body: { branchCode },
          headers: { 'if-match': `"${version}"` }
        })
        expect(patched.status).toBe(200)
      }
    }
    for (let i = 0; i < 10; i++) await createAndUpdate()
    await kafka.stop()
    for (let i = 0; i < 20; i++) await createAndUpdate()
    // Kafka is reported down at once; the relay, once its messages have waited past OUTBOX_UNREADY_AFTER_MS.
    const notReady = await eventually(
      () => call(cif.url, 'GET', '/health/ready', { key: null }),
      (ready) => ready.body.checks.outboxRelay === 'down'
    )
    expect(notReady.status).toBe(503)
    expect(notReady.body.checks).toEqual({ database: 'up', kafka: 'down', outboxRelay: 'down' })
    expect(notReady.body.details.outboxRelay).toMatchObject({ state: 'waiting', restarts: 0 })
    expect(notReady.body.details.outboxRelay.oldestUnsentAgeMs).toBeGreaterThan(2000)
    expect(await pendingFor(cifIds)).toBeGreaterThan(0)

    await kafka.start()
    await eventually(
      () => pendingFor(cifIds),
      (pending) => pending === 0,
      60_000
    )
    // Back without a producer replaced: the watchdog gives the relay its own retries first once Kafka answers.
    // The relay's own view is refreshed by its watchdog's next round: readiness can be 200 a moment before.
    const ready = await eventually(
      () => call(cif.url, 'GET', '/health/ready', { key: null }),
      (answer) => answer.status === 200 && answer.body.details.outboxRelay.state === 'caught-up'
    )
    expect(ready.body.details.outboxRelay).toMatchObject({ state: 'caught-up', unableSince: null, restarts: 0 })

    const outbox = await database.db.selectFrom('outbox_message').select(['event_id']).where('message_key', 'in', cifIds).execute()
    expect(outbox).toHaveLength(cifIds.length * 3)
    expect(new Set(outbox.map((row) => row.event_id)).size).toBe(outbox.length) // none twice in the outbox

    const reader = await TopicReader.open(kafka.cluster, topics.customerEvents)
    try {
      const wanted = new Set(cifIds)
      await reader.waitFor((messages) => [...versionsByCustomer(messages, wanted).values()].flat().length === cifIds.length * 3)
      for (const cifId of cifIds) expect(versionsByCustomer(reader.messages, wanted).get(cifId)).toEqual([1, 2, 3])
    } finally {
      await reader.close()
    }
  })
})

describe('several relays at once', () => {
  it('publish each customer’s events in version order while racing for rows', async () => {
    const cif = await startTestCifService()
    const extraRelays = Array.from(
      { length: 2 },
      (_, i) =>
        new OutboxRelay({
          db: asOutbox(database.db),
          databaseUrl: connections().databaseUrl,
          kafka: connections().kafka,
          clientId: `extra-relay-${i}`,
          queue: outboxQueue([topics.customerEvents]),
          batchSize: 7,
          pollIntervalMs: 20,
          retentionHours: 168,
          retentionBatchSize: 1000,
          stallMs: 30_000,
          unreadyAfterMs: 60_000,
          log
        })
    )
    for (const relay of extraRelays) relay.start()
    const reader = await TopicReader.open(connections().kafka, topics.customerEvents)
    try {
      const cifIds: string[] = []
      for (let i = 0; i < 8; i++) cifIds.push((await call(cif.url, 'POST', '/v1/customers', { body: newPerson() })).body.cifId)
      // Interleave updates across customers so that every batch holds several versions of several customers.
      for (let version = 1; version <= 6; version++) {
        await Promise.all(
          cifIds.map((cifId) =>
            call(cif.url, 'PATCH', `/v1/customers/${cifId}`, { body: { branchCode: `BR${version}00` }, headers: { 'if-match': `"${version}"` } })
          )
        )
      }
      const wanted = new Set(cifIds)
      await reader.waitFor((messages) => [...versionsByCustomer(messages, wanted).values()].flat().length === cifIds.length * 7)
      for (const cifId of cifIds) expect(versionsByCustomer(reader.messages, wanted).get(cifId)).toEqual([1, 2, 3, 4, 5, 6, 7])
    } finally {
      await reader.close()
      await Promise.all(extraRelays.map((relay) => relay.stop()))
      await cif.close()
    }
  })
})

describe('retention', () => {
  it('purges sent messages past the retention and never a pending one', async () => {
    const relay = new OutboxRelay({
      db: asOutbox(database.db),
      databaseUrl: connections().databaseUrl,
      kafka: connections().kafka,
      clientId: 'purge-test',
      queue: outboxQueue([topics.customerEvents]),
      batchSize: 10,
      pollIntervalMs: 1000,
      retentionHours: 0,
      // Several batches: the file has sent a few hundred messages by now.
      retentionBatchSize: 100,
      stallMs: 30_000,
      unreadyAfterMs: 60_000,
      log
    })
    const pending = await database.db
      .insertInto('outbox_message')
      .values({ event_id: crypto.randomUUID(), topic: 'cif.test.never-published', message_key: 'k', payload: '{}' })
      .returning('id')
      .executeTakeFirstOrThrow()
    try {
      const sentBefore = await database.db.selectFrom('outbox_message').select('id').where('status', '=', 'SENT').execute()
      expect(sentBefore.length).toBeGreaterThan(0)
      expect(await relay.purgeSent()).toBe(sentBefore.length)
      const left = await database.db.selectFrom('outbox_message').select(['id', 'status']).execute()
      expect(left).toContainEqual({ id: pending.id, status: 'PENDING' })
      expect(left.filter((row) => row.status === 'SENT')).toEqual([])
    } finally {
      await database.db.deleteFrom('outbox_message').where('id', '=', pending.id).execute()
      await relay.stop()
    }
  })
})
