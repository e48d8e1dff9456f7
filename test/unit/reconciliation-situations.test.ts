import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { reconciliationSituations } from '../../src/contracts/sync-status-events.ts'
import { progress } from '../../src/syncer/reconciliation/runs.ts'
import {
  classify,
  differingFields,
  isRepairable,
  orphans,
  repairableSituations,
  repairs,
  shownDifference,
  textsOf
} from '../../src/syncer/reconciliation/situations.ts'

/** A record in an end system's own shape: nested objects of scalars and arrays, as a compare mapping makes. */
const CIF_ID = '10000000009'
const scalar = fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.boolean())
const value = fc.oneof(scalar, fc.array(scalar, { maxLength: 3 }))
const record = fc.dictionary(
  fc.stringMatching(/^[a-z]{1,6}$/),
  fc.oneof(value, fc.dictionary(fc.stringMatching(/^[a-z]{1,6}$/), value, { minKeys: 1, maxKeys: 3 })),
  { minKeys: 1, maxKeys: 6 }
)

/** Every leaf path of a record, as differingFields names them. */
const leafPaths = (r: Record<string, unknown>, prefix = ''): string[] =>
  Object.entries(r).flatMap(([key, v]) =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? leafPaths(v as Record<string, unknown>, `${prefix}${key}.`) : [`${prefix}${key}`]
  )
const setPath = (r: Record<string, unknown>, path: string, v: unknown): Record<string, unknown> => {
  const copy = structuredClone(r)
  const keys = path.split('.')
  let at: Record<string, unknown> = copy
  for (const key of keys.slice(0, -1)) at = at[key] as Record<string, unknown>
  at[keys.at(-1)!] = v
  return copy
}

