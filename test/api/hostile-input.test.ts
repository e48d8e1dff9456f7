import { beforeAll, describe, expect, it } from 'vitest'
import { call, cifAppPerFile, newPerson } from './helpers.ts'

// Nothing here needs Kafka or a socket: inject sends raw bodies and any header, as a hostile client would.
const api = cifAppPerFile()

const valid = newPerson
const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`

interface Case {
  name: string
  body?: unknown
  raw?: string
  headers?: Record<string, string>
  status: number
  /** The field the problem must name (JSON Pointer into the body, or a header). */
  field?: string
}

const cases: Case[] = [
  { name: 'legalForm missing', body: (({ legalForm: _, ...rest }) => rest)(valid()), status: 400, field: '/legalForm' },
  { name: 'legalForm not in the list', body: valid({ legalForm: 'TRUST' }), status: 400, field: '/legalForm' },
  { name: 'firstName a number', body: valid({ firstName: 42 }), status: 400, field: '/firstName' },
  { name: 'firstName empty', body: valid({ firstName: '' }), status: 400, field: '/firstName' },
  { name: 'firstName 51 characters', body: valid({ firstName: 'A'.repeat(51) }), status: 400, field: '/firstName' },
  { name: 'lastName with digits', body: valid({ lastName: 'L0velace' }), status: 400, field: '/lastName' },
  { name: 'lastName starting with a space', body: valid({ lastName: ' Lovelace' }), status: 400, field: '/lastName' },
  { name: 'SQL injection in a name', body: valid({ lastName: "x'; DROP TABLE customer; --" }), status: 400, field: '/lastName' },
  { name: 'markup in a name', body: valid({ firstName: '<script>alert(1)</script>' }), status: 400, field: '/firstName' },
  { name: 'control character in a name', body: valid({ firstName: 'Ada\u0000' }), status: 400, field: '/firstName' },
  {
    name: 'template injection in an address',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a template placeholder is the attack
    body: valid({ addresses: [{ type: 'HOME', line1: '${7*7}', city: 'London', country: 'GB' }] }),
    status: 400,
    field: '/addresses/0/line1'
  },
  { name: 'dateOfBirth 30 February', body: valid({ dateOfBirth: '1990-02-30' }), status: 400, field: '/dateOfBirth' },
  { name: 'dateOfBirth not a date', body: valid({ dateOfBirth: '10/12/1990' }), status: 400, field: '/dateOfBirth' },
  { name: 'dateOfBirth in the future', body: valid({ dateOfBirth: '2999-01-01' }), status: 400, field: '/dateOfBirth' },
  { name: 'dateOfBirth before 1900', body: valid({ dateOfBirth: '1815-12-10' }), status: 400, field: '/dateOfBirth' },
  { name: 'PERSON without lastName', body: (({ lastName: _, ...rest }) => rest)(valid()), status: 400, field: '/lastName' },
  { name: 'PERSON with fullName', body: valid({ fullName: 'Lovelace Holdings' }), status: 400, field: '/fullName' },
  { name: 'ENTITY without fullName', body: { legalForm: 'ENTITY', registrationNumber: 'R123' }, status: 400, field: '/fullName' },
  {
    name: 'ENTITY with a dateOfBirth',
    body: { legalForm: 'ENTITY', fullName: 'Analytical Engines Ltd', dateOfBirth: '1990-01-01' },
    status: 400,
    field: '/dateOfBirth'
  },
  { name: 'fullName 161 characters', body: { legalForm: 'ENTITY', fullName: 'A'.repeat(161) }, status: 400, field: '/fullName' },
  { name: 'mobileNumber not E.164', body: valid({ mobileNumber: '0091 234 567' }), status: 400, field: '/mobileNumber' },
  { name: 'email without a domain', body: valid({ email: 'ada@' }), status: 400, field: '/email' },
  {
    name: 'issuingCountry not ISO 3166',
    body: valid({ identifiers: [{ type: 'PASSPORT', value: 'X1', issuingCountry: 'XX' }] }),
    status: 400,
    field: '/identifiers/0/issuingCountry'
  },
  {
    name: 'country in lower case',
    body: valid({ addresses: [{ type: 'HOME', line1: '1 Road', city: 'Paris', country: 'fr' }] }),
    status: 400,
    field: '/addresses/0/country'
  },
  {
    name: 'identifier type unknown',
    body: valid({ identifiers: [{ type: 'LIBRARY_CARD', value: 'X1', issuingCountry: 'GB' }] }),
    status: 400,
    field: '/identifiers/0/type'
  },
  {
    name: 'identifier given twice',
    body: valid({
      identifiers: [
        { type: 'TAX_ID', value: 'T-1', issuingCountry: 'GB' },
        { type: 'TAX_ID', value: 't1', issuingCountry: 'GB' }
      ]
    }),
    status: 400,
    field: '/identifiers/1'
  },
  {
    name: 'eleven identifiers',
    body: valid({ identifiers: Array.from({ length: 11 }, (_, i) => ({ type: 'TAX_ID', value: `T${i}`, issuingCountry: 'GB' })) }),
    status: 400,
    field: '/identifiers'
  },
  { name: 'identifiers not an array', body: valid({ identifiers: { type: 'TAX_ID' } }), status: 400, field: '/identifiers' },
  { name: 'unknown field', body: valid({ nickname: 'Ada' }), status: 400, field: '/nickname' },
  {
    name: 'unknown nested field',
    body: valid({ addresses: [{ type: 'HOME', line1: '1 Road', city: 'Paris', country: 'FR', floor: 3 }] }),
    status: 400,
    field: '/addresses/0/floor'
  },
  { name: 'prototype pollution', raw: JSON.stringify(valid()).replace('{', '{"__proto__":{"admin":true},'), status: 400 },
  { name: 'externalId with spaces', body: valid({ externalId: 'has spaces' }), status: 400, field: '/externalId' },
  { name: 'branchCode in lower case', body: valid({ branchCode: 'ldn01' }), status: 400, field: '/branchCode' },
  { name: 'body an array', body: [valid()], status: 400, field: '/' },
  { name: 'body a string', raw: '"customer"', status: 400, field: '/' },
  { name: 'malformed JSON', raw: '{"legalForm": "PERSON",', status: 400 },
  { name: 'empty body', raw: '', status: 400 },
  { name: 'deeply nested body', raw: nested(5000), status: 400, field: '/a' },
  { name: 'body over 64 KiB', body: valid({ firstName: 'A'.repeat(70_000) }), status: 413 },
  { name: 'form-encoded body', raw: 'legalForm=PERSON', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415 },
  { name: 'text body', raw: JSON.stringify(valid()), headers: { 'content-type': 'text/plain' }, status: 415 },
  { name: 'Idempotency-Key with a space', body: valid(), headers: { 'idempotency-key': 'a key' }, status: 400, field: 'idempotency-key' }
]

describe('hostile and malformed create requests', () => {
  it(`has at least 30 cases (${cases.length})`, () => expect(cases.length).toBeGreaterThanOrEqual(30))

  let customersBefore: number
  let outboxBefore: number
  beforeAll(async () => {
    customersBefore = await count('customer')
    outboxBefore = await count('outbox_message')
  })

  it.each(cases)('$name → $status', async ({ body, raw, headers, status, field }) => {
    const response = await call(api.app, 'POST', '/v1/customers', {
      body,
      raw,
      headers: { ...(raw !== undefined ? { 'content-type': 'application/json' } : {}), ...headers }
    })
    expect(response.status).toBe(status)
    expect(response.headers.get('content-type')).toBe('application/problem+json; charset=utf-8')
    expect(response.body).toMatchObject({ status, title: expect.any(String), detail: expect.any(String) })
    if (field) {
      const named = (response.body.errors ?? []).map((e: { pointer?: string; header?: string }) => e.pointer ?? e.header)
      expect(named).toContain(field)
    }
  })

  it('left no customer and no event behind', async () => {
    expect(await count('customer')).toBe(customersBefore)
    expect(await count('outbox_message')).toBe(outboxBefore)
  })
})

describe('hostile reads and changes', () => {
  it.each([
    ['a CIF ID with letters', '/v1/customers/1000000000A', 400],
    ['a CIF ID too short', '/v1/customers/123', 400],
    ['a path traversal', '/v1/customers/..%2F..%2Fetc%2Fpasswd', 400]
  ])('GET with %s (%s) → %i', async (_name, path, status) => {
    const response = await call(api.app, 'GET', path)
    expect(response.status).toBe(status)
    expect(response.body.errors?.[0]?.parameter).toBe('cifId')
  })

  it('a PATCH with a malformed If-Match or a wrong type is refused and changes nothing', async () => {
    const { cifId } = (await call(api.app, 'POST', '/v1/customers', { body: valid() })).body
    const badEtag = await call(api.app, 'PATCH', `/v1/customers/${cifId}`, { body: { branchCode: 'SIN02' }, headers: { 'if-match': 'W/"1"' } })
    expect(badEtag.status).toBe(400)
    expect(badEtag.body.errors).toEqual([{ header: 'if-match', detail: 'must be an ETag such as "3"' }])
    const wrongType = await call(api.app, 'PATCH', `/v1/customers/${cifId}`, { body: { identifiers: 'none' }, headers: { 'if-match': '"1"' } })
    expect(wrongType.status).toBe(400)
    expect(wrongType.body.errors[0].pointer).toBe('/identifiers')
    expect((await call(api.app, 'GET', `/v1/customers/${cifId}`)).body.version).toBe(1)
  })
})

async function count(table: 'customer' | 'outbox_message'): Promise<number> {
  const { n } = await api.database.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow()
  return Number(n)
}
