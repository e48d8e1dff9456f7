import { type Static, type TNull, type TOptional, type TSchema, type TUnion, type TUnknown, Type } from 'typebox'
import { CIF_ID_PATTERN } from './cif-id.ts'
import { countryCodes } from './countries.ts'

// Letters of any script (with combining marks), then letters, spaces, apostrophes, hyphens, periods.
const personName = Type.String({ minLength: 1, maxLength: 50, pattern: "^\\p{L}[\\p{L}\\p{M} '’.-]*$" })
// Free text on an address: no control characters, no markup or template characters.
const addressText = (maxLength: number) => Type.String({ minLength: 1, maxLength, pattern: '^[^\\p{C}<>{}\\\\$]+$' })
const country = Type.Enum([...countryCodes], { description: 'ISO 3166-1 alpha-2 country code' })

/** Source system names, as configured with their API keys (CIF_SOURCE_SYSTEMS). */
export const SOURCE_SYSTEM_PATTERN = '^[a-z][a-z0-9-]{1,62}$'

export const identifierTypes = ['NATIONAL_ID', 'PASSPORT', 'TAX_ID', 'DRIVING_LICENCE', 'REGISTRATION_NUMBER'] as const
export const addressTypes = ['HOME', 'WORK', 'REGISTERED', 'MAILING'] as const

export const Identifier = Type.Object(
  {
    type: Type.Enum([...identifierTypes]),
    value: Type.String({ minLength: 1, maxLength: 50, pattern: '^[\\p{L}\\p{N}][\\p{L}\\p{N} ./-]*$' }),
    issuingCountry: country
  },
  { additionalProperties: false }
)

export const Address = Type.Object(
  {
    type: Type.Enum([...addressTypes]),
    line1: addressText(100),
    line2: Type.Optional(addressText(100)),
    line3: Type.Optional(addressText(100)),
    city: addressText(60),
    region: Type.Optional(addressText(60)),
    postalCode: Type.Optional(Type.String({ minLength: 2, maxLength: 12, pattern: '^[A-Za-z0-9][A-Za-z0-9 -]*$' })),
    country
  },
  { additionalProperties: false }
)

/** Every field but `legalForm`; which of them a PERSON or an ENTITY needs is in customer-rules.ts. */
const optionalFields = {
  firstName: personName,
  middleName: personName,
  lastName: personName,
  dateOfBirth: Type.String({ format: 'date', description: 'YYYY-MM-DD, in the past' }),
  fullName: Type.String({ minLength: 1, maxLength: 160, pattern: "^[\\p{L}\\p{N}][\\p{L}\\p{M}\\p{N} &'’,.()/-]*$" }),
  registrationNumber: Type.String({ minLength: 1, maxLength: 50, pattern: '^[A-Za-z0-9][A-Za-z0-9 ./-]*$' }),
  mobileNumber: Type.String({ pattern: '^\\+[1-9][0-9]{6,14}$', description: 'E.164, e.g. +6591234567' }),
  email: Type.String({ format: 'email', maxLength: 254 }),
  identifiers: Type.Array(Identifier, { maxItems: 10 }),
  addresses: Type.Array(Address, { maxItems: 5 }),
  branchCode: Type.String({ pattern: '^[A-Z0-9]{3,10}$' }),
  externalId: Type.String({
    minLength: 1,
    maxLength: 100,
    pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]*$',
    description: "The source system's own reference for this customer, unique per source system"
  })
}
type OptionalFields = typeof optionalFields

function allOptional<T extends Record<string, TSchema>>(fields: T): { [K in keyof T]: TOptional<T[K]> } {
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, Type.Optional(v)])) as never
}

const customerFields = { legalForm: Type.Enum(['PERSON', 'ENTITY']), ...allOptional(optionalFields) }

export const CustomerInput = Type.Object(customerFields, { additionalProperties: false })
export type CustomerInput = Static<typeof CustomerInput>

/** Fields that identify the record itself and so never change after create. */
export const immutableFields = ['legalForm', 'externalId'] as const

