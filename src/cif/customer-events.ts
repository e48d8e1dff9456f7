import { randomUUID } from 'node:crypto'
import { topics } from '../platform/kafka.ts'
import type { NewOutboxMessage } from '../platform/database/tables.ts'
import type { Customer } from './customer-schema.ts'

export const customerEventTypes = {
  created: 'cif.customer.created',
  updated: 'cif.customer.updated'
} as const
export type CustomerEventType = (typeof customerEventTypes)[keyof typeof customerEventTypes]

export const EVENT_SOURCE = 'urn:cif-syncer:cif-service'

export function dataSchemaFor(type: CustomerEventType): string {
  return `urn:cif-syncer:schemas:${type}:1`
}

/**
 * A CloudEvents 1.0 envelope (structured JSON). Extension attributes carry what a consumer needs to
 * route and order without opening `data`: `customerversion`, `sourcesystem`, and for updates
 * `changedfields` (top-level field names, comma-separated: extension values must be scalars).
 */
export interface CustomerEvent {
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

export function customerEvent(
  type: CustomerEventType,
  customer: Customer,
  actingSourceSystem: string,
  changed?: string[]
): CustomerEvent {
  return {
    specversion: '1.0',
    id: randomUUID(),
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
}

/** The outbox row that publishes `event` keyed by CIF ID, so one customer's events share a partition. */
export function outboxMessageFor(event: CustomerEvent): NewOutboxMessage {
  return {
    event_id: event.id,
    topic: topics.customerEvents,
    message_key: event.subject,
    payload: JSON.stringify(event),
    headers: JSON.stringify({
      'content-type': 'application/cloudevents+json; charset=utf-8',
      ce_type: event.type,
      ce_id: event.id
    })
  }
}
