import { type Static, Type } from 'typebox'
import { CIF_ID_PATTERN } from '../../contracts/cif-id.ts'
import { AnyStatusData } from '../../contracts/sync-status-events.ts'
import { attemptStatuses, customerSyncStates, deliveryStates, stateMeanings } from '../delivery/states.ts'

const nullableString = Type.Union([Type.String(), Type.Null()])
const listed = (meanings: Record<string, string>) =>
  Object.entries(meanings)
    .map(([name, meaning]) => `${name}: ${meaning}`)
    .join('; ')

export const Delivery = Type.Object({
  deliveryId: Type.String(),
  eventId: Type.String(),
  cifId: Type.String(),
  endSystem: Type.String(),
  operation: Type.Enum(['create', 'update']),
  customerVersion: Type.Integer(),
  state: Type.Enum([...deliveryStates], { description: listed(stateMeanings) }),
  attempts: Type.Integer(),
  externalId: nullableString,
  lastError: nullableString,
  remarks: nullableString,
  nextAttemptAt: nullableString,
  createdAt: Type.String(),
  updatedAt: Type.String(),
  completedAt: nullableString
})
export type Delivery = Static<typeof Delivery>

export const Attempt = Type.Object({
  attemptId: Type.String(),
  deliveryId: Type.String(),
  eventId: Type.String(),
  cifId: Type.String(),
  eventType: Type.String(),
  customerVersion: Type.Integer(),
  endSystem: Type.String(),
  attemptNumber: Type.Integer(),
  status: Type.Enum([...attemptStatuses]),
  httpStatus: Type.Union([Type.Integer(), Type.Null()]),
  message: nullableString,
  remarks: nullableString,
  timeoutMs: Type.Integer(),
  durationMs: Type.Integer(),
  startedAt: Type.String(),
  finishedAt: Type.String()
})
export type Attempt = Static<typeof Attempt>

export const CustomerSync = Type.Object({
  cifId: Type.String(),
  latestVersion: Type.Integer(),
  state: Type.Enum(Object.keys(customerSyncStates) as (keyof typeof customerSyncStates)[], { description: listed(customerSyncStates) }),
  endSystems: Type.Array(Delivery, { description: 'Per end system, its delivery of the latest version it has one for' })
})
export type CustomerSync = Static<typeof CustomerSync>

/** 1 to 500, as a query string gives it. */
const pageLimit = (description?: string) => Type.Optional(Type.String({ pattern: '^(?:[1-9]|[1-9][0-9]|[1-4][0-9]{2}|500)$', description }))
const position = (description: string) => Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$', description }))

export const UpdatesQuery = Type.Object(
  { after: position('The `next` of the previous answer'), limit: pageLimit('1-500, default 100') },
  { additionalProperties: false }
)
export type UpdatesQuery = Static<typeof UpdatesQuery>

export const Updates = Type.Object({
  updates: Type.Array(AnyStatusData, { description: 'Each status as `data` of its message on cif.sync.status' }),
  next: Type.String()
})

const isoTime = Type.String({ format: 'date-time' })
const filterFields = {
  cifId: Type.Optional(Type.String({ pattern: CIF_ID_PATTERN })),
  endSystem: Type.Optional(Type.String({ maxLength: 50 })),
  from: Type.Optional(isoTime),
  to: Type.Optional(isoTime),
  after: position('The last id of the previous page'),
  limit: pageLimit()
}

export const DeliveryFilters = Type.Object({ ...filterFields, state: Type.Optional(Type.Enum([...deliveryStates])) }, { additionalProperties: false })
export type DeliveryFilters = Static<typeof DeliveryFilters>

export const AttemptFilters = Type.Object(
  { ...filterFields, status: Type.Optional(Type.Enum([...attemptStatuses])), deliveryId: position('Attempts of this delivery only') },
  { additionalProperties: false }
)
export type AttemptFilters = Static<typeof AttemptFilters>

export const DeliveryCounts = Type.Object({
  counts: Type.Array(Type.Object({ endSystem: Type.String(), state: Type.Enum([...deliveryStates]), count: Type.Integer() }))
})

export const Reason = Type.Object(
  { reason: Type.String({ minLength: 3, maxLength: 500, description: 'Why, for the record' }) },
  { additionalProperties: false }
)
export const IdParams = Type.Object({ id: Type.String({ pattern: '^[1-9][0-9]{0,17}$' }) })
