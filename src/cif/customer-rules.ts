import { Ajv } from 'ajv'
import addFormats from 'ajv-formats'
import { CustomerInput, type ReviewFlag } from '../contracts/customer.ts'
import type { FieldError } from '../contracts/problems.ts'
import { fieldErrorsFromAjv } from '../platform/http/problem.ts'

const personOnly = ['firstName', 'middleName', 'lastName', 'dateOfBirth'] as const
const entityOnly = ['fullName', 'registrationNumber'] as const
const EARLIEST_BIRTH_DATE = '1900-01-01'

const DECIMAL_DIGIT = /\p{Nd}/u
// Unicode spaces (\s), dots, dashes (\p{Pd} and the minus sign) and slashes, as they are left after NFKC.
const SEPARATORS = /[\s.\u3002\p{Pd}\u2212/\u2215]+/gu
const LATIN_IDENTIFIER = /^[A-Z0-9]+$/

/**
 * A Unicode decimal digit's ASCII digit. Unicode encodes every \p{Nd} in runs of ten from 0 to 9 (a
 * stability guarantee), so a digit's value is its distance from the start of its run, modulo ten.
 */
function asciiDigit(digit: string): string {
  const codePoint = digit.codePointAt(0)!
  let runStart = codePoint
  while (DECIMAL_DIGIT.test(String.fromCodePoint(runStart - 1))) runStart--
  return String((codePoint - runStart) % 10)
}

/**
 * An identifier value as a person would compare it, so that one document written in look-alike forms
 * claims one row of the unique index: NFKC folds full-width, mathematical and compatibility forms, every
 * decimal digit becomes its ASCII digit, then upper case without spaces, dots, dashes or slashes
 * ("ab-12 3" and "ａｂ－１２ ３" are both "AB123"). Plain ASCII comes out exactly as before this folding
 * existed, so stored values stay comparable. What is left is not always A-Z and 0-9: customerRuleErrors
 * refuses the rest (a Cyrillic "А" looks like "A" but would be another value).
 */
export function normalizeIdentifierValue(value: string): string {
  return value
    .normalize('NFKC')
    .replace(/\p{Nd}/gu, asciiDigit)
    .toUpperCase()
    .replace(SEPARATORS, '')
}

/**
 * The rules a JSON Schema cannot say clearly: what a PERSON and an ENTITY must and must not have, a
 * birth date in the past, identifier values in A-Z and 0-9 once normalised, no document given twice.
 * `today` is YYYY-MM-DD (UTC).
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
    const value = normalizeIdentifierValue(identifier.value)
    // Only A-Z and 0-9 can be compared as a person would: a look-alike letter from another script would
    // make the same document a second, different value and so a second customer.
    if (!LATIN_IDENTIFIER.test(value)) {
      errors.push({ pointer: `/identifiers/${i}/value`, detail: 'must be written in Latin letters and digits (A-Z, 0-9)' })
      return
    }
    const key = `${identifier.type}|${identifier.issuingCountry}|${value}`
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

// The scripts names are written in. A letter of none of them counts as a script of its own.
const SCRIPTS = [
  'Latin',
  'Greek',
  'Cyrillic',
  'Armenian',
  'Georgian',
  'Hebrew',
  'Arabic',
  'Syriac',
  'Thaana',
  'Devanagari',
  'Bengali',
  'Gurmukhi',
  'Gujarati',
  'Oriya',
  'Tamil',
  'Telugu',
  'Kannada',
  'Malayalam',
  'Sinhala',
  'Thai',
  'Lao',
  'Tibetan',
  'Myanmar',
  'Khmer',
  'Mongolian',
  'Ethiopic',
  'Hangul',
  'Hiragana',
  'Katakana',
  'Bopomofo',
  'Han'
].map((script) => ({ script, pattern: new RegExp(`\\p{scx=${script}}`, 'u') }))
// Writing systems that mix scripts by design (Unicode TS #39, 5.1: Han with kana is Japanese, with Hangul Korean).
const WRITING_SYSTEMS: Record<string, string[]> = {
  Han: ['Japanese', 'Korean', 'Chinese'],
  Hiragana: ['Japanese'],
  Katakana: ['Japanese'],
  Hangul: ['Korean'],
  Bopomofo: ['Chinese']
}
const SHARED = /[\p{scx=Common}\p{scx=Inherited}]/u
const ASCII = /^[ -~]*$/

/**
 * Whether a name mixes scripts (Unicode TS #39, mixed-script detection): the scripts of its letters, each
 * letter counted in every script it is used in (its Script_Extensions), must have one in common. Marks,
 * digits and punctuation are shared by all scripts.
 */
export function isMixedScript(name: string): boolean {
  // Most names are printable ASCII: their letters are all Latin, the rest shared by every script.
  if (ASCII.test(name)) return false
  let common: Set<string> | undefined
  for (const char of name) {
    if (SHARED.test(char)) continue
    const scripts = new Set(SCRIPTS.filter(({ pattern }) => pattern.test(char)).flatMap(({ script }) => [script, ...(WRITING_SYSTEMS[script] ?? [])]))
    if (!scripts.size) scripts.add(`U+${char.codePointAt(0)!.toString(16)}`)
    common = common ? new Set([...common].filter((script) => scripts.has(script))) : scripts
    if (!common.size) return true
  }
  return false
}

const NAME_FIELDS = ['firstName', 'middleName', 'lastName', 'fullName'] as const

/** What a person should look at in a record the rules accept, with the fields concerned. */
export function reviewFlagsOf(record: Readonly<Record<string, unknown>>): { flag: ReviewFlag; fields: string[] }[] {
  const mixed = NAME_FIELDS.filter((field) => {
    const name = record[field]
    return typeof name === 'string' && isMixedScript(name)
  })
  return mixed.length ? [{ flag: 'MIXED_SCRIPT_NAME', fields: mixed }] : []
}
