import { type TSchema, Type } from 'typebox'
import { cloudEventSchema, newEventId } from './cloud-events.ts'
import { Customer, SOURCE_SYSTEM_PATTERN } from './customer.ts'
import { type EventSignature, type EventSigningKey, SIGNATURE_PATTERN, SIGNING_KEY_ID_PATTERN, signEvent } from './event-signature.ts'

export const customerEventTypes = {
  created: 'cif.customer.created',
  updated: 'cif.customer.updated'
} as const
export type CustomerEventType = (typeof customerEventTypes)[keyof typeof customerEventTypes]

export const EVENT_SOURCE = 'urn:cif-syncer:cif-service'

/**
 * The most bytes (UTF-8) a message of `cif.customer.events` may hold and still be a customer event: more than twice
 * the largest event the schema allows, counted generously (every string at its longest and every character
 * escaped, every list full: about 26 KB; a unit test holds the schema under half of it). The syncer keeps a longer message as unreadable without parsing it, so that one huge message
 * costs neither the time nor the memory of reading it as JSON.
 */
export const MAX_CUSTOMER_EVENT_BYTES = 64 * 1024

export function dataSchemaFor(type: CustomerEventType): string {
  return `urn:cif-syncer:schemas:${type}:1`
}

/**
 * A CloudEvents 1.0 envelope (structured JSON). Extension attributes carry what a consumer needs to
 * route and order without opening `data`: `customerversion`, `sourcesystem`, and for updates
 * `changedfields` (top-level field names, comma-separated: extension values must be scalars); and
 * `signaturekey` and `signature`, which tie the event to the CIF service (event-signature.ts).
 */
export interface CustomerEvent extends EventSignature {
  specversion: '1.0'
  id: string
  source: string
  type: CustomerEventType
  subject: string
  time: string
  datacontenttype: 'application/json'
  dataschema: string
  customerversion: number
  sourcesystem: string
  changedfields?: string
  data: Customer
}

/** The event of a change, signed with the CIF service's key: there is no way to build one unsigned. */
export function customerEvent(
  type: CustomerEventType,
  customer: Customer,
  actingSourceSystem: string,
  signingKey: EventSigningKey,
  changed?: string[]
): CustomerEvent {
  const event: Omit<CustomerEvent, keyof EventSignature> = {
    specversion: '1.0',
    id: newEventId(),
    source: EVENT_SOURCE,
    type,
    subject: customer.cifId,
    time: customer.updatedAt,
    datacontenttype: 'application/json',
    dataschema: dataSchemaFor(type),
    customerversion: customer.version,
    sourcesystem: actingSourceSystem,
    ...(changed ? { changedfields: changed.join(',') } : {}),
    data: customer
  }
  return signEvent(event, signingKey)
}

/** The JSON Schema of one event type's envelope; `schemas/events/<type>.json` is written from it. */
export function customerEventSchema(type: CustomerEventType): TSchema {
  const updated = type === customerEventTypes.updated
  return cloudEventSchema(
    EVENT_SOURCE,
    type,
    {
      dataschema: Type.Literal(dataSchemaFor(type)),
      customerversion: updated ? Type.Integer({ minimum: 2, maximum: 2_147_483_647 }) : Type.Literal(1),
      sourcesystem: Type.String({ pattern: SOURCE_SYSTEM_PATTERN, description: 'The source system that made the change' }),
      ...(updated
        ? {
            changedfields: Type.String({
              pattern: '^[A-Za-z]+(,[A-Za-z]+)*$',
              // Each field of the record at most once: bounded, as every other string of the event is.
              maxLength: Object.keys(Customer.properties).join(',').length,
              description: 'Top-level fields changed, comma-separated'
            })
          }
        : {}),
      signaturekey: Type.String({ pattern: SIGNING_KEY_ID_PATTERN, description: 'The id of the CIF service key that signed the event' }),
      signature: Type.String({
        pattern: SIGNATURE_PATTERN,
        description:
          'Ed25519 signature (base64url, unpadded) by the CIF service over the UTF-8 bytes of the event without this attribute, ' +
          'as canonical JSON: keys sorted at every depth, no whitespace (RFC 8785). Deliver the event only if it verifies under the public key named by signaturekey.'
      }),
      data: Customer
    },
    { $id: dataSchemaFor(type) }
  )
}
