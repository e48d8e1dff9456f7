import { describe, expect, it } from 'vitest'
import { customerRecordErrors, customerRuleErrors, normalizeIdentifierValue } from '../../src/cif/customer-rules.ts'
import type { CustomerInput } from '../../src/contracts/customer.ts'

const today = '2026-11-25'
const person: CustomerInput = { legalForm: 'PERSON', firstName: 'Zoë', lastName: "O'Brien-Núñez", dateOfBirth: '1990-01-31' }

describe('customer rules', () => {
  it('accepts a complete person and a complete entity', () => {
    expect(customerRecordErrors(person, today)).toEqual([])
    expect(
      customerRecordErrors({ legalForm: 'ENTITY', fullName: 'Analytical Engines & Co. (Pte) Ltd', registrationNumber: '201912345K' }, today)
    ).toEqual([])
  })

  it('accepts names in any script', () => {
    for (const name of ['李', 'Владимир', 'محمد', 'Jean-Luc', 'St. John', 'Nguyễn']) {
      expect(customerRecordErrors({ ...person, firstName: name }, today)).toEqual([])
    }
  })

  it('names each field a PERSON lacks or must not have', () => {
    expect(customerRuleErrors({ legalForm: 'PERSON', fullName: 'X Ltd' }, today)).toEqual([
      { pointer: '/firstName', detail: 'is required for a PERSON' },
      { pointer: '/lastName', detail: 'is required for a PERSON' },
      { pointer: '/dateOfBirth', detail: 'is required for a PERSON' },
      { pointer: '/fullName', detail: 'is not allowed for a PERSON' }
    ])
  })

  it('names each field an ENTITY lacks or must not have', () => {
    expect(customerRuleErrors({ legalForm: 'ENTITY', firstName: 'Ada', middleName: 'K' }, today)).toEqual([
      { pointer: '/fullName', detail: 'is required for a ENTITY' },
      { pointer: '/firstName', detail: 'is not allowed for a ENTITY' },
      { pointer: '/middleName', detail: 'is not allowed for a ENTITY' }
    ])
  })

  it('wants a birth date in the past: yesterday yes, today no', () => {
    expect(customerRuleErrors({ ...person, dateOfBirth: '2026-11-24' }, today)).toEqual([])
    expect(customerRuleErrors({ ...person, dateOfBirth: today }, today)).toHaveLength(1)
    expect(customerRuleErrors({ ...person, dateOfBirth: '1899-12-31' }, today)).toHaveLength(1)
  })

  it('refuses a leap day that does not exist', () => {
    expect(customerRecordErrors({ ...person, dateOfBirth: '2000-02-29' }, today)).toEqual([])
    expect(customerRecordErrors({ ...person, dateOfBirth: '1900-02-29' }, today)[0]?.pointer).toBe('/dateOfBirth')
  })

  it('treats one document written two ways as given twice', () => {
    expect(normalizeIdentifierValue(' ab-12 3./x ')).toBe('AB123X')
    const errors = customerRuleErrors(
      {
        ...person,
        identifiers: [
          { type: 'PASSPORT', value: 'K-123', issuingCountry: 'SG' },
          { type: 'PASSPORT', value: 'k123', issuingCountry: 'MY' },
          { type: 'PASSPORT', value: 'k 123', issuingCountry: 'SG' }
        ]
      },
      today
    )
    expect(errors).toEqual([{ pointer: '/identifiers/2', detail: 'repeats an identifier given earlier in the list' }])
  })

  it('reports schema errors of an assembled record with pointers', () => {
    expect(customerRecordErrors({ ...person, email: 'not-an-email', extra: 1 }, today)).toEqual([
      { pointer: '/extra', detail: 'is not a known field' },
      { pointer: '/email', detail: 'must be a valid email' }
    ])
  })
})
