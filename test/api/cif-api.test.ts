import { sql } from 'kysely'
import { describe, expect, it } from 'vitest'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import { checkEventSignature } from '../../src/contracts/event-signature.ts'
import { cifProblems, httpProblems } from '../../src/contracts/problems.ts'
import { devTrustedKeys, newEventKeyPair } from '../support/event-keys.ts'
import { type ApiResponse, call, cifApp, cifAppPerFile, keys, newPerson, problemType, testConfig } from './helpers.ts'

// The CIF API's edges against PostgreSQL alone: what reaches Kafka is test/integration/cif-api.test.ts's.
const api = cifAppPerFile()

const outboxRowsFor = async (cifId: string) =>
  api.database.db.selectFrom('outbox_message').select(['event_id', 'status']).where('message_key', '=', cifId).execute()

describe('signing the events', () => {
  it('signs each event with the configured key before it goes into the outbox', async () => {
    const own = newEventKeyPair('cif-2026-07')
    const signingApp = await cifApp(
      api.database,
      testConfig({
        CIF_EVENT_SIGNING_KEY: own.signingKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        CIF_EVENT_SIGNING_KEY_ID: 'cif-2026-07'
      })
    )
    try {
      const { cifId } = (await call(signingApp, 'POST', '/v1/customers', { body: newPerson() })).body
      expect(
        (await call(signingApp, 'PATCH', `/v1/customers/${cifId}`, { body: { email: 'new@example.com' }, headers: { 'if-match': '"1"' } })).status
      ).toBe(200)
      const rows = await api.database.db.selectFrom('outbox_message').select('payload').where('message_key', '=', cifId).orderBy('id').execute()
      const events = rows.map((row) => JSON.parse(row.payload))
      expect(events.map((event) => [event.type, event.signaturekey])).toEqual([
        ['cif.customer.created', 'cif-2026-07'],
        ['cif.customer.updated', 'cif-2026-07']
      ])
      for (const event of events) {
        expect(checkEventSignature(event, new Map([['cif-2026-07', own.publicKey]]))).toEqual({ signed: true, keyId: 'cif-2026-07' })
        // Only that key: the development key the syncer trusts by default does not vouch for it.
        expect(checkEventSignature(event, devTrustedKeys)).toMatchObject({ signed: false })
      }
    } finally {
      await signingApp.close()
    }
  })
})

describe('a change that changes nothing', () => {
  it('creates no version and no event', async () => {
    const person = newPerson()
    const { cifId } = (await call(api.app, 'POST', '/v1/customers', { body: person })).body
    const same = await call(api.app, 'PATCH', `/v1/customers/${cifId}`, {
      body: { firstName: person.firstName, addresses: person.addresses },
      headers: { 'if-match': '"1"' }
    })
    expect(same.status).toBe(200)
    expect(same.body.version).toBe(1)
    expect(await outboxRowsFor(cifId)).toHaveLength(1)
  })
})