describe('classifying a customer read back from an end system', () => {
  it('is IN_SYNC when the system holds every compared field alike, whatever else it holds', () => {
    fc.assert(
      fc.property(record, fc.dictionary(fc.stringMatching(/^_[a-z]{1,5}$/), scalar), fc.integer({ min: 1, max: 50 }), (expected, own, version) => {
        const held = { ...structuredClone(expected), ...own }
        expect(classify({ kind: 'found', record: held, heldVersion: version }, expected, version, CIF_ID)).toEqual({ situation: 'IN_SYNC' })
        expect(classify({ kind: 'found', record: held, heldVersion: undefined }, expected, version, CIF_ID)).toEqual({ situation: 'IN_SYNC' })
      })
    )
  })

  it('is ALTERED naming exactly the field that was changed, and both its values', () => {
    fc.assert(
      fc.property(
        record.chain((expected) => fc.tuple(fc.constant(expected), fc.constantFrom(...leafPaths(expected)), scalar)),
        ([expected, path, altered]) => {
          const before = path.split('.').reduce<unknown>((at, key) => (at as Record<string, unknown>)[key], expected)
          fc.pre(JSON.stringify(before) !== JSON.stringify(altered))
          const found = classify({ kind: 'found', record: setPath(expected, path, altered), heldVersion: 3 }, expected, 3, CIF_ID)
          expect(found).toEqual({ situation: 'ALTERED', differences: [{ field: path, expected: before, held: altered }] })
        }
      )
    )
  })

  it('is STALE when the system holds an older version, with the fields that differ', () => {
    fc.assert(
      fc.property(record, fc.integer({ min: 2, max: 100 }), fc.integer({ min: 1, max: 99 }), (expected, latest, older) => {
        fc.pre(older < latest)
        const found = classify({ kind: 'found', record: expected, heldVersion: older }, expected, latest, CIF_ID)
        expect(found).toEqual({ situation: 'STALE', heldVersion: older, differences: [] })
      })
    )
  })

  it('is MISSING when the system says the record is not there, UNLINKED when no record id is known', () => {
    fc.assert(
      fc.property(record, fc.integer({ min: 1 }), (expected, version) => {
        expect(classify({ kind: 'absent' }, expected, version, CIF_ID)).toEqual({ situation: 'MISSING' })
        expect(classify({ kind: 'unlinked' }, expected, version, CIF_ID)).toEqual({ situation: 'UNLINKED' })
      })
    )
  })

  it('is MISSING when the record under the customer’s record id is another customer’s, however alike its fields', () => {
    fc.assert(
      fc.property(record, fc.integer({ min: 1 }), (expected, version) => {
        const other = { kind: 'found' as const, record: expected, heldVersion: version, heldCifId: '10000000017' }
        expect(classify(other, expected, version, CIF_ID)).toEqual({ situation: 'MISSING' })
        expect(classify({ ...other, heldCifId: CIF_ID }, expected, version, CIF_ID)).toEqual({ situation: 'IN_SYNC' })
      })
    )
  })

  it('shows of a differing value only the texts the compare mapping itself holds unmasked: never one typed by hand or another customer’s', () => {
    const mask = (text: string) => text.replaceAll('Ada', '***')
    const expected = { name: 'Ada', country: 'SG', documents: [{ kind: 'NATIONAL_ID', number: 'S0417635D' }], version: 3 }
    const plain = new Set(textsOf(expected).filter((text) => mask(text) === text))
    expect(shownDifference(expected.name, mask, plain)).toBe('"***"')
    expect(shownDifference({ kind: 'NATIONAL_ID', number: 'T7654321Z', country: 'SG', version: 2 }, mask, new Set(['NATIONAL_ID', 'SG']))).toBe(
      '{"kind":"NATIONAL_ID","number":"***","country":"SG","version":2}'
    )
    expect(shownDifference(undefined, mask, plain)).toBe('(absent)')
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), (typed, known) => {
        fc.pre(typed !== known && !typed.includes('Ada'))
        expect(JSON.parse(shownDifference({ field: [typed] }, mask, new Set([known])))).toEqual({ field: ['***'] })
      })
    )
  })

  it('takes a field the mapping leaves out as not expected, and an expected null as matching an absent field', () => {
    expect(differingFields({ name: { first: 'A', middle: null } }, { name: { first: 'A' } })).toEqual([])
    expect(differingFields({ name: { first: 'A' } }, { name: 'A' })).toEqual([{ field: 'name', expected: { first: 'A' }, held: 'A' }])
    expect(differingFields({ documents: [{ n: 1 }] }, { documents: [{ n: 1 }, { n: 2 }] })).toEqual([
      { field: 'documents', expected: [{ n: 1 }], held: [{ n: 1 }, { n: 2 }] }
    ])
    expect(differingFields({ email: 'a@b.c' }, null)).toEqual([{ field: 'email', expected: 'a@b.c', held: undefined }])
  })
})

describe('situations', () => {
  it('repairs MISSING and UNLINKED with a create, ALTERED and STALE with an update, and reports ORPHAN only', () => {
    expect(repairs).toEqual({ IN_SYNC: null, MISSING: 'create', UNLINKED: 'create', ALTERED: 'update', STALE: 'update', ORPHAN: null })
    expect(repairableSituations).toEqual((Object.keys(reconciliationSituations) as (keyof typeof reconciliationSituations)[]).filter(isRepairable))
    expect(repairableSituations).not.toContain('ORPHAN')
  })

  it('finds as ORPHAN exactly the listed CIF IDs the CIF never published, each once', () => {
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[0-9]{3}$/)), fc.array(fc.stringMatching(/^[0-9]{3}$/)), (listed, known) => {
        const found = orphans(listed, new Set(known))
        expect(new Set(found)).toEqual(new Set(listed.filter((id) => !known.includes(id))))
        expect(found).toHaveLength(new Set(found).size)
      })
    )
  })
})

describe('progress of a run', () => {
  it('says done of total, the rate so far and the time left at that rate', () => {
    const start = new Date('2026-11-27T00:00:00Z')
    expect(progress(50, 200, start, new Date('2026-11-27T00:00:10Z'))).toEqual({ done: 50, total: 200, perSecond: 5, secondsLeft: 30 })
    expect(progress(0, 200, start, new Date('2026-11-27T00:00:10Z')).secondsLeft).toBeNull()
    expect(progress(200, 200, start, new Date('2026-11-27T00:00:10Z')).secondsLeft).toBe(0)
  })
})