type PatchFields = { [K in Exclude<keyof OptionalFields, 'externalId'>]: TOptional<TUnion<[OptionalFields[K], TNull]>> }
const { externalId: _externalId, ...patchable } = optionalFields
// Accepted by the schema only so that the handler can say why they are refused (see immutableFields).
const immutable = Object.fromEntries(
  immutableFields.map((name) => [name, Type.Optional(Type.Unknown({ description: 'Cannot be changed after create' }))])
) as Record<(typeof immutableFields)[number], TOptional<TUnknown>>

/** JSON Merge Patch (RFC 7396) of a customer: `null` removes a field; arrays are replaced whole. */
export const CustomerPatch = Type.Object(
  {
    ...(Object.fromEntries(
      Object.entries(patchable).map(([name, schema]) => [name, Type.Optional(Type.Union([schema, Type.Null()]))])
    ) as PatchFields),
    ...immutable
  },
  { additionalProperties: false }
)
export type CustomerPatch = Static<typeof CustomerPatch>

/**
 * What the CIF service notices in a record for a person to look at, without refusing it:
 * `MIXED_SCRIPT_NAME`, a name that mixes scripts a real name does not (Latin with Cyrillic letters: the
 * shape of a look-alike, or a typing slip). Names may use any one script, or Han with kana or Hangul.
 */
export const reviewFlags = ['MIXED_SCRIPT_NAME'] as const
export type ReviewFlag = (typeof reviewFlags)[number]

export const Customer = Type.Object(
  {
    cifId: Type.String({ pattern: CIF_ID_PATTERN }),
    version: Type.Integer({ minimum: 1 }),
    ...customerFields,
    reviewFlags: Type.Optional(
      Type.Array(Type.Enum([...reviewFlags]), {
        uniqueItems: true,
        description: 'Set by the CIF service for a person to review (never by a source system); absent when none'
      })
    ),
    sourceSystem: Type.String({ pattern: SOURCE_SYSTEM_PATTERN, description: 'The source system that created the customer' }),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' })
  },
  { additionalProperties: false }
)
export type Customer = Static<typeof Customer>

/**
 * Which fields hold personal data, declared here once for every field of the record: the type checker
 * refuses a new field until it is classified here. Log redaction (platform/logger.ts) and the masking of
 * end systems' messages (syncer/delivery/masking.ts) both derive from `personalData`.
 */
type Classification = 'personal' | 'not personal'
const customerFieldClasses = {
  cifId: 'not personal',
  version: 'not personal',
  legalForm: 'not personal',
  firstName: 'personal',
  middleName: 'personal',
  lastName: 'personal',
  dateOfBirth: 'personal',
  fullName: 'personal',
  registrationNumber: 'personal',
  mobileNumber: 'personal',
  email: 'personal',
  identifiers: 'personal',
  addresses: 'personal',
  branchCode: 'not personal',
  externalId: 'personal',
  reviewFlags: 'not personal',
  sourceSystem: 'not personal',
  createdAt: 'not personal',
  updatedAt: 'not personal'
} as const satisfies Record<keyof Customer, Classification>
const identifierFieldClasses = { type: 'not personal', value: 'personal', issuingCountry: 'not personal' } as const satisfies Record<
  keyof Static<typeof Identifier>,
  Classification
>
const addressFieldClasses = {
  type: 'not personal',
  line1: 'personal',
  line2: 'personal',
  line3: 'personal',
  city: 'personal',
  region: 'personal',
  postalCode: 'personal',
  country: 'not personal'
} as const satisfies Record<keyof Static<typeof Address>, Classification>

const personalOf = <T extends Record<string, Classification>>(classes: T) =>
  (Object.keys(classes) as (keyof T & string)[]).filter((field) => classes[field] === 'personal')

export const personalData = {
  /** Top-level fields of a customer that hold personal data (lists hold it in their items' fields below). */
  fields: personalOf(customerFieldClasses),
  /** For a list of such fields, the fields of each item that hold personal data. */
  itemFields: { identifiers: personalOf(identifierFieldClasses), addresses: personalOf(addressFieldClasses) } as Partial<
    Record<keyof Customer, readonly string[]>
  >
}

export const CifIdParams = Type.Object({
  cifId: Type.String({ pattern: CIF_ID_PATTERN, description: '11 digits, the last a Luhn check digit' })
})
