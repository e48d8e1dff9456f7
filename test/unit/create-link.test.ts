import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { type CreateAnswer, type Lookup, linkCreate, type ReadBackWay, shouldReadBack } from '../../src/syncer/delivery/create-link.ts'

const CIF_ID = '10000000009'
const recordId = fc.constantFrom('CB-1', 'CB-2', 'CRM-7')
const answer: fc.Arbitrary<CreateAnswer> = fc.record({
  said: fc.constantFrom('created' as const, 'exists' as const),
  recordId: fc.oneof(
    recordId.map((id) => ({ kind: 'in-answer' as const, id })),
    fc.constantFrom('not-json' as const, 'not-in-answer' as const).map((why) => ({ kind: 'none' as const, why }))
  )
})
const way: fc.Arbitrary<ReadBackWay> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.constant({ kind: 'by-record-id' as const }),
  fc.boolean().map((givesRecordId) => ({ kind: 'by-cif-id' as const, givesRecordId }))
)
const lookup: fc.Arbitrary<Lookup> = fc.oneof(
  fc.constant({ kind: 'not-read' as const }),
  fc.record({
    kind: fc.constant('found' as const),
    recordId: fc.option(recordId, { nil: undefined }),
    cifId: fc.constantFrom(undefined, CIF_ID, '10000000017')
  }),
  fc.constant({ kind: 'absent' as const }),
  fc.constant({ kind: 'error' as const, message: 'crm could not be read: timed out' })
)

/** A lookup as the lane makes it: read only when shouldReadBack says so. */
const asLaneDoes = fc
  .tuple(answer, way, lookup)
  .map(([a, w, l]) => ({ answer: a, lookup: shouldReadBack(a, w) ? l : ({ kind: 'not-read' } as Lookup) }))

describe('linking a create to the end system’s record', () => {
  it('is SUCCESS only with a record id: from the answer, or read back as this customer’s', () => {
    fc.assert(
      fc.property(answer, lookup, (a, l) => {
        const link = linkCreate(a, l, 'crm', CIF_ID)
        if (link.outcome !== 'success') return link.externalId === null
        const fromAnswer = a.recordId.kind === 'in-answer' ? a.recordId.id : undefined
        const fromRead = l.kind === 'found' && (l.cifId === undefined || l.cifId === CIF_ID) ? (l.recordId ?? fromAnswer) : undefined
        return link.externalId !== null && (l.kind === 'not-read' ? link.externalId === fromAnswer : link.externalId === fromRead)
      })
    )
  })

  it('sends a create again only when reading back showed no record (no duplicate made blindly)', () => {
    fc.assert(
      fc.property(answer, lookup, (a, l) => {
        const link = linkCreate(a, l, 'crm', CIF_ID)
        return !(link.outcome === 'retry' && a.said === 'created') || l.kind === 'absent'
      })
    )
  })

  it('never takes a 409 for SUCCESS when the read back finds nothing or another customer’s record', () => {
    fc.assert(
      fc.property(answer, lookup, (a, l) => {
        const link = linkCreate({ ...a, said: 'exists' }, l, 'crm', CIF_ID)
        const notThisCustomer = l.kind === 'absent' || (l.kind === 'found' && l.cifId !== undefined && l.cifId !== CIF_ID)
        return !notThisCustomer || link.outcome === 'fail'
      })
    )
  })

  it('reads back only what it can, and never a 2xx that holds its id (the common case costs no read)', () => {
    fc.assert(
      fc.property(answer, way, (a, w) => {
        const read = shouldReadBack(a, w)
        if (w.kind === 'none') return !read
        if (a.said === 'created' && a.recordId.kind === 'in-answer') return !read
        if (a.recordId.kind === 'none') return read === (w.kind === 'by-cif-id' && w.givesRecordId)
        return read
      })
    )
  })

  it('gives remarks naming the system and an action whenever it does not succeed, never another customer’s CIF ID', () => {
    fc.assert(
      fc.property(asLaneDoes, ({ answer: a, lookup: l }) => {
        const link = linkCreate(a, l, 'crm', CIF_ID)
        return (
          link.remarks.startsWith('crm ') &&
          !link.remarks.includes('10000000017') &&
          (link.outcome !== 'fail' || /redrive or skip/.test(link.remarks))
        )
      })
    )
  })

  it('says in words what happened', () => {
    const created = (id?: string): CreateAnswer => ({
      said: 'created',
      recordId: id ? { kind: 'in-answer', id } : { kind: 'none', why: 'not-in-answer' }
    })
    expect(linkCreate(created('CB-1'), { kind: 'not-read' }, 'crm', CIF_ID)).toEqual({
      outcome: 'success',
      externalId: 'CB-1',
      remarks: 'crm accepted the create'
    })
    expect(linkCreate(created(), { kind: 'absent' }, 'crm', CIF_ID)).toEqual({
      outcome: 'retry',
      externalId: null,
      remarks: 'crm accepted the create, but its answer held no record id and read back it holds no record of this customer: sent again'
    })
    expect(linkCreate(created(), { kind: 'error', message: 'crm could not be read: timed out' }, 'crm', CIF_ID)).toMatchObject({
      outcome: 'fail',
      remarks:
        'crm accepted the create, but its answer held no record id and it could not be read back to find it (crm could not be read: timed out); not sent again, as a second create could make a duplicate record: check crm, then redrive or skip'
    })
    expect(
      linkCreate(
        { said: 'exists', recordId: { kind: 'none', why: 'not-json' } },
        { kind: 'error', message: 'crm could not be read: timed out' },
        'crm',
        CIF_ID
      )
    ).toMatchObject({
      outcome: 'retry',
      remarks: 'crm answered 409 (exists already) to the create, and it could not be read back to confirm it (crm could not be read: timed out)'
    })
  })
})
