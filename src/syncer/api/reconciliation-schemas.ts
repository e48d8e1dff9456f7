import { type Static, Type } from 'typebox'
import { CIF_ID_PATTERN } from '../../contracts/cif-id.ts'
import { reconciliationSituations } from '../../contracts/sync-status-events.ts'
import { deliveryStates } from '../delivery/states.ts'
import { runKinds, runStates } from '../reconciliation/runs.ts'
import { repairableSituations, type Situation } from '../reconciliation/situations.ts'
import { INSTANT_PATTERN } from './schemas.ts'

const listed = (meanings: Record<string, string>) =>
  Object.entries(meanings)
    .map(([name, meaning]) => `${name}: ${meaning}`)
    .join('; ')
const situationNames = Object.keys(reconciliationSituations) as Situation[]
const endSystemName = Type.String({ maxLength: 50, pattern: '^[a-z][a-z0-9-]{1,40}$' })
const cifId = Type.String({ pattern: CIF_ID_PATTERN, description: '11 digits, the last a Luhn check digit' })

export const ReconcileRequest = Type.Object(
  {
    endSystems: Type.Optional(
      Type.Array(endSystemName, { minItems: 1, uniqueItems: true, description: 'These systems only; every system that can be read back when absent' })
    ),
    cifIds: Type.Optional(Type.Array(cifId, { minItems: 1, maxItems: 10_000, uniqueItems: true, description: 'These customers only' })),
    since: Type.Optional(
      Type.String({ format: 'date-time', pattern: INSTANT_PATTERN, description: 'Customers whose latest version arrived at or after this instant' })
    ),
    repair: Type.Optional(
      Type.Array(Type.Enum([...repairableSituations]), {
        uniqueItems: true,
        description: "Situations repaired as soon as found (the systems' own `reconcile.repair` when absent)"
      })
    )
  },
  { additionalProperties: false }
)
export type ReconcileRequest = Static<typeof ReconcileRequest>

export const BackfillRequest = Type.Object({ endSystem: endSystemName }, { additionalProperties: false })

export const RunFilters = Type.Object(
  {
    kind: Type.Optional(Type.Enum(Object.keys(runKinds) as (keyof typeof runKinds)[])),
    after: Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$', description: 'The last id of the previous page' }))
  },
  { additionalProperties: false }
)
export type RunFilters = Static<typeof RunFilters>

export const FindingFilters = Type.Object(
  {
    situation: Type.Optional(Type.Enum(situationNames)),
    after: Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$', description: 'The last id of the previous page' })),
    limit: Type.Optional(Type.String({ pattern: '^(?:[1-9]|[1-9][0-9]|[1-4][0-9]{2}|500)$', description: '1-500, default 100' }))
  },
  { additionalProperties: false }
)
export type FindingFilters = Static<typeof FindingFilters>

const count = Type.Integer({ minimum: 0 })
export const Run = Type.Object({
  runId: Type.String(),
  kind: Type.Enum(Object.keys(runKinds) as (keyof typeof runKinds)[], { description: listed(runKinds) }),
  state: Type.Enum([...runStates]),
  endSystems: Type.Array(Type.String()),
  cifIds: Type.Union([Type.Array(Type.String()), Type.Null()]),
  since: Type.Union([Type.String(), Type.Null()]),
  repair: Type.Array(Type.String(), { description: 'Situations this run repairs as soon as found' }),
  requestedBy: Type.String(),
  startedAt: Type.String(),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
  counts: Type.Record(Type.String(), count, {
    description: `Pairs (customer, end system) by situation; underWay: not judged while a delivery of it was under way. ${listed(reconciliationSituations)}`
  }),
  errors: Type.Integer({ description: 'Pairs that could not be read back (the system failed to answer, or the customer’s data is gone)' }),
  progress: Type.Object(
    {
      done: count,
      total: Type.Union([count, Type.Null()]),
      perSecond: Type.Number(),
      secondsLeft: Type.Union([count, Type.Null()])
    },
    { description: 'Customers compared (RECONCILE) or delivered (BACKFILL) of the total, the rate so far and the time left at that rate' }
  ),
  queued: Type.Integer({ description: 'BACKFILL: deliveries asked for so far' }),
  deliveries: Type.Record(Type.String(), count, {
    description: `The deliveries this run asked for (repairs, backfill), by state (${deliveryStates.join(', ')}); states with none left out`
  })
})
export type Run = Static<typeof Run>

export const Finding = Type.Object({
  findingId: Type.String(),
  runId: Type.String(),
  cifId: Type.String(),
  endSystem: Type.String(),
  situation: Type.Enum(situationNames),
  customerVersion: Type.Union([Type.Integer(), Type.Null()], { description: 'The latest version, compared against' }),
  heldVersion: Type.Union([Type.Integer(), Type.Null()], { description: 'The version the system said it holds' }),
  externalId: Type.Union([Type.String(), Type.Null()]),
  differences: Type.Union([
    Type.Array(Type.Object({ field: Type.String(), expected: Type.String(), held: Type.String() }), {
      description: "Each differing field, in the end system's shape, with both values as JSON, personal data masked"
    }),
    Type.Null()
  ]),
  repairDeliveryId: Type.Union([Type.String(), Type.Null()], { description: 'The delivery that repairs it, once asked for' }),
  foundAt: Type.String()
})
export type Finding = Static<typeof Finding>

export const RepairResult = Type.Object({
  deliveryIds: Type.Array(Type.String(), { description: 'The repair deliveries made (none for ORPHAN or repaired findings)' })
})
