import { Ajv } from 'ajv'
import addFormats from 'ajv-formats'
import { CustomerInput } from '../contracts/customer.ts'
import type { FieldError } from '../contracts/problems.ts'
import { fieldErrorsFromAjv } from '../platform/http/problem.ts'

const personOnly = ['firstName', 'middleName', 'lastName', 'dateOfBirth'] as const
const entityOnly = ['fullName', 'registrationNumber'] as const
const EARLIEST_BIRTH_DATE = '1900-01-01'

/** Identifier values compare without case, spaces, dots, hyphens or slashes: "ab-12 3" is "AB123". */
export function normalizeIdentifierValue(value: string): string {
  return value.toUpperCase().replace(/[\s./-]+/g, '')
}

/**
 * The rules a JSON Schema cannot say clearly: what a PERSON and an ENTITY must and must not have, a
 * birth date in the past, no document given twice. `today` is YYYY-MM-DD (UTC).
 */
export function customerRuleErrors(customer: CustomerInput, today: string): FieldError[] {
  const errors: FieldError[] = []
  const [required, forbidden] =
    customer.legalForm === 'PERSON' ? [['firstName', 'lastName', 'dateOfBirth'] as const, entityOnly] : [['fullName'] as const, personOnly]
  for (const field of required) {
    if (customer[field] === undefined) errors.push({ pointer: `/${field}`, detail: `is required for a ${customer.legalForm}` })
  }
  for (const field of forbidden) {
    if (customer[field] !== undefined) errors.push({ pointer: `/${field}`, detail: `is not allowed for a ${customer.legalForm}` })
  }
  if (customer.dateOfBirth !== undefined && (customer.dateOfBirth >= today || customer.dateOfBirth < EARLIEST_BIRTH_DATE)) {
    errors.push({ pointer: '/dateOfBirth', detail: `must be a date from ${EARLIEST_BIRTH_DATE} up to yesterday` })
  }
  const seen = new Set<string>()
  customer.identifiers?.forEach((identifier, i) => {
    const key = `${identifier.type}|${identifier.issuingCountry}|${normalizeIdentifierValue(identifier.value)}`
    if (seen.has(key)) errors.push({ pointer: `/identifiers/${i}`, detail: 'repeats an identifier given earlier in the list' })
    seen.add(key)
  })
  return errors
}

// The same contract the route validates against, for records that are assembled (a create after a merge patch).
const ajv = new Ajv({ allErrors: true, strict: false })
addFormats.default(ajv)
const checkSchema = ajv.compile<CustomerInput>(CustomerInput)

export function customerRecordErrors(record: unknown, today: string): FieldError[] {
  if (!checkSchema(record)) return fieldErrorsFromAjv(checkSchema.errors ?? [], 'body')
  return customerRuleErrors(record, today)
}

export function todayUtc(now = new Date()): string {
  return now.toISOString().slice(0, 10)
}
