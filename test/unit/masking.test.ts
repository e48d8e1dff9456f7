import { describe, expect, it } from 'vitest'
import { maskPersonalData } from '../../src/syncer/delivery/masking.ts'

describe('masking personal data in end system messages', () => {
  const customer = {
    firstName: 'Ada',
    lastName: 'Lovelace',
    email: 'ada@example.com',
    mobileNumber: '+6591234567',
    identifiers: [{ type: 'PASSPORT', value: 'K1234567' }],
    addresses: [{ line1: '12 St James Square', postalCode: 'SW1Y 4JH' }]
  }

  it('masks the customer’s own values wherever they appear', () => {
    expect(maskPersonalData('Lovelace, Ada (K1234567) at 12 St James Square SW1Y 4JH, 6591234567', customer)).toBe('***, *** (***) at *** ***, ***')
  })

  it('masks anything shaped like an email or an international phone number, and keeps ids readable', () => {
    expect(maskPersonalData('contact bob@bank.example or +44 20 7946 0958 about 10000000009 / CB-0000001', undefined)).toBe(
      'contact ***@*** or *** about 10000000009 / CB-0000001'
    )
  })
  it('matches whole words in any case, short names too, and not inside other words', () => {
    const ng = { firstName: 'Wei', lastName: 'Ng', addresses: [{ city: 'Lisbon' }] }
    expect(maskPersonalData('NG WEI rejected; Ngong Road is in LISBON', ng)).toBe('*** *** rejected; Ngong Road is in ***')
  })

  it('drops what PostgreSQL text and JSON cannot hold', () => {
    expect(maskPersonalData('bad\u0000byte \ud800half', undefined)).toBe('badbyte \ufffdhalf')
  })
})
