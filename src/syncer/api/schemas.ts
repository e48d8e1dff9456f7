import { type Static, Type } from 'typebox'
import { CIF_ID_PATTERN } from '../../contracts/cif-id.ts'
import { AnyStatusData } from '../../contracts/sync-status-events.ts'
import { BULK_REDRIVE_LIMIT_MAX } from '../../platform/config.ts'
import { END_SYSTEM_NAME_PATTERN } from '../delivery/end-systems-config.ts'
import { requestKinds, requestStateMeanings, requestStates } from '../delivery/four-eyes.ts'
import { attemptStatuses, customerSyncStates, deliveryStates, stateMeanings, transitions } from '../delivery/states.ts'

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
  completedAt: nullableString,
  traceId: Type.Optional(
    Type.Union([Type.String({ pattern: '^[0-9a-f]{32}$' }), Type.Null()], {
      description:
        "The trace (W3C Trace Context) of the change this delivery carries, from the CIF service's create or change on: find it in your tracing backend. In the admin API's lists; null for events stored untraced."
    })
  )
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
  finishedAt: Type.String(),
  traceId: Type.Union([Type.String({ pattern: '^[0-9a-f]{32}$' }), Type.Null()], {
    description: "The trace of the change (the create's), as the end system received it in `traceparent`; null for attempts recorded untraced"
  }),
  spanId: Type.Union([Type.String({ pattern: '^[0-9a-f]{16}$' }), Type.Null()], { description: "The attempt's own span in that trace" })
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
// ASCII digits only (no sign, exponent or other script's digits), at most 18: no position is beyond a bigint,
// whose largest, 9223372036854775807, has 19.
const position = (description: string) => Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$', description }))
/** A row's id: what `position` allows, without the 0 and the leading zeros no id has. */
const ID_PATTERN = '^[1-9][0-9]{0,17}$'

/**
 * An instant as RFC 3339 writes it, narrowed to what PostgreSQL and JavaScript read alike, so that none gets
 * past the schema to fail as a 500: `format: 'date-time'` alone lets through a leap second (`23:59:60`, no
 * Date), an offset without minutes (`+05`, no Date) or without a colon, a space for `T`, year 0000 (which
 * PostgreSQL has not), offsets to ±23:59 (PostgreSQL stops at ±15:59) and fractions of any length. Here:
 * years 0001-9999, seconds 00-59, a fraction of up to 9 digits, the offset `Z` or `±hh:mm` to ±15:59; the
 * format still checks that the day is one of its month. Year, month and day are its groups 1-3.
 */
export const INSTANT_PATTERN =
  '^(?!0000)([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?(?:Z|[+-](?:0[0-9]|1[0-5]):[0-5][0-9])$'
const instant = (description: string) =>
  Type.Optional(Type.String({ format: 'date-time', pattern: INSTANT_PATTERN, description: `${description}; RFC 3339, e.g. 2026-01-31T00:00:00Z` }))

/**
 * Free text kept for the record (operator_action, a delivery's remarks, logs and the status feed): any script
 * and ordinary spaces, but no control, format or unassigned character and no line or paragraph separator, and
 * a visible character first and last. A NUL is more than PostgreSQL text can hold; a newline, an escape
 * sequence or a bidi override would let a reason forge a line or hide its words where it is shown. A reason is
 * a sentence or two, so a newline buys nothing worth that.
 */
const REMARK_PATTERN = '^[^\\p{C}\\p{Z}](?:[^\\p{C}\\p{Zl}\\p{Zp}]*[^\\p{C}\\p{Z}])?$'

export const UpdatesQuery = Type.Object(
  { after: position('The `next` of the previous answer'), limit: pageLimit('1-500, default 100') },
  { additionalProperties: false }
)
export type UpdatesQuery = Static<typeof UpdatesQuery>

export const Updates = Type.Object({
  updates: Type.Array(AnyStatusData, { description: 'Each status as `data` of its message on cif.sync.status' }),
  next: Type.String()
})

/** Which deliveries: the list's filter, and a bulk redrive's selection. */
const selectionFields = {
  cifId: Type.Optional(Type.String({ pattern: CIF_ID_PATTERN, description: '11 digits, the last a Luhn check digit' })),
  // An end system's name has neither spaces nor control characters; a NUL would reach PostgreSQL as an error.
  endSystem: Type.Optional(Type.String({ maxLength: 50, pattern: '^[^\\p{C}\\p{Z}]+$' })),
  from: instant('Created (deliveries) or started (attempts) at or after this instant'),
  to: instant('Created (deliveries) or started (attempts) before this instant')
}
const filterFields = { ...selectionFields, after: position('The last id of the previous page'), limit: pageLimit() }

export const DeliveryFilters = Type.Object({ ...filterFields, state: Type.Optional(Type.Enum([...deliveryStates])) }, { additionalProperties: false })
export type DeliveryFilters = Static<typeof DeliveryFilters>
/** Which deliveries, whatever page: what a bulk redrive selects by. */
export type DeliverySelection = Omit<DeliveryFilters, 'after' | 'limit'>

export const AttemptFilters = Type.Object(
  {
    ...filterFields,
    status: Type.Optional(Type.Enum([...attemptStatuses])),
    deliveryId: Type.Optional(Type.String({ pattern: ID_PATTERN, description: 'Attempts of this delivery only' }))
  },
  { additionalProperties: false }
)
export type AttemptFilters = Static<typeof AttemptFilters>

