import { isDeepStrictEqual } from 'node:util'
import { reconciliationSituations, type Situation } from '../../contracts/sync-status-events.ts'
import type { DeliveryOperation } from '../tables.ts'

export type { Situation }
export const situationNames = Object.keys(reconciliationSituations) as Situation[]

/** How each situation is repaired: a normal delivery of the latest version, or nothing (reported only). */
export const repairs = {
  IN_SYNC: null,
  MISSING: 'create',
  UNLINKED: 'create',
  ALTERED: 'update',
  STALE: 'update',
  ORPHAN: null
} as const satisfies Record<Situation, DeliveryOperation | null>

export type RepairableSituation = { [S in Situation]: (typeof repairs)[S] extends null ? never : S }[Situation]
export const isRepairable = (situation: Situation): situation is RepairableSituation => repairs[situation] !== null
export const repairableSituations: readonly RepairableSituation[] = situationNames.filter(isRepairable)

/** What reading one customer's record back gave. */
export type ReadBack = { kind: 'unlinked' } | { kind: 'absent' } | { kind: 'found'; record: unknown; heldVersion: number | undefined }

/** One field that differs: its path in the system's shape, and both values (masked before they are stored). */
export interface Difference {
  field: string
  expected: unknown
  held: unknown
}

/** The classification of one (customer, end system) pair. */
export type Classification =
  | { situation: 'IN_SYNC' }
  | { situation: 'MISSING' }
  | { situation: 'UNLINKED' }
  | { situation: 'STALE'; heldVersion: number; differences: Difference[] }
  | { situation: 'ALTERED'; differences: Difference[] }

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * The fields of `expected` that `held` does not hold alike, by path ("name.first"). Only what the compare
 * mapping names is compared: a system's own fields (its record id, timestamps) are not the CIF's business.
 * Objects are walked into; anything else (arrays included) is compared whole. A field the mapping leaves
 * out (JSONata drops an undefined value) is not expected; an expected null matches an absent field.
 */
export function differingFields(expected: unknown, held: unknown, path = ''): Difference[] {
  if (isPlainObject(expected)) {
    const heldObject = isPlainObject(held) ? held : {}
    if (!isPlainObject(held) && path) return [{ field: path, expected, held }]
    return Object.keys(expected)
      .sort()
      .flatMap((key) => differingFields(expected[key], heldObject[key], path ? `${path}.${key}` : key))
  }
  if ((expected ?? null) === null && (held ?? null) === null) return []
  return isDeepStrictEqual(expected, held) ? [] : [{ field: path || '(record)', expected, held }]
}

/**
 * Where a customer stands in one system: `expected` is what the compare mapping makes of the customer's
 * latest version, `latestVersion` that version's number. A record holding an older version is STALE even
 * when its fields happen to match (the version is what the system will be asked for next); one at the
 * latest version (or that keeps no version) with any field off is ALTERED.
 */
export function classify(read: ReadBack, expected: unknown, latestVersion: number): Classification {
  switch (read.kind) {
    case 'unlinked':
      return { situation: 'UNLINKED' }
    case 'absent':
      return { situation: 'MISSING' }
    case 'found': {
      const differences = differingFields(expected, read.record)
      if (read.heldVersion !== undefined && read.heldVersion < latestVersion) {
        return { situation: 'STALE', heldVersion: read.heldVersion, differences }
      }
      return differences.length ? { situation: 'ALTERED', differences } : { situation: 'IN_SYNC' }
    }
  }
}

/** The CIF IDs a system lists that the CIF never published: each an ORPHAN. */
export function orphans(listed: readonly string[], known: ReadonlySet<string>): string[] {
  return [...new Set(listed)].filter((cifId) => !known.has(cifId))
}
