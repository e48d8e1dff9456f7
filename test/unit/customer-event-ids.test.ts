import { describe, expect, it } from 'vitest'
import type { Customer } from '../../src/contracts/customer.ts'
import { customerEvent, customerEventTypes } from '../../src/contracts/customer-events.ts'
import { devSigningKey } from '../support/event-keys.ts'

const customer: Customer = {
  cifId: '10000000009',
  version: 1,
  legalForm: 'PERSON',
  firstName: 'Ada',
  lastName: 'Lovelace',
  dateOfBirth: '1985-12-10',
  identifiers: [],
  addresses: [],
  sourceSystem: 'branch-portal',
  createdAt: '2026-11-25T10:00:00.000Z',
  updatedAt: '2026-11-25T10:00:00.000Z'
}

describe("a customer event's id", () => {
  it('is a version 7 UUID, later events sorting after earlier ones (index inserts stay at the end, not on random pages)', () => {
    const ids = Array.from({ length: 2000 }, () => customerEvent(customerEventTypes.created, customer, 'branch-portal', devSigningKey).id)
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(new Set(ids).size).toBe(ids.length)
    // PostgreSQL orders uuid values bytewise, as their lower-case text sorts.
    expect([...ids].sort()).toEqual(ids)
  })
})
