import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import { customerEvent, customerEventTypes } from '../../src/contracts/customer-events.ts'
import { cifProblems, Refusal, syncerProblems } from '../../src/contracts/problems.ts'
import { topics } from '../../src/contracts/topics.ts'
import type { HttpServer } from '../../src/platform/http/server.ts'
import { ErasureRequestError, eraseCustomerEverywhere } from '../../src/roles/erasure.ts'
import { personalDataMasker } from '../../src/syncer/delivery/masking.ts'
import { storeEvents } from '../../src/syncer/intake/event-store.ts'
import { sequenceStatusUpdates } from '../../src/syncer/status/sync-status.ts'
import { claim, decisions, kafkaMessage, record } from '../store/fixtures.ts'
import { asSyncer } from '../support/database.ts'
import { devSigningKey, devTrustedKeys } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { call, cifApp, keys, operatorKey, problemType, syncerApp } from './helpers.ts'

// One customer erased after it went through everything the project keeps (both services' tables, the
// outbox, the idempotency cache, attempts with masked messages, an operator's redrive, an unreadable
// copy), beside another customer who must keep every value.

let database: OwnDatabase
let cif: HttpServer
let syncer: HttpServer
beforeAll(async () => {
  database = await ownDatabase()
  cif = await cifApp(database)
  syncer = await syncerApp(database)
})
afterAll(async () => {
  await cif?.close()
  await syncer?.close()
  await database?.close()
})

const erased = {
  legalForm: 'PERSON',
  firstName: 'Zephyrine',
  middleName: 'Odalys',
  lastName: 'Quarrington',
  dateOfBirth: '1979-03-14',
  mobileNumber: '+6598765432',
  email: 'zephyrine.q@example.org',
  identifiers: [
    { type: 'NATIONAL_ID', value: 'S7654321Q', issuingCountry: 'SG' },
    { type: 'PASSPORT', value: 'K-1234-567', issuingCountry: 'SG' }
  ],
  addresses: [{ type: 'HOME', line1: '17 Quillfeather Lane', city: 'Marrowvale', postalCode: '408 611', country: 'SG' }],
  branchCode: 'SG001',
  externalId: 'bp-zq-0042'
}
const kept = {
  legalForm: 'PERSON',
  firstName: 'Bartholomew',
  lastName: 'Fennimore',
  dateOfBirth: '1966-07-02',
  email: 'b.fennimore@example.net',
  identifiers: [{ type: 'NATIONAL_ID', value: 'S1122334F', issuingCountry: 'SG' }],
  branchCode: 'SG001',
  externalId: 'bp-bf-0007'
}
const newEmail = 'zq.later@example.org'
const coreBankingId = 'CB-ZQ-558812'

/** Every value of the erased customer, as a person would search for it (identifiers also as stored, normalized). */
const erasedValues = [
  'Zephyrine',
  'Odalys',
  'Quarrington',
  '1979-03-14',
  '6598765432',
  'zephyrine.q@example.org',
  newEmail,
  'S7654321Q',
  'K-1234-567',
  'K1234567',
  'Quillfeather',
  'Marrowvale',
  '408 611',
  '408611',
  'bp-zq-0042',
  coreBankingId
]

/** Which of `values` occur in any text, character or JSON column of any table: `table.column: value`. */
async function findValues(values: string[]): Promise<string[]> {
  const { rows: columns } = await sql<{ table_name: string; column_name: string }>`
    select c.table_name, c.column_name from information_schema.columns c
    join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name and t.table_type = 'BASE TABLE'
    where c.table_schema = 'public' and c.data_type in ('text', 'character varying', 'character', 'json', 'jsonb')
    order by 1, 2`.execute(database.db)
  expect(columns.length).toBeGreaterThan(20)
  const found: string[] = []
  for (const { table_name, column_name } of columns) {
    const { rows } = await sql<{ value: string }>`
      select v as value from unnest(${values}::text[]) v
      where exists (select 1 from ${sql.table(table_name)} where strpos(lower(${sql.ref(column_name)}::text), lower(v)) > 0)`.execute(database.db)
    found.push(...rows.map((row) => `${table_name}.${column_name}: ${row.value}`))
  }
  return found
}

const count = async (table: 'delivery' | 'delivery_attempt' | 'sync_event' | 'sync_status_update', cifId: string) =>
  Number((await sql<{ n: string }>`select count(*) as n from ${sql.table(table)} where cif_id = ${cifId}`.execute(database.db)).rows[0]!.n)

/** What the relay would publish and the intake take: the CIF service's events of `cifId`, as Kafka messages. */
async function publishedEvents(cifId: string) {
  const rows = await database.db
    .selectFrom('outbox_message')
    .select(['id', 'payload'])
    .where('topic', '=', topics.customerEvents)
    .where('message_key', '=', cifId)
    .orderBy('id')
    .execute()
  return rows.map((row) => kafkaMessage(cifId, row.payload))
}

