import { type Static, type TSchema, Type } from 'typebox'
import { CIF_ID_PATTERN } from './cif-id.ts'
import { cloudEventSchema } from './cloud-events.ts'
import { SOURCE_SYSTEM_PATTERN } from './customer.ts'

/**
 * What the syncer tells source systems about their customers, on the topic `cif.sync.status` (key: the
 * CIF ID; `sourcesystem` names the source system that owns the customer) and, as `data`, on the callback
 * API's updates feed. Each kind of status has its CloudEvents type and, for a delivery, the state the
 * delivery is in.
 */
export const statusKinds = {
  DELIVERED: { type: 'cif.sync.delivery.succeeded', state: 'SUCCESS', description: 'An end system holds this version of the customer' },
  RETRYING: { type: 'cif.sync.delivery.retrying', state: 'RETRY_SCHEDULED', description: 'An attempt failed; another is due at `nextAttemptAt`' },
  FAILED: { type: 'cif.sync.delivery.failed', state: 'FAILED', description: 'The syncer gave up on this delivery; an operator redrives or skips it' },
  SKIPPED: {
    type: 'cif.sync.delivery.skipped',
    state: 'SKIPPED',
    description: 'An operator gave up on this delivery on purpose, or the customer was erased before it went (remarks say which)'
  },
  SUPERSEDED: {
    type: 'cif.sync.delivery.superseded',
    state: 'SUPERSEDED',
    description: 'Not sent: the end system takes the full record, and a newer version queued behind this one is sent instead (remarks name it)'
  },
  RETIRED: {
    type: 'cif.sync.delivery.retired',
    state: 'RETIRED',
    description: 'Not sent: the end system was removed from the configuration'
  },
  IN_SYNC: { type: 'cif.sync.customer.in-sync', description: 'Every end system holds this version of the customer' },
  OVERDUE: {
    type: 'cif.sync.customer.overdue',
    description: 'This version is not yet held by every end system, longer after its creation than the in-sync deadline allows'
  },
  DRIFT_FOUND: {
    type: 'cif.sync.reconciliation.drift-found',
    description: 'A reconciliation run read the customer back from an end system and found it not as the CIF published it'
  }
} as const
export type StatusKind = keyof typeof statusKinds
/** The kinds that tell of one delivery (the others tell of a customer version as a whole, or of a finding). */
export type DeliveryStatusKind = Exclude<StatusKind, 'IN_SYNC' | 'OVERDUE' | 'DRIFT_FOUND'>
export type StatusEventType = (typeof statusKinds)[StatusKind]['type']

/**
 * What a reconciliation run can find when it reads a customer's record back from an end system, in the words
 * identity-management tools use ("situations"). Declared here, once: the status message, the syncer's
 * classification, its database check and its API all take them from this list.
 */
export const reconciliationSituations = {
  IN_SYNC: 'the system holds the latest version, as the compare mapping expects it',
  MISSING: 'the syncer delivered the customer, but the system no longer holds the record (deleted, lost, restored from an old backup)',
  ALTERED: 'the system holds the record, but fields differ from what the latest version makes of them (edited by hand?)',
  STALE: 'the system holds an older version of the customer',
  UNLINKED: 'no record id of the customer in this system is known, so the record cannot be read',
  ORPHAN: 'the system holds a record for a CIF ID the CIF never published (found by listing the system)'
} as const
export type Situation = keyof typeof reconciliationSituations
/** The situations told to the customer's source system: drift of a customer it owns (an ORPHAN has no owner). */
export const toldSituations = ['MISSING', 'ALTERED', 'STALE', 'UNLINKED'] as const satisfies readonly Situation[]

export const STATUS_SOURCE = 'urn:cif-syncer:syncer'

const nullableString = (description: string) => Type.Union([Type.String(), Type.Null()], { description })
const common = {
  cifId: Type.String({ pattern: CIF_ID_PATTERN }),
  customerVersion: Type.Integer({ minimum: 1 }),
  eventId: Type.String({ format: 'uuid', description: 'The customer event this status is about' })
}

function deliveryStatusFields<K extends DeliveryStatusKind>(kind: K) {
  return {
    kind: Type.Literal(kind),
    ...common,
    endSystem: Type.String(),
    deliveryId: Type.String({ pattern: '^[1-9][0-9]*$' }),
    state: Type.Literal(statusKinds[kind].state),
    attempts: Type.Integer({ minimum: 0 }),
    externalId: nullableString("The customer's record id in the end system, once known"),
    lastError: nullableString("The end system's last error message (personal data masked)"),
    remarks: nullableString('Why, in words'),
    at: Type.String({ format: 'date-time' })
  }
}

