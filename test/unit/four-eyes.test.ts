import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { mayDo, type OperatorRight, type OperatorRole, operatorRights, operatorRoles } from '../../src/contracts/access.ts'
import { decide, requestKinds, requestStates, type Verdict } from '../../src/syncer/delivery/four-eyes.ts'
import { operatorActions, transitions } from '../../src/syncer/delivery/states.ts'

const roles = Object.keys(operatorRoles) as OperatorRole[]
const rights = Object.keys(operatorRights) as OperatorRight[]
const names = fc.constantFrom('ops.tan', 'ops.lim', 'ops.ng')
const request = fc.record({
  state: fc.constantFrom(...requestStates),
  requestedBy: names,
  expiresAt: fc.date({ min: new Date('2026-01-01T00:00:00Z'), max: new Date('2027-01-01T00:00:00Z'), noInvalidDate: true })
})
const verdict = fc.constantFrom<Verdict>('approve', 'reject')
const now = fc.date({ min: new Date('2026-01-01T00:00:00Z'), max: new Date('2027-01-01T00:00:00Z'), noInvalidDate: true })

describe('who may answer a request (decide)', () => {
  it('never lets the one who asked answer it, whatever its state, time or answer', () => {
    fc.assert(
      fc.property(request, verdict, now, (r, v, at) => {
        expect(decide(r, r.requestedBy, v, at)).toEqual({ refused: 'own-request' })
      })
    )
  })

  it('lets another person answer a PENDING request before it expires, and takes the answer as given', () => {
    fc.assert(
      fc.property(request, names, verdict, now, (r, decider, v, at) => {
        fc.pre(decider !== r.requestedBy)
        const decision = decide(r, decider, v, at)
        if (r.state !== 'PENDING') expect(decision).toEqual({ refused: 'decided', state: r.state })
        else if (at.getTime() >= r.expiresAt.getTime()) expect(decision).toEqual({ refused: 'expired' })
        else expect(decision).toEqual({ state: v === 'approve' ? 'APPROVED' : 'REJECTED' })
      })
    )
  })

  it('expires a request at its expiry instant, not a millisecond later', () => {
    const expiresAt = new Date('2026-06-01T12:00:00Z')
    const pending = { state: 'PENDING' as const, requestedBy: 'ops.tan', expiresAt }
    expect(decide(pending, 'ops.lim', 'approve', new Date(expiresAt.getTime() - 1))).toEqual({ state: 'APPROVED' })
    expect(decide(pending, 'ops.lim', 'approve', expiresAt)).toEqual({ refused: 'expired' })
  })

  it('makes each kind of request a manual move of the state machine', () => {
    for (const move of Object.values(requestKinds)) {
      expect(Object.keys(operatorActions)).toContain(move)
      expect(transitions[move]).toBeDefined()
    }
  })
})

describe('what each role may do (mayDo)', () => {
  it('lets an operator and an approver act, only an approver decide, and a viewer neither', () => {
    const table = Object.fromEntries(roles.map((role) => [role, rights.filter((right) => mayDo(role, right))]))
    expect(table).toEqual({ viewer: [], operator: ['act'], approver: ['act', 'decide'] })
  })

  it('gives an unknown caller nothing', () => {
    for (const right of rights) expect(mayDo(undefined, right)).toBe(false)
  })
})