describe('optimistic concurrency', () => {
  it('refuses a stale If-Match with 412 and a missing one with 428, changing nothing', async () => {
    const { cifId } = (await call(api.app, 'POST', '/v1/customers', { body: newPerson() })).body
    const first = await call(api.app, 'PATCH', `/v1/customers/${cifId}`, { body: { branchCode: 'SIN02' }, headers: { 'if-match': '"1"' } })
    expect(first.status).toBe(200)

    const stale = await call(api.app, 'PATCH', `/v1/customers/${cifId}`, { body: { branchCode: 'KUL03' }, headers: { 'if-match': '"1"' } })
    expect(stale.status).toBe(412)
    expect(stale.body.type).toBe(problemType(cifProblems.versionMismatch))
    expect(stale.headers.get('content-type')).toBe('application/problem+json; charset=utf-8')
    expect(stale.body.currentVersion).toBe(2)

    const missing = await call(api.app, 'PATCH', `/v1/customers/${cifId}`, { body: { branchCode: 'KUL03' } })
    expect(missing.status).toBe(428)
    expect(missing.body.type).toBe(problemType(cifProblems.ifMatchRequired))
    expect(missing.body.errors).toEqual([{ header: 'if-match', detail: 'is required' }])

    const now = await call(api.app, 'GET', `/v1/customers/${cifId}`)
    expect(now.body).toMatchObject({ version: 2, branchCode: 'SIN02' })
    expect(await outboxRowsFor(cifId)).toHaveLength(2)
  })

  it('refuses to change legalForm or externalId, and a change that would leave an invalid record', async () => {
    const { cifId } = (await call(api.app, 'POST', '/v1/customers', { body: newPerson() })).body
    const immutable = await call(api.app, 'PATCH', `/v1/customers/${cifId}`, {
      body: { legalForm: 'ENTITY', externalId: 'other' },
      headers: { 'if-match': '"1"' }
    })
    expect(immutable.status).toBe(400)
    expect(immutable.body.errors.map((e: { pointer: string }) => e.pointer)).toEqual(['/legalForm', '/externalId'])

    const removesLastName = await call(api.app, 'PATCH', `/v1/customers/${cifId}`, { body: { lastName: null }, headers: { 'if-match': '"1"' } })
    expect(removesLastName.status).toBe(400)
    expect(removesLastName.body.errors).toEqual([{ pointer: '/lastName', detail: 'is required for a PERSON' }])
    expect(await outboxRowsFor(cifId)).toHaveLength(1)
  })
})

