import { describe, expect, it } from 'vitest'
import { customerEvent, customerEventTypes } from '../../src/contracts/customer-events.ts'
import { signEvent } from '../../src/contracts/event-signature.ts'
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
