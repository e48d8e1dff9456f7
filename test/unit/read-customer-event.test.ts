import { describe, expect, it } from 'vitest'
import { CIF_ID_PATTERN } from '../../src/contracts/cif-id.ts'
import { SOURCE_SYSTEM_PATTERN } from '../../src/contracts/customer.ts'
import { customerEvent, customerEventSchema, customerEventTypes, MAX_CUSTOMER_EVENT_BYTES } from '../../src/contracts/customer-events.ts'
import { SIGNATURE_PATTERN, SIGNING_KEY_ID_PATTERN, signEvent } from '../../src/contracts/event-signature.ts'
import { readCustomerEvent } from '../../src/syncer/intake/event-store.ts'
import { devSigningKey, devTrustedKeys, newEventKeyPair } from '../support/event-keys.ts'

const customer = {
  cifId: '10000000009',
  version: 1,
  legalForm: 'ENTITY' as const,
  fullName: 'Analytical Engines Ltd',
  sourceSystem: 'branch-portal',
  createdAt: '2026-11-25T10:00:00.000Z',
  updatedAt: '2026-11-25T10:00:00.000Z'
}

const read = (message: unknown) => readCustomerEvent(JSON.stringify(message), devTrustedKeys)

describe('reading a message as a CIF event', () => {
  it('accepts what the CIF service publishes', () => {
    const event = customerEvent(customerEventTypes.created, customer, 'branch-portal', devSigningKey)
    expect(read(event)).toEqual({ event })
  })

  it('says why anything else is not one', () => {
    expect(readCustomerEvent('{nope', devTrustedKeys)).toEqual({ reason: 'not JSON' })
    expect(read({ type: 'payment.made' })).toEqual({ reason: 'not a CIF customer event (type "payment.made")' })
    // Signed, so that it is the schema that refuses them.
    const event = customerEvent(customerEventTypes.created, customer, 'branch-portal', devSigningKey)
    const tooNew = signEvent({ ...event, customerversion: 2 ** 31 }, devSigningKey)
    expect(read(tooNew)).toMatchObject({
      reason: expect.stringMatching(/^does not match the cif.customer.created schema: \/customerversion/)
    })
    const strangeSource = signEvent({ ...event, sourcesystem: 'branch\u0000portal' }, devSigningKey)
    expect(read(strangeSource)).toMatchObject({ reason: expect.stringMatching(/\/sourcesystem/) })
  })

  it('refuses a well-formed event the CIF service did not sign, saying so, before anything else', () => {
    const event = customerEvent(customerEventTypes.created, customer, 'branch-portal', devSigningKey)
    const { signature: _signature, signaturekey: _key, ...unsigned } = event
    expect(read(unsigned)).toEqual({ reason: 'not signed by the CIF service: it carries no signature', notSigned: true })
    expect(read({ ...event, data: { ...customer, fullName: 'Analytical Engines plc' } })).toEqual({
      reason: expect.stringMatching(/^not signed by the CIF service: its signature does not match it/),
      notSigned: true
    })
    const forged = customerEvent(customerEventTypes.created, customer, 'branch-portal', newEventKeyPair('cif-2026-01').signingKey)
    expect(read(forged)).toEqual({
      reason: 'not signed by the CIF service: it names key "cif-2026-01", which is not a trusted key of the CIF service',
      notSigned: true
    })
    // Unsigned and malformed: called forged, not merely malformed.
    expect(read({ type: 'cif.customer.created', id: 'not-a-uuid' })).toMatchObject({ notSigned: true })
  })
})

describe('messages no customer event can be', () => {
  it('calls a tombstone what it is', () => {
    expect(readCustomerEvent(null, devTrustedKeys)).toEqual({ reason: 'a tombstone (no value): not a customer event' })
  })

  it('does not read a message longer than a customer event can be, signed or not', () => {
    const event = customerEvent(customerEventTypes.created, customer, 'branch-portal', devSigningKey)
    const padded = JSON.stringify(event).replace('{', `{${' '.repeat(MAX_CUSTOMER_EVENT_BYTES)}`)
    expect(JSON.parse(padded)).toEqual(event)
    expect(readCustomerEvent(padded, devTrustedKeys)).toEqual({
      reason: `larger than a customer event can be (${Buffer.byteLength(padded)} bytes, at most ${MAX_CUSTOMER_EVENT_BYTES}): not read`
    })
    // Measured in bytes, as Kafka and the network carry it, not in characters.
    const multiByte = `"${'€'.repeat(MAX_CUSTOMER_EVENT_BYTES / 3)}"`
    expect(readCustomerEvent(multiByte, devTrustedKeys)).toMatchObject({ reason: expect.stringMatching(/^larger than/) })
  })

  it('leaves room for the largest event the schema allows: it takes under half the limit', () => {
    const largest = Math.max(...Object.values(customerEventTypes).map((type) => largestJson(customerEventSchema(type))))
    expect(largest).toBeLessThan(MAX_CUSTOMER_EVENT_BYTES / 2)
    expect(largest).toBeGreaterThan(MAX_CUSTOMER_EVENT_BYTES / 8)
  })
})

/**
 * The most bytes a value of `schema` can take as JSON (UTF-8): each string at its maxLength, 6 bytes a
 * character (a JSON escape, \uXXXX), each list at maxItems, every property there. A string bounded only by its
 * pattern or format says so in the table below; one bounded by neither fails the test: the event would be unbounded.
 */
function largestJson(schema: Record<string, any>): number {
  if (schema.const !== undefined) return JSON.stringify(schema.const).length
  if (schema.enum) return Math.max(...schema.enum.map((value: unknown) => JSON.stringify(value).length))
  if (schema.anyOf) return Math.max(...schema.anyOf.map(largestJson))
  if (schema.type === 'integer') return 11
  if (schema.type === 'string') {
    const bound = schema.maxLength ?? patternOrFormatBound[schema.pattern ?? schema.format]
    if (bound === undefined) throw new Error(`a string bounded by nothing: ${JSON.stringify(schema)}`)
    return bound * 6 + 2
  }
  if (schema.type === 'array') {
    if (schema.maxItems === undefined && !schema.uniqueItems) throw new Error(`a list bounded by nothing: ${JSON.stringify(schema)}`)
    const items = schema.maxItems ?? schema.items.enum.length
    return 2 + items * (largestJson(schema.items) + 1)
  }
  if (schema.type === 'object') {
    return Object.entries(schema.properties as Record<string, any>).reduce((sum, [name, value]) => sum + name.length + 4 + largestJson(value), 2)
  }
  throw new Error(`a schema this bound does not know: ${JSON.stringify(schema)}`)
}

const patternOrFormatBound: Record<string, number> = {
  [CIF_ID_PATTERN]: 11,
  [SOURCE_SYSTEM_PATTERN]: 63,
  [SIGNING_KEY_ID_PATTERN]: 64,
  [SIGNATURE_PATTERN]: 86,
  '^\\+[1-9][0-9]{6,14}$': 16,
  '^[A-Z0-9]{3,10}$': 10,
  uuid: 36,
  date: 10,
  'date-time': 35
}
