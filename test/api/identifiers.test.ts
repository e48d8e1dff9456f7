import { describe, expect, it } from 'vitest'
import { cifProblems, httpProblems } from '../../src/contracts/problems.ts'
import { type ApiResponse, call, cifAppPerFile, newPerson, problemType } from './helpers.ts'

// One document written in look-alike forms must never become a second customer (a security review found
// five customers for one national ID): each form is the same identifier (409) or refused (400).
const api = cifAppPerFile()

// The file has its own database, so a counter is enough to give each test its own document.
let serial = 1_234_560
/** A national ID no other test uses, shaped like Singapore's: a letter, seven digits, a letter. */
function nationalId(): { digits: string; value: string } {
  const digits = String(serial++)
  return { digits, value: `S${digits}A` }
}

const toBase = (digits: string, zero: number) => [...digits].map((d) => String.fromCodePoint(zero + Number(d))).join('')
const fullWidth = (value: string) => [...value].map((c) => String.fromCodePoint(c.codePointAt(0)! - 0x21 + 0xff01)).join('')

type Answer = 'exists' | 'refused' | 'either'
interface LookAlike {
  name: string
  write: (digits: string) => string
  /** The schema may refuse some forms before they are compared: then either refusal will do. */
  answer: Answer
}

const lookAlikes: LookAlike[] = [
  { name: 'lower case', write: (d) => `s${d}a`, answer: 'exists' },
  { name: 'ASCII spaces, dots, hyphens and slashes', write: (d) => `s ${d.slice(0, 3)}-${d.slice(3, 5)}.${d.slice(5)}/a`, answer: 'exists' },
  { name: 'full-width', write: (d) => fullWidth(`S${d}A`), answer: 'exists' },
  { name: 'full-width lower case', write: (d) => fullWidth(`s${d}a`), answer: 'exists' },
  { name: 'Arabic-Indic digits', write: (d) => `S${toBase(d, 0x0660)}A`, answer: 'exists' },
  { name: 'Extended Arabic-Indic digits', write: (d) => `S${toBase(d, 0x06f0)}A`, answer: 'exists' },
  { name: 'mathematical bold digits', write: (d) => `S${toBase(d, 0x1d7ce)}A`, answer: 'exists' },
  { name: 'Devanagari digits', write: (d) => `S${toBase(d, 0x0966)}A`, answer: 'exists' },
  { name: 'a Cyrillic А', write: (d) => `S${d}\u0410`, answer: 'refused' },
  { name: 'a Cyrillic Ѕ', write: (d) => `\u0405${d}A`, answer: 'refused' },
  { name: 'a Greek Α', write: (d) => `S${d}\u0391`, answer: 'refused' },
  { name: 'a no-break space', write: (d) => `S\u00a0${d}A`, answer: 'either' },
  { name: 'an ideographic space', write: (d) => `S\u3000${d}A`, answer: 'either' },
  { name: 'an en dash', write: (d) => `S${d}\u2013A`, answer: 'either' },
  { name: 'a minus sign', write: (d) => `S-${d}\u2212A`, answer: 'either' }
]

function expectRefused(response: ApiResponse, answer: Answer): void {
  expect(response.status, JSON.stringify(response.body)).not.toBe(201)
  const exists = response.status === 409 && response.body.type === problemType(cifProblems.customerExists)
  const refused =
    response.status === 400 &&
    response.body.type === problemType(httpProblems.validationFailed) &&
    response.body.errors.some((e: { pointer?: string }) => e.pointer === '/identifiers/0/value')
  if (answer === 'exists') expect(exists, JSON.stringify(response.body)).toBe(true)
  else if (answer === 'refused') expect(refused, JSON.stringify(response.body)).toBe(true)
  else expect(exists || refused, JSON.stringify(response.body)).toBe(true)
}

const customerCount = async () =>
  Number(
    (
      await api.database.db
        .selectFrom('customer')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n
  )

describe('an identifier written in a look-alike form', () => {
  it.each(lookAlikes)('$name: is the existing identifier or refused, never a new customer', async ({ write, answer }) => {
    const { digits, value } = nationalId()
    const holder = await call(api.app, 'POST', '/v1/customers', {
      body: newPerson({ identifiers: [{ type: 'NATIONAL_ID', value, issuingCountry: 'SG' }] })
    })
    expect(holder.status).toBe(201)
    const before = await customerCount()

    const again = await call(api.app, 'POST', '/v1/customers', {
      body: newPerson({ identifiers: [{ type: 'NATIONAL_ID', value: write(digits), issuingCountry: 'SG' }] })
    })
    expectRefused(again, answer)
    expect(await customerCount()).toBe(before)
  })

  it('names the rule when the value has letters other than A-Z', async () => {
    const { digits } = nationalId()
    const refused = await call(api.app, 'POST', '/v1/customers', {
      body: newPerson({ identifiers: [{ type: 'NATIONAL_ID', value: `S${digits}\u0410`, issuingCountry: 'SG' }] })
    })
    expect(refused.status).toBe(400)
    expect(refused.body.errors).toEqual([{ pointer: '/identifiers/0/value', detail: 'must be written in Latin letters and digits (A-Z, 0-9)' }])
  })

  it('still gives a new customer a new document, whichever digits it is written in', async () => {
    const { digits } = nationalId()
    const created = await call(api.app, 'POST', '/v1/customers', {
      body: newPerson({ identifiers: [{ type: 'NATIONAL_ID', value: `T${toBase(digits, 0x0660)}B`, issuingCountry: 'SG' }] })
    })
    expect(created.status).toBe(201)
    const again = await call(api.app, 'POST', '/v1/customers', {
      body: newPerson({ identifiers: [{ type: 'NATIONAL_ID', value: `T${digits}B`, issuingCountry: 'SG' }] })
    })
    expectRefused(again, 'exists')
  })
})

describe('a PATCH that adds a look-alike of another customer’s identifier', () => {
  it.each(lookAlikes)('$name: is refused and changes nothing', async ({ write, answer }) => {
    const { digits, value } = nationalId()
    const holder = await call(api.app, 'POST', '/v1/customers', {
      body: newPerson({ identifiers: [{ type: 'NATIONAL_ID', value, issuingCountry: 'SG' }] })
    })
    expect(holder.status).toBe(201)
    const { cifId } = (await call(api.app, 'POST', '/v1/customers', { body: newPerson({ identifiers: [] }) })).body

    const taking = await call(api.app, 'PATCH', `/v1/customers/${cifId}`, {
      body: { identifiers: [{ type: 'NATIONAL_ID', value: write(digits), issuingCountry: 'SG' }] },
      headers: { 'if-match': '"1"' }
    })
    expectRefused(taking, answer)
    const now = (await call(api.app, 'GET', `/v1/customers/${cifId}`)).body
    expect(now.version).toBe(1)
    expect(now.identifiers).toEqual([])
  })
})
