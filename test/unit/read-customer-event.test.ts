import { describe, expect, it } from 'vitest'
import { customerEvent, customerEventTypes } from '../../src/contracts/customer-events.ts'
import { readCustomerEvent } from '../../src/syncer/intake/event-store.ts'

const customer = {
  cifId: '10000000009',
  version: 1,
  legalForm: 'ENTITY' as const,
  fullName: 'Analytical Engines Ltd',
  sourceSystem: 'branch-portal',
  createdAt: '2026-11-25T10:00:00.000Z',
  updatedAt: '2026-11-25T10:00:00.000Z'
}

describe('reading a message as a CIF event', () => {
  it('accepts what the CIF service publishes', () => {
    const event = customerEvent(customerEventTypes.created, customer, 'branch-portal')
    expect(readCustomerEvent(JSON.stringify(event))).toEqual({ event })
  })

  it('says why anything else is not one', () => {
    expect(readCustomerEvent('{nope')).toEqual({ reason: 'not JSON' })
    expect(readCustomerEvent('{"type":"payment.made"}')).toEqual({ reason: 'not a CIF customer event (type "payment.made")' })
    const event = customerEvent(customerEventTypes.created, customer, 'branch-portal')
    const tooNew = { ...event, customerversion: 2 ** 31 }
    expect(readCustomerEvent(JSON.stringify(tooNew))).toMatchObject({
      reason: expect.stringMatching(/^does not match the cif.customer.created schema: \/customerversion/)
    })
    const strangeSource = { ...event, sourcesystem: 'branch\u0000portal' }
    expect(readCustomerEvent(JSON.stringify(strangeSource))).toMatchObject({ reason: expect.stringMatching(/\/sourcesystem/) })
  })
})
