import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { statusKinds } from '../../src/contracts/sync-status-events.ts'
import {
  attentionStates,
  type DeliveryState,
  decideAfterAttempt,
  deliveryStates,
  initialState,
  remark,
  remarkTemplates,
  settledStates,
  stateMeanings,
  transitions,
  waitingStates
} from '../../src/syncer/delivery/states.ts'

const moves = Object.entries(transitions)
const next = (state: DeliveryState) => moves.filter(([, t]) => (t.from as readonly string[]).includes(state)).map(([, t]) => t.to)

describe('the delivery state machine', () => {
  it('walks every transition between declared states, each from a state that can reach it', () => {
    for (const [name, t] of moves) {
      expect(deliveryStates, name).toContain(t.to)
      for (const from of t.from) expect(deliveryStates, name).toContain(from)
      expect(t.from, `${name} goes nowhere new`).not.toContain(t.to)
    }
    expect(Object.keys(stateMeanings).sort()).toEqual([...deliveryStates].sort())
  })

  it('reaches every state from the start, and from every state reaches an end', () => {
    const reachable = new Set<DeliveryState>([initialState, 'BLOCKED'])
    for (let grown = true; grown; ) {
      const before = reachable.size
      for (const state of [...reachable]) for (const to of next(state)) reachable.add(to)
      grown = reachable.size > before
    }
    expect([...reachable].sort()).toEqual([...deliveryStates].sort())
    // SUCCESS and SKIPPED are final (so a payload purged once its deliveries are settled is never needed
    // again); every other state has a way out (FAILED and BLOCKED through a person).
    for (const state of deliveryStates) {
      if ((settledStates as readonly string[]).includes(state)) expect(next(state), state).toEqual([])
      else expect(next(state).length, state).toBeGreaterThan(0)
    }
    expect(attentionStates.every((state) => next(state).length > 0)).toBe(true)
    expect(waitingStates).toEqual(transitions.claim.from)
  })

  it('tells each delivery status in the state the status contract names', () => {
    expect(statusKinds.DELIVERED.state).toBe(transitions.succeed.to)
    expect(statusKinds.RETRYING.state).toBe(transitions.retry.to)
    expect(statusKinds.FAILED.state).toBe(transitions.fail.to)
    expect(statusKinds.SKIPPED.state).toBe(transitions.skip.to)
    expect(statusKinds.SKIPPED.state).toBe(transitions.erase.to)
    expect(statusKinds.SUPERSEDED.state).toBe(transitions.supersede.to)
    expect(statusKinds.RETIRED.state).toBe(transitions.retire.to)
  })

  it('retires every open delivery: the store selects them as the states not settled, as the open deliveries’ index does', () => {
    expect([...transitions.retire.from].sort()).toEqual(deliveryStates.filter((s) => !(settledStates as readonly string[]).includes(s)).sort())
    // Only a delivery still waiting its turn can be superseded: one in flight is being sent already.
    expect(transitions.supersede.from).toEqual(waitingStates)
  })

  it('decides after an attempt: success, a retry while the budget lasts, then FAILED', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('success', 'retry', 'fail') as fc.Arbitrary<'success' | 'retry' | 'fail'>,
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 0, max: 6 }),
        (outcome, n, retries) => {
          const { decision, remark: said } = decideAfterAttempt(outcome, n, retries, 'X1', () => 1500)
          if (outcome === 'success') return decision.state === 'SUCCESS' && decision.externalId === 'X1' && said === null
          if (outcome === 'retry' && n <= retries) return decision.state === 'RETRY_SCHEDULED' && said === `retry ${n} of ${retries} in 1.5 s`
          return decision.state === 'FAILED' && said === (outcome === 'retry' ? `gave up after ${n} attempts` : null)
        }
      )
    )
    for (const [name, t] of [
      ['succeed', transitions.succeed],
      ['retry', transitions.retry],
      ['fail', transitions.fail]
    ] as const) {
      expect(t.from, name).toEqual(['IN_FLIGHT'])
    }
  })

  it('fills every remark template it has', () => {
    expect(remark('waitsBehind', { delivery: 7, version: 2 })).toBe('waits behind delivery 7 (version 2), which FAILED; redrive or skip it')
    for (const template of Object.keys(remarkTemplates) as (keyof typeof remarkTemplates)[]) {
      const names = [...remarkTemplates[template].matchAll(/\{(\w+)\}/g)].map((m) => m[1]!)
      expect(remark(template, Object.fromEntries(names.map((n) => [n, 'v'])))).not.toMatch(/\{\w+\}/)
    }
  })
})
