import type { TSchema } from 'typebox'
import { customerEventSchema, customerEventTypes } from './customer-events.ts'
import { type StatusKind, statusEventSchema, statusKinds } from './sync-status-events.ts'

/** Every event type the services publish, with its JSON Schema: `schemas/events/<type>.json` is written from these. */
export function eventSchemas(): Record<string, TSchema> {
  return Object.fromEntries([
    ...Object.values(customerEventTypes).map((type) => [type, customerEventSchema(type)] as const),
    ...(Object.keys(statusKinds) as StatusKind[]).map((kind) => [statusKinds[kind].type, statusEventSchema(kind)] as const)
  ])
}