describe('idempotent create', () => {
  it('replays the first response for a retry with the same key and body, creating nothing more', async () => {
    const person = newPerson()
    const key = `retry-${person.externalId}`
    const first = await call(api.app, 'POST', '/v1/customers', { body: person, headers: { 'idempotency-key': key } })
    // Same body with its keys in another order is the same request.
    const reordered = Object.fromEntries(Object.entries(person).reverse())
    const retry = await call(api.app, 'POST', '/v1/customers', { body: reordered, headers: { 'idempotency-key': key } })
    expect(first.status).toBe(201)
    expect(retry.status).toBe(201)
    expect(retry.body).toEqual(first.body)
    expect(retry.headers.get('location')).toBe(first.headers.get('location'))
    expect(retry.headers.get('idempotent-replayed')).toBe('true')
    const rows = await api.database.db.selectFrom('customer').select('cif_id').where('external_id', '=', person.externalId).execute()
    expect(rows).toHaveLength(1)
    expect(await outboxRowsFor(first.body.cifId)).toHaveLength(1)
  })

  it('answers 422 for the same key with another body', async () => {
    const key = `conflict-${Date.now()}`
    expect((await call(api.app, 'POST', '/v1/customers', { body: newPerson(), headers: { 'idempotency-key': key } })).status).toBe(201)
    const other = await call(api.app, 'POST', '/v1/customers', { body: newPerson(), headers: { 'idempotency-key': key } })
    expect(other.status).toBe(422)
    expect(other.body.type).toBe(problemType(cifProblems.idempotencyKeyReused))
    expect(other.body.errors).toEqual([{ header: 'idempotency-key', detail: 'was used with another body' }])
  })

  /**
   * Two creates with one key at once. An uncommitted identifier (another transaction's, `holding`) keeps
   * the first create's statement open after it wrote its key; the second then waits on that key.
   */
  async function createTwiceAtOnce(holding: 'commit' | 'roll back') {
    const person = newPerson()
    const key = `at-once-${person.externalId}`
    const { cifId: holderCifId } = (await call(api.app, 'POST', '/v1/customers', { body: newPerson() })).body
    const identifier = person.identifiers[0]
    const lockWaits = async () => {
      const { rows } = await sql<{ waiting: string }>`
        select count(*) as waiting from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`.execute(api.database.db)
      return Number(rows[0]!.waiting)
    }
    const until = async (waiting: number) => {
      while ((await lockWaits()) < waiting) await new Promise((resolve) => setTimeout(resolve, 10))
    }
    const create = () => call(api.app, 'POST', '/v1/customers', { body: person, headers: { 'idempotency-key': key } })
    let answers: Promise<[ApiResponse, ApiResponse]> | undefined
    await api.database.db
      .transaction()
      .execute(async (trx) => {
        await trx
          .insertInto('customer_identifier')
          .values({ type: identifier.type, issuing_country: identifier.issuingCountry, normalized_value: identifier.value, cif_id: holderCifId })
          .execute()
        const first = create()
        await until(1)
        const second = create()
        await until(2)
        answers = Promise.all([first, second])
        if (holding === 'roll back') throw new Error('roll back')
      })
      .catch((error: Error) => {
        if (error.message !== 'roll back') throw error
      })
    const [first, second] = await answers!
    const customers = await api.database.db.selectFrom('customer').select('cif_id').where('external_id', '=', person.externalId).execute()
    return { first, second, customers, holderCifId }
  }

  it('makes a retry that comes while the first is running wait for it, and answers both the same: one customer', async () => {
    const { first, second, customers } = await createTwiceAtOnce('roll back')
    expect(first.status).toBe(201)
    expect(second.status).toBe(201)
    expect(second.body).toEqual(first.body)
    expect(second.headers.get('location')).toBe(first.headers.get('location'))
    expect([first.headers.get('idempotent-replayed'), second.headers.get('idempotent-replayed')]).toEqual([null, 'true'])
    expect(customers).toEqual([{ cif_id: first.body.cifId }])
    expect(await outboxRowsFor(first.body.cifId)).toHaveLength(1)
  })

  it('lets the retry run itself when the first failed, and stores one answer for the key', async () => {
    const { first, second, customers, holderCifId } = await createTwiceAtOnce('commit')
    expect(first.status).toBe(409)
    expect(first.body).toMatchObject({ type: problemType(cifProblems.customerExists), cifId: holderCifId })
    expect(second.status).toBe(409)
    expect(second.body).toEqual(first.body)
    expect(customers).toEqual([])
  })

  it('replays a refusal too: the same key and body get the same 409', async () => {
    const person = newPerson()
    await call(api.app, 'POST', '/v1/customers', { body: person })
    const key = `dup-${person.externalId}`
    const first = await call(api.app, 'POST', '/v1/customers', { body: person, headers: { 'idempotency-key': key } })
    const again = await call(api.app, 'POST', '/v1/customers', { body: person, headers: { 'idempotency-key': key } })
    expect(first.status).toBe(409)
    expect(again.status).toBe(409)
    expect(again.body).toEqual(first.body)
    expect(again.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  })
})

describe("a create's round trips to PostgreSQL", () => {
  it('is two statements, with an idempotency key or without', async () => {
    const db = api.database.db
    await sql`create extension if not exists pg_stat_statements`.execute(db)
    // Counted in this file's own database only: other files run theirs at the same time.
    const statements = async () => {
      const { rows } = await sql<{ calls: number }>`
        select coalesce(sum(calls), 0)::integer as calls from pg_stat_statements
        where dbid = (select oid from pg_database where datname = current_database()) and query not like '%pg_stat_statements%'`.execute(db)
      return rows[0]!.calls
    }
    const counted = async (create: () => Promise<unknown>) => {
      await sql`select pg_stat_statements_reset(0, (select oid from pg_database where datname = current_database()), 0)`.execute(db)
      await create()
      return statements()
    }
    const person = newPerson()
    expect(await counted(() => call(api.app, 'POST', '/v1/customers', { body: newPerson() }))).toBe(2)
    expect(
      await counted(() => call(api.app, 'POST', '/v1/customers', { body: person, headers: { 'idempotency-key': `count-${person.externalId}` } }))
    ).toBe(2)
  })
})

describe('one customer, one CIF', () => {
  it('refuses an identifier that already belongs to a customer, however it is written, naming that customer', async () => {
    const person = newPerson()
    const { cifId } = (await call(api.app, 'POST', '/v1/customers', { body: person })).body
    const value = person.identifiers[0].value as string
    const sameDocument = newPerson({
      identifiers: [{ type: 'PASSPORT', value: `${value.slice(0, 3).toLowerCase()}-${value.slice(3)}`, issuingCountry: 'GB' }]
    })
    const duplicate = await call(api.app, 'POST', '/v1/customers', { body: sameDocument })
    expect(duplicate.status).toBe(409)
    expect(duplicate.body.type).toBe(problemType(cifProblems.customerExists))
    expect(duplicate.body.cifId).toBe(cifId)
    expect(duplicate.body.errors).toEqual([{ pointer: '/identifiers/0', detail: 'already belongs to another customer' }])
    const rows = await api.database.db.selectFrom('customer').select('cif_id').where('external_id', '=', sameDocument.externalId).execute()
    expect(rows).toEqual([])
  })

  it('refuses a PATCH that takes another customer’s identifier', async () => {
    const holder = newPerson()
    await call(api.app, 'POST', '/v1/customers', { body: holder })
    const { cifId } = (await call(api.app, 'POST', '/v1/customers', { body: newPerson() })).body
    const taking = await call(api.app, 'PATCH', `/v1/customers/${cifId}`, {
      body: { identifiers: holder.identifiers },
      headers: { 'if-match': '"1"' }
    })
    expect(taking.status).toBe(409)
    expect((await call(api.app, 'GET', `/v1/customers/${cifId}`)).body.version).toBe(1)
  })

  it('refuses an externalId the same source system already used, but not one another source system used', async () => {
    const person = newPerson()
    const { cifId } = (await call(api.app, 'POST', '/v1/customers', { body: person })).body
    const again = await call(api.app, 'POST', '/v1/customers', { body: newPerson({ externalId: person.externalId }) })
    expect(again.status).toBe(409)
    expect(again.body).toMatchObject({ cifId, errors: [{ pointer: '/externalId' }] })

    const otherSource = await call(api.app, 'POST', '/v1/customers', { body: newPerson({ externalId: person.externalId }), key: keys.onboardingApp })
    expect(otherSource.status).toBe(201)
    expect(otherSource.body.sourceSystem).toBe('onboarding-app')
  })
})

describe('lookups and authentication', () => {
  it('tells a malformed CIF ID (400) from an unknown one (404)', async () => {
    const wrongCheckDigit = await call(api.app, 'GET', '/v1/customers/10000000000')
    expect(wrongCheckDigit.status).toBe(400)
    expect(wrongCheckDigit.body.type).toBe(problemType(httpProblems.validationFailed))
    expect(wrongCheckDigit.body.errors).toEqual([{ parameter: 'cifId', detail: 'has a wrong check digit' }])
    const unknown = await call(api.app, 'GET', `/v1/customers/${cifIdFromNumber(9_999_999_999)}`)
    expect(unknown.status).toBe(404)
    expect(unknown.body.type).toBe(problemType(cifProblems.customerNotFound))
    expect(unknown.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  })

  it('requires a known API key', async () => {
    const none = await call(api.app, 'GET', `/v1/customers/${cifIdFromNumber(9_999_999_999)}`, { key: null })
    expect(none.status).toBe(401)
    expect(none.body.type).toBe(problemType(httpProblems.unauthorized))
    expect(none.headers.get('www-authenticate')).toBe('Bearer')
    const wrong = await call(api.app, 'POST', '/v1/customers', { body: newPerson(), key: 'not-a-real-key-at-all' })
    expect(wrong.status).toBe(401)
    expect(wrong.body.detail).toBe('The API key is not known.')
  })

  it('serves the OpenAPI document and health without a key', async () => {
    const openapi = await call(api.app, 'GET', '/openapi.json', { key: null })
    expect(openapi.status).toBe(200)
    expect(openapi.body.paths['/v1/customers'].post).toBeDefined()
    expect(Object.keys(openapi.body.components.securitySchemes)).toEqual(['sourceSystemKey'])
    expect(openapi.body.paths['/v1/customers'].post.security).toEqual([{ sourceSystemKey: [] }])
    expect((await call(api.app, 'GET', '/health/live', { key: null })).status).toBe(200)
    // No dependency to check here; readiness with PostgreSQL, Kafka and the relay is the integration test's.
    const ready = await call(api.app, 'GET', '/health/ready', { key: null })
    expect(ready.status).toBe(200)
    expect(ready.body).toEqual({ status: 'ready', checks: {} })
  })
})
