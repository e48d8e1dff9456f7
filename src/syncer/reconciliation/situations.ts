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
export type ReadBack =
  | { kind: 'unlinked' }
  | { kind: 'absent' }
  /**
   * `heldCifId`: the CIF ID the record says it is for (`read.cifId`), `heldExternalId`: its record id
   * (`read.externalId`), each when the configuration says where it is.
   */
  | { kind: 'found'; record: unknown; heldVersion: number | undefined; heldCifId?: string | undefined; heldExternalId?: string | undefined }

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
 * Where customer `cifId` stands in one system: `expected` is what the compare mapping makes of its latest
 * version, `latestVersion` that version's number. A record holding an older version is STALE even when its
 * fields happen to match (the version is what the system will be asked for next); one at the latest version
 * (or that keeps no version) with any field off is ALTERED. A record found under the customer's record id but
 * for another CIF ID (the id given again after a restore) is not this customer's: MISSING, so that a repair
 * creates the customer's own record and never overwrites another customer's with this one's data.
 */
export function classify(read: ReadBack, expected: unknown, latestVersion: number, cifId: string): Classification {
  switch (read.kind) {
    case 'unlinked':
      return { situation: 'UNLINKED' }
    case 'absent':
      return { situation: 'MISSING' }
    case 'found': {
      if (read.heldCifId !== undefined && read.heldCifId !== cifId) return { situation: 'MISSING' }
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

/** Every text in a value (object keys aside), for `shownDifference`'s list of what may be shown. */
export function textsOf(value: unknown): string[] {
  if (typeof value === 'string') return [value]
  if (Array.isArray(value)) return value.flatMap(textsOf)
  if (isPlainObject(value)) return Object.values(value).flatMap(textsOf)
  return []
}

/**
 * A differing value as a finding stores and shows it (JSON). The customer's own personal data is masked as
 * masking.ts masks it (`mask`); any other text is shown only when the compare mapping's own answer holds it
 * and masking leaves it alone (`plain`: a country code, a document kind). Anything else (typed into the
 * system by hand, or another customer's) becomes "***": nothing says it is not personal data. Numbers,
 * booleans and the value's shape stay, so that a version or a missing field can still be told apart.
 */
export function shownDifference(value: unknown, mask: (text: string) => string, plain: ReadonlySet<string>): string {
  const masked = (v: unknown): unknown => {
    if (typeof v === 'string') {
      const byMasker = mask(v)
      if (byMasker !== v) return byMasker
      return plain.has(v) ? v : '***'
    }
    if (Array.isArray(v)) return v.map(masked)
    if (isPlainObject(v)) return Object.fromEntries(Object.entries(v).map(([key, inner]) => [key, masked(inner)]))
    return v
  }
  return value === undefined ? '(absent)' : JSON.stringify(masked(value))
}