/** The `data` of each kind of status message: one schema per kind, so consumers can validate what they get. */
export const statusData = {
  DELIVERED: Type.Object(deliveryStatusFields('DELIVERED'), { additionalProperties: false }),
  RETRYING: Type.Object(
    { ...deliveryStatusFields('RETRYING'), nextAttemptAt: Type.String({ format: 'date-time' }) },
    { additionalProperties: false }
  ),
  FAILED: Type.Object(deliveryStatusFields('FAILED'), { additionalProperties: false }),
  SKIPPED: Type.Object(deliveryStatusFields('SKIPPED'), { additionalProperties: false }),
  SUPERSEDED: Type.Object(deliveryStatusFields('SUPERSEDED'), { additionalProperties: false }),
  RETIRED: Type.Object(deliveryStatusFields('RETIRED'), { additionalProperties: false }),
  IN_SYNC: Type.Object(
    {
      kind: Type.Literal('IN_SYNC'),
      ...common,
      endSystems: Type.Array(Type.String(), { description: 'Every end system, each holding this version' }),
      at: Type.String({ format: 'date-time' })
    },
    { additionalProperties: false }
  ),
  OVERDUE: Type.Object(
    {
      kind: Type.Literal('OVERDUE'),
      ...common,
      createdAt: Type.String({ format: 'date-time', description: 'When the CIF service made this version: the deadline counts from here' }),
      deadlineMs: Type.Integer({ minimum: 1, description: 'The in-sync deadline it missed (SYNCER_IN_SYNC_DEADLINE_MS)' }),
      waitingFor: Type.Array(Type.String(), { description: 'The end systems whose delivery of this version is still open' }),
      at: Type.String({ format: 'date-time' })
    },
    { additionalProperties: false }
  ),
  DRIFT_FOUND: Type.Object(
    {
      kind: Type.Literal('DRIFT_FOUND'),
      ...common,
      endSystem: Type.String(),
      runId: Type.String({ pattern: '^[1-9][0-9]*$', description: 'The reconciliation run that found it' }),
      findingId: Type.String({ pattern: '^[1-9][0-9]*$' }),
      situation: Type.Enum([...toldSituations], {
        description: toldSituations.map((situation) => `${situation}: ${reconciliationSituations[situation]}`).join('; ')
      }),
      fields: Type.Array(Type.String(), { description: 'ALTERED and STALE: the fields that differ, in the end system’s shape (names only)' }),
      at: Type.String({ format: 'date-time' })
    },
    { additionalProperties: false }
  )
} as const satisfies Record<StatusKind, TSchema>
export type StatusData<K extends StatusKind = StatusKind> = Static<(typeof statusData)[K]>

/** Any kind's `data`, e.g. an entry of the callback API's updates feed. */
export const AnyStatusData = Type.Union([
  statusData.DELIVERED,
  statusData.RETRYING,
  statusData.FAILED,
  statusData.SKIPPED,
  statusData.SUPERSEDED,
  statusData.RETIRED,
  statusData.IN_SYNC,
  statusData.OVERDUE,
  statusData.DRIFT_FOUND
])

/** A status message's envelope (CloudEvents 1.0, structured JSON), as published and as its JSON Schema says. */
export interface StatusEvent<K extends StatusKind = StatusKind> {
  specversion: '1.0'
  id: string
  source: typeof STATUS_SOURCE
  type: (typeof statusKinds)[K]['type']
  subject: string
  time: string
  datacontenttype: 'application/json'
  sourcesystem: string
  data: StatusData<K>
}

export function statusEvent<K extends StatusKind>(kind: K, id: string, ownerSourceSystem: string, data: StatusData<K>): StatusEvent<K> {
  return {
    specversion: '1.0',
    id,
    source: STATUS_SOURCE,
    type: statusKinds[kind].type,
    subject: data.cifId,
    time: data.at,
    datacontenttype: 'application/json',
    sourcesystem: ownerSourceSystem,
    data
  }
}

/** The JSON Schema of one kind's envelope; `schemas/events/<type>.json` is written from it. */
export function statusEventSchema(kind: StatusKind): TSchema {
  const { type, description } = statusKinds[kind]
  return cloudEventSchema(
    STATUS_SOURCE,
    type,
    {
      sourcesystem: Type.String({ pattern: SOURCE_SYSTEM_PATTERN, description: 'The source system that owns the customer' }),
      data: statusData[kind]
    },
    { $id: `urn:cif-syncer:schemas:${type}:1`, description }
  )
}