export const UnreadableMessageFilters = Type.Object(
  {
    // A message key is whatever the producer set; the syncer's topic is keyed by CIF ID.
    key: Type.Optional(Type.String({ maxLength: 64, pattern: '^[^\\p{C}]+$', description: 'The message key (a CIF ID on this topic)' })),
    from: instant('Received at or after this instant'),
    to: instant('Received before this instant'),
    after: position('The last id of the previous page'),
    limit: pageLimit()
  },
  { additionalProperties: false }
)
export type UnreadableMessageFilters = Static<typeof UnreadableMessageFilters>

/** A message the intake kept instead of delivering, and why; never its content, which may hold anyone's personal data. */
export const UnreadableMessage = Type.Object({
  id: Type.String(),
  topic: Type.String(),
  partition: Type.Integer(),
  offset: Type.String(),
  key: Type.Union([Type.String(), Type.Null()]),
  reason: Type.String(),
  receivedAt: Type.String({ format: 'date-time' }),
  characters: Type.Union([Type.Integer(), Type.Null()], {
    description: 'The length of the content kept (in the unreadable_message table), null once it is past its retention'
  })
})
export type UnreadableMessage = Static<typeof UnreadableMessage>

export const EndSystemPause = Type.Object({ endSystem: Type.String(), pausedBy: Type.String(), reason: Type.String(), pausedAt: Type.String() })

export const EndSystem = Type.Object({
  name: Type.String(),
  coalesce: Type.Boolean({ description: 'Of a customer’s queued versions only the newest is sent (creates always go)' }),
  paused: Type.Union([EndSystemPause, Type.Null()], { description: 'Who paused it, when and why; null while it runs' })
})
export type EndSystem = Static<typeof EndSystem>

export const EndSystemParams = Type.Object({
  name: Type.String({ pattern: END_SYSTEM_NAME_PATTERN, description: 'As the end systems file names it' })
})

export const DeliveryCounts = Type.Object({
  counts: Type.Array(Type.Object({ endSystem: Type.String(), state: Type.Enum([...deliveryStates]), count: Type.Integer() })),
  paused: Type.Array(EndSystemPause, { description: 'The end systems paused now: their deliveries wait unattempted' }),
  overdue: Type.Object(
    {
      count: Type.Integer({ description: 'Customer versions not yet in every end system, past the in-sync deadline after their creation' }),
      oldestCreatedAt: Type.Union([Type.String(), Type.Null()], { description: 'When the oldest of them was made' }),
      deadlineMs: Type.Integer({ description: 'SYNCER_IN_SYNC_DEADLINE_MS' })
    },
    { description: 'The in-sync deadline' }
  )
})

const reason = Type.String({
  minLength: 3,
  maxLength: 500,
  pattern: REMARK_PATTERN,
  description: 'Why, for the record: one line, no control characters'
})
export const Reason = Type.Object({ reason }, { additionalProperties: false })
export const IdParams = Type.Object({ id: Type.String({ pattern: ID_PATTERN }) })

/** A route that takes no query parameters refuses any, as the others refuse an unknown one. */
export const NoQuery = Type.Object({}, { additionalProperties: false })

/** The deliveries a bulk redrive may select by filter: the list's filter, with the states a redrive applies to. */
const RedriveFilter = Type.Object(
  { ...selectionFields, state: Type.Optional(Type.Enum([...transitions.redrive.from])) },
  { additionalProperties: false, description: 'As GET /deliveries filters; the FAILED deliveries it matches are selected' }
)

export const BulkRedrive = Type.Object(
  {
    reason,
    deliveryIds: Type.Optional(
      Type.Array(Type.String({ pattern: ID_PATTERN }), {
        minItems: 1,
        maxItems: BULK_REDRIVE_LIMIT_MAX,
        uniqueItems: true,
        description: 'These FAILED deliveries (each must be FAILED now)'
      })
    ),
    filter: Type.Optional(RedriveFilter)
  },
  {
    additionalProperties: false,
    description: 'deliveryIds, filter, or both (then the deliveries of either); at most SYNCER_BULK_REDRIVE_LIMIT deliveries in all'
  }
)
export type BulkRedrive = Static<typeof BulkRedrive>

export const ActionRequest = Type.Object({
  requestId: Type.String(),
  kind: Type.Enum(Object.keys(requestKinds) as (keyof typeof requestKinds)[]),
  state: Type.Enum([...requestStates], { description: listed(requestStateMeanings) }),
  requestedBy: Type.String(),
  reason: Type.String(),
  filter: Type.Union([RedriveFilter, Type.Null()], { description: "A bulk redrive's filter, as it was asked" }),
  deliveryIds: Type.Array(Type.String(), { description: 'The deliveries selected when it was requested' }),
  appliedTo: Type.Array(Type.String(), { description: 'Those the approval moved: the ones that still qualified then' }),
  requestedAt: Type.String(),
  expiresAt: Type.String(),
  decidedBy: nullableString,
  decidedAt: nullableString,
  decisionReason: Type.Union([Type.String(), Type.Null()], { description: 'Why it was rejected' })
})
export type ActionRequest = Static<typeof ActionRequest>

export const RequestFilters = Type.Object(
  {
    state: Type.Optional(Type.Enum([...requestStates])),
    after: position('The last id of the previous page'),
    limit: pageLimit()
  },
  { additionalProperties: false }
)
export type RequestFilters = Static<typeof RequestFilters>