describe('erasing one customer', () => {
  let cifId: string
  let keptCifId: string
  let before: Record<string, number>

  beforeAll(async () => {
    const created = await call(cif, 'POST', '/v1/customers', { body: erased, headers: { 'idempotency-key': 'zq-create-1' } })
    expect(created.status).toBe(201)
    cifId = created.body.cifId
    const changed = await call(cif, 'PATCH', `/v1/customers/${cifId}`, { body: { email: newEmail }, headers: { 'if-match': '"1"' } })
    expect(changed.status).toBe(200)
    keptCifId = (await call(cif, 'POST', '/v1/customers', { body: kept })).body.cifId

    // The relay published version 1 of each (version 2 of the erased customer still waits in the outbox),
    // and the intake took all three, with an unreadable, tampered copy of version 1.
    const messages = [...(await publishedEvents(cifId)), ...(await publishedEvents(keptCifId))]
    await sql`update outbox_message set status = 'SENT', sent_at = now() where topic = ${topics.customerEvents} and payload like '%"version":1%'`.execute(
      database.db
    )
    const tampered = messages[0]!.value.replace('Marrowvale', 'Marrowvale North')
    await storeEvents(asSyncer(database.db), [...messages, kafkaMessage(cifId, tampered)], ['core-banking', 'crm'], devTrustedKeys)

    // Core banking takes both creates, answering with its own id for each, and version 2 of the erased
    // customer is retrying; the CRM refuses the erased customer's create (its answer quotes the customer,
    // masked as the lane masks it), is redriven by an operator, refuses again: version 2 waits BLOCKED.
    for (const create of await claim(database.db, 'core-banking')) {
      const id = create.cif_id === cifId ? coreBankingId : 'CB-BF-1'
      await record(database.db, create, decisions.success(id), { message: `HTTP 201: {"id":"${id}","status":"active"}` })
    }
    for (const update of await claim(database.db, 'core-banking')) await record(database.db, update, decisions.retry(60_000))
    const refusal = `HTTP 422: {"error":"Zephyrine Quarrington (born 1979-03-14, zephyrine.q@example.org) is already a contact"}`
    const mask = personalDataMasker((messages[0] && JSON.parse(messages[0].value).data) as Record<string, unknown>)
    for (const crmCreate of await claim(database.db, 'crm')) {
      if (crmCreate.cif_id === cifId) await record(database.db, crmCreate, decisions.fail(), { message: mask(refusal) })
      else await record(database.db, crmCreate, decisions.success('CRM-BF-1'))
    }
    const failed = await database.db
      .selectFrom('delivery')
      .select('id')
      .where('cif_id', '=', cifId)
      .where('state', '=', 'FAILED')
      .executeTakeFirstOrThrow()
    const redriven = await call(syncer, 'POST', `/v1/admin/deliveries/${failed.id}/redrive`, { key: operatorKey, body: { reason: 'crm fixed' } })
    expect(redriven.status).toBe(200)
    const [again] = await claim(database.db, 'crm')
    await record(database.db, again!, decisions.fail(), { message: mask(refusal) })
    await sequenceStatusUpdates(asSyncer(database.db))

    const states = await database.db
      .selectFrom('delivery')
      .select(['end_system', 'customer_version', 'state'])
      .where('cif_id', '=', cifId)
      .orderBy('end_system')
      .orderBy('customer_version')
      .execute()
    expect(states.map((d) => `${d.end_system} v${d.customer_version} ${d.state}`)).toEqual([
      'core-banking v1 SUCCESS',
      'core-banking v2 RETRY_SCHEDULED',
      'crm v1 FAILED',
      'crm v2 BLOCKED'
    ])
    before = {
      delivery: await count('delivery', cifId),
      delivery_attempt: await count('delivery_attempt', cifId),
      sync_event: await count('sync_event', cifId),
      sync_status_update: await count('sync_status_update', cifId)
    }
  })

  it('finds the customer’s values in the database before (the search itself works)', async () => {
    const found = await findValues(erasedValues)
    for (const table of ['customer.record', 'customer_identifier.normalized_value', 'idempotency_key.response_body', 'outbox_message.payload']) {
      expect(
        found.some((hit) => hit.startsWith(table)),
        table
      ).toBe(true)
    }
    for (const table of ['sync_event.event', 'unreadable_message.message_value', 'customer_xref.external_id', 'delivery.external_id']) {
      expect(
        found.some((hit) => hit.startsWith(table)),
        table
      ).toBe(true)
    }
  })

  it('leaves none of its personal data anywhere in the database, keeps the audit trail, and the other customer whole', async () => {
    const result = await eraseCustomerEverywhere(database.db, { cifId, by: 'dpo.lim', reason: 'erasure request DSR-2026-0117' })
    expect(result).toEqual({
      cif: { alreadyErased: false, identifiers: 2, idempotentAnswers: 1, outboxMessages: 2 },
      syncer: { deliveriesSkipped: 3, eventPayloads: 2, unreadableMessages: 1, endSystemIds: 1 }
    })
    // An event published before the erasure and read after it: not stored, nothing of it delivered.
    const late = customerEvent(
      customerEventTypes.updated,
      {
        ...erased,
        cifId,
        version: 3,
        sourceSystem: 'branch-portal',
        createdAt: new Date().toISOString(),
        updatedAt: new Date().toISOString()
      } as never,
      'branch-portal',
      devSigningKey,
      ['branchCode']
    )
    const stored = await storeEvents(asSyncer(database.db), [kafkaMessage(cifId, JSON.stringify(late))], ['core-banking', 'crm'], devTrustedKeys)
    expect(stored.ofErased.map((left) => left.eventId)).toEqual([late.id])
    expect(await database.db.selectFrom('sync_event').select('event_id').where('event_id', '=', late.id).execute()).toEqual([])

    expect(await findValues(erasedValues)).toEqual([])
    const keptHits = await findValues(['Bartholomew', 'Fennimore', 'b.fennimore@example.net', 'S1122334F', 'bp-bf-0007', 'CB-BF-1', 'CRM-BF-1'])
    for (const table of [
      'customer.record',
      'customer_identifier.normalized_value',
      'sync_event.event',
      'customer_xref.external_id',
      'delivery_attempt.response_message'
    ]) {
      expect(
        keptHits.some((hit) => hit.startsWith(table)),
        table
      ).toBe(true)
    }

    // The audit trail: every event, delivery and attempt; status updates, with the skips added.
    expect(await count('delivery', cifId)).toBe(before.delivery)
    expect(await count('delivery_attempt', cifId)).toBe(before.delivery_attempt)
    expect(await count('sync_event', cifId)).toBe(before.sync_event)
    expect(await count('sync_status_update', cifId)).toBe(before.sync_status_update! + 3)
    const actions = await sql<{ action: string; operator: string }>`
      select a.action, a.operator from operator_action a join delivery d on d.id = a.delivery_id where d.cif_id = ${cifId}`.execute(database.db)
    expect(actions.rows).toEqual([{ action: 'REDRIVE', operator: 'test-operator' }])
    expect(await database.db.selectFrom('customer_erasure').select(['erased_by', 'reason']).where('cif_id', '=', cifId).execute()).toEqual([
      { erased_by: 'dpo.lim', reason: 'erasure request DSR-2026-0117' }
    ])
    const row = await database.db.selectFrom('customer').selectAll().where('cif_id', '=', cifId).executeTakeFirstOrThrow()
    expect(row).toMatchObject({ version: 2, legal_form: 'PERSON', source_system: 'branch-portal', external_id: null, record: {} })
    expect(row).toMatchObject({ erased_by: 'dpo.lim', erasure_reason: 'erasure request DSR-2026-0117' })
    expect(row.erased_at).toBeInstanceOf(Date)

    // Nothing of it is ever sent: what waited is SKIPPED, saying why, and no lane finds anything.
    const deliveries = await database.db
      .selectFrom('delivery')
      .select(['end_system', 'customer_version', 'state', 'remarks', 'external_id'])
      .where('cif_id', '=', cifId)
      .orderBy('end_system')
      .orderBy('customer_version')
      .execute()
    const remark = 'not delivered: the customer was erased by dpo.lim: erasure request DSR-2026-0117'
    expect(deliveries).toEqual([
      { end_system: 'core-banking', customer_version: 1, state: 'SUCCESS', remarks: expect.any(String), external_id: null },
      { end_system: 'core-banking', customer_version: 2, state: 'SKIPPED', remarks: remark, external_id: null },
      { end_system: 'crm', customer_version: 1, state: 'SKIPPED', remarks: remark, external_id: null },
      { end_system: 'crm', customer_version: 2, state: 'SKIPPED', remarks: remark, external_id: null }
    ])
    await sql`update delivery set next_attempt_at = now() - interval '1 hour' where cif_id = ${cifId}`.execute(database.db)
    expect(await claim(database.db, 'core-banking')).toEqual([])
    expect(await claim(database.db, 'crm')).toEqual([])
  })

  it('answers the CIF API with 410 customer-erased to its owner, 404 to others, and replays the create as erased', async () => {
    const read = await call(cif, 'GET', `/v1/customers/${cifId}`)
    expect(read.status).toBe(410)
    expect(read.body).toMatchObject({ type: problemType(cifProblems.customerErased), erasedAt: expect.any(String) })
    expect((await call(cif, 'GET', `/v1/customers/${cifId}`, { key: keys.onboardingApp })).body.type).toBe(problemType(cifProblems.customerNotFound))
    const change = await call(cif, 'PATCH', `/v1/customers/${cifId}`, { body: { branchCode: 'SG002' }, headers: { 'if-match': '"2"' } })
    expect(change.status).toBe(410)
    expect(change.body.type).toBe(problemType(cifProblems.customerErased))
    const replay = await call(cif, 'POST', '/v1/customers', { body: erased, headers: { 'idempotency-key': 'zq-create-1' } })
    expect(replay.status).toBe(410)
    expect(replay.headers.get('idempotent-replayed')).toBe('true')
    expect(replay.body.type).toBe(problemType(cifProblems.customerErased))
    expect(
      await database.db
        .selectFrom('outbox_message')
        .select('id')
        .where('message_key', '=', cifId)
        .where('topic', '=', topics.customerEvents)
        .execute()
    ).toEqual([])
  })

  it('shows source systems and operators the deliveries as skipped because of the erasure, and refuses a redrive', async () => {
    const sync = await call(syncer, 'GET', `/v1/sync/customers/${cifId}`)
    expect(sync.status).toBe(200)
    expect(sync.body.state).toBe('PARTIAL')
    expect(sync.body.endSystems.map((d: { state: string; externalId: unknown }) => [d.state, d.externalId])).toEqual([
      ['SKIPPED', null],
      ['SKIPPED', null]
    ])
    const attempts = await call(syncer, 'GET', `/v1/admin/attempts?cifId=${cifId}`, { key: operatorKey })
    expect(attempts.status).toBe(200)
    expect(attempts.body.attempts).toHaveLength(before.delivery_attempt!)
    const crm = await database.db
      .selectFrom('delivery')
      .select('id')
      .where('cif_id', '=', cifId)
      .where('end_system', '=', 'crm')
      .where('customer_version', '=', 1)
      .executeTakeFirstOrThrow()
    const redrive = await call(syncer, 'POST', `/v1/admin/deliveries/${crm.id}/redrive`, { key: operatorKey, body: { reason: 'try again' } })
    expect(redrive.status).toBe(409)
    expect(redrive.body).toMatchObject({ type: problemType(syncerProblems.deliveryStateConflict), state: 'SKIPPED' })
  })

  it('may be run again, from the command line too, and refuses an unknown customer or a request without who or why', async () => {
    const cli = (...args: string[]) =>
      promisify(execFile)(process.execPath, ['src/cli.ts', 'erase-customer', ...args], { env: { ...process.env, DATABASE_URL: database.url } })
    const { stdout } = await cli(cifId, '--reason', 'again', '--by', 'dpo.tan')
    expect(JSON.parse(stdout)).toEqual({
      cifId,
      erasedBy: 'dpo.tan',
      cif: { alreadyErased: true, identifiers: 0, idempotentAnswers: 0, outboxMessages: 0 },
      syncer: { deliveriesSkipped: 0, eventPayloads: 0, unreadableMessages: 0, endSystemIds: 0 }
    })
    await expect(cli(cifIdFromNumber(9_999_999_998), '--reason', 'x')).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('No customer has CIF ID')
    })
    // The first erasure's who and why stay.
    const row = await database.db.selectFrom('customer').select(['erased_by', 'erasure_reason']).where('cif_id', '=', cifId).executeTakeFirstOrThrow()
    expect(row).toEqual({ erased_by: 'dpo.lim', erasure_reason: 'erasure request DSR-2026-0117' })
    await expect(eraseCustomerEverywhere(database.db, { cifId: cifIdFromNumber(9_999_999_999), by: 'dpo.lim', reason: 'x' })).rejects.toThrow(Refusal)
    await expect(eraseCustomerEverywhere(database.db, { cifId: '10000000008', by: 'dpo.lim', reason: 'x' })).rejects.toThrow(ErasureRequestError)
    await expect(eraseCustomerEverywhere(database.db, { cifId, by: ' ', reason: 'x' })).rejects.toThrow(ErasureRequestError)
    await expect(eraseCustomerEverywhere(database.db, { cifId, by: 'dpo.lim', reason: '' })).rejects.toThrow(ErasureRequestError)
  })

  it('lets the same person come back as a new customer, with a new CIF ID', async () => {
    const again = await call(cif, 'POST', '/v1/customers', { body: erased })
    expect(again.status).toBe(201)
    expect(again.body.cifId).not.toBe(cifId)
  })
})
