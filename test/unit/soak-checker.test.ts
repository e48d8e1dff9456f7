import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { findProblems, passed, type SimulatorCall, type SoakObservations } from '../support/soak-checker.ts'

// Hand-made runs, each breaking one rule of the soak's checker: the checker must see every one.

const systems = ['core-banking', 'crm']
const events = [
  { eventId: 'e-a1', cifId: '1001', version: 1 },
  { eventId: 'e-a2', cifId: '1001', version: 2 },
  { eventId: 'e-b1', cifId: '1002', version: 1 }
]

/** A run where everything went right: customer 1001 at v2, 1002 at v1, each in both systems, one create replayed. */
function cleanRun(): SoakObservations {
  const calls: SimulatorCall[] = []
  for (const endSystem of systems) {
    // The simulator keeps its answer below 500 to a call it carried out; `kept: false` is one it gave before doing anything.
    const call = (method: string, eventId: string, status: number, kept = status < 500): void => {
      const event = events.find((e) => e.eventId === eventId)!
      calls.push({
        endSystem,
        seq: calls.filter((c) => c.endSystem === endSystem).length + 1,
        method,
        cifId: event.cifId,
        version: undefined,
        idempotencyKey: `${eventId}:${endSystem}`,
        status,
        kept
      })
    }
    call('POST', 'e-a1', 201)
    if (endSystem === 'core-banking') call('POST', 'e-a1', 201) // the syncer died before recording the answer: a replay
    call('POST', 'e-b1', 503) // failed, retried below under the same key
    if (endSystem === 'crm') call('POST', 'e-b1', 429, false) // rate-limited before anything was done: the next call is carried out
    call('POST', 'e-b1', 201)
    call('PUT', 'e-a2', 200)
  }
  const attempts = [
    { eventId: 'e-a1', endSystem: 'core-banking', count: 2 },
    { eventId: 'e-a1', endSystem: 'crm', count: 1 },
    ...systems.flatMap((endSystem) => [
      { eventId: 'e-b1', endSystem, count: endSystem === 'crm' ? 3 : 2 },
      { eventId: 'e-a2', endSystem, count: 1 }
    ])
  ]
  return {
    endSystems: systems,
    customers: [
      { cifId: '1001', version: 2 },
      { cifId: '1002', version: 1 }
    ],
    cifEvents: events.map((e) => ({ ...e })),
    topicEvents: [...events, events[0]!].map((e) => ({ ...e })), // published twice: at least once
    statuses: [
      { type: 'cif.sync.delivery.succeeded', cifId: '1001', version: 1 },
      { type: 'cif.sync.customer.in-sync', cifId: '1001', version: 2 },
      { type: 'cif.sync.customer.in-sync', cifId: '1002', version: 1 }
    ],
    deliveries: systems.flatMap((endSystem) =>
      events.map((e) => ({ eventId: e.eventId, cifId: e.cifId, endSystem, version: e.version, state: 'SUCCESS', remarks: null }))
    ),
    attempts,
    records: systems.flatMap((endSystem) => [
      { endSystem, cifId: '1001', version: 2 },
      { endSystem, cifId: '1002', version: 1 }
    ]),
    calls,
    callsUnread: 0,
    injected: [],
    unreadableKeys: []
  }
}

/**
 * The clean run with bad messages the soak put on the topic, each handled as documented: a customer made up
 * with a version gap (filled) delivered like the CIF's, an older version under a new id and a message that
 * is not JSON kept as unreadable, a signed update of a customer never created FAILED with no call, a copy.
 */
function withBadMessages(run: SoakObservations): void {
  const madeUp = [
    { eventId: 'm1', cifId: '9001', version: 1 },
    { eventId: 'm2', cifId: '9001', version: 2 }
  ]
  const older = { eventId: 'o1', cifId: '1001', version: 1 }
  const update = { eventId: 'u2', cifId: '9002', version: 2 }
  run.injected = [
    { kind: 'version-gap', outcome: 'held until the gap is filled', key: '9001', cifId: '9001', newEvents: madeUp },
    { kind: 'older-version', outcome: 'kept as unreadable', key: '1001', cifId: '1001', newEvents: [older] },
    { kind: 'not-json', outcome: 'kept as unreadable', key: '1002', cifId: '1002', newEvents: [] },
    { kind: 'unknown-cif-signed-update', outcome: 'FAILED, no end system called', key: '9002', cifId: '9002', newEvents: [update] },
    { kind: 'duplicate', outcome: 'deduplicated', key: '1001', cifId: '1001', newEvents: [] }
  ]
  run.unreadableKeys = ['1002', '1001']
  run.topicEvents.push(...madeUp, older, update, { ...run.topicEvents[0]! })
  for (const endSystem of systems) {
    const delivery = (e: { eventId: string; cifId: string; version: number }, state: string, remarks: string | null) => ({
      eventId: e.eventId,
      cifId: e.cifId,
      endSystem,
      version: e.version,
      state,
      remarks
    })
    run.deliveries.push(...madeUp.map((e) => delivery(e, 'SUCCESS', null)), delivery(update, 'FAILED', 'not called: no record id'))
    run.records.push({ endSystem, cifId: '9001', version: 2 })
    const seq = Math.max(...run.calls.filter((c) => c.endSystem === endSystem).map((c) => c.seq))
    for (const [i, e] of madeUp.entries()) {
      const [method, status] = i === 0 ? ['POST', 201] : ['PUT', 200]
      run.calls.push({
        endSystem,
        seq: seq + 1 + i,
        method: method!,
        cifId: '9001',
        version: undefined,
        idempotencyKey: `${e.eventId}:${endSystem}`,
        status: status as number,
        kept: true
      })
      run.attempts.push({ eventId: e.eventId, endSystem, count: 1 })
    }
  }
  run.statuses.push({ type: 'cif.sync.customer.in-sync', cifId: '9001', version: 2 }, { type: 'cif.sync.delivery.failed', cifId: '9002', version: 2 })
}

function check(change: (run: SoakObservations) => void) {
  const run = cleanRun()
  change(run)
  return findProblems(run)
}

describe('soak checker', () => {
  it('passes a clean run, counting the replayed create', () => {
    const findings = findProblems(cleanRun())
    expect(findings.problems).toEqual([])
    expect(passed(findings)).toBe(true)
    expect(findings).toMatchObject({ customers: 2, versions: 3, deliveries: 6, replays: 1 })
  })

  it('finds a version lost on the way: not in the outbox, not on the topic, no delivery, not held, not told in sync', () => {
    expect(check((run) => run.cifEvents.splice(1, 1)).lost).toBeGreaterThan(0)
    expect(check((run) => (run.topicEvents = run.topicEvents.filter((e) => e.eventId !== 'e-b1'))).lost).toBe(1)
    expect(check((run) => run.deliveries.pop()).lost).toBe(1)
    expect(check((run) => (run.records[0]!.version = 1)).lost).toBe(1)
    expect(check((run) => run.records.pop()).lost).toBe(1)
    expect(check((run) => run.statuses.pop()).lost).toBe(1)
  })

  it('finds duplicates: two records of one customer, two creates applied, two deliveries, two outbox events of one version', () => {
    expect(check((run) => run.records.push({ endSystem: 'crm', cifId: '1002', version: 1 })).duplicates).toBe(1)
    const secondCreate = check((run) => {
      run.cifEvents.push({ eventId: 'e-b1-again', cifId: '1002', version: 1 })
      run.calls.push({
        endSystem: 'crm',
        seq: 99,
        method: 'POST',
        cifId: '1002',
        version: 2,
        idempotencyKey: 'e-b1-again:crm',
        status: 201,
        kept: true
      })
    })
    expect(secondCreate.duplicates).toBeGreaterThanOrEqual(2)
    expect(check((run) => run.deliveries.push({ ...run.deliveries[0]! })).duplicates).toBe(1)
  })

  it('finds versions applied out of order, and an update before the create', () => {
    const swapped = check((run) => {
      const crm = run.calls.filter((c) => c.endSystem === 'crm')
      const [create, update] = [crm.find((c) => c.idempotencyKey === 'e-a1:crm')!, crm.find((c) => c.idempotencyKey === 'e-a2:crm')!]
      ;[create.seq, update.seq] = [update.seq, create.seq]
    })
    expect(swapped.orderViolations).toBe(2) // the update came first, and v1 after v2
    expect(passed(swapped)).toBe(false)
  })

  it('finds what the CIF never made: a record, an event on the topic, a call, a status', () => {
    expect(check((run) => run.records.push({ endSystem: 'crm', cifId: '9999', version: 1 })).invented).toBe(1)
    expect(
      check((run) => {
        for (const record of run.records) if (record.cifId === '1002') record.version = 2
      }).invented
    ).toBe(2)
    expect(check((run) => run.topicEvents.push({ eventId: 'e-x', cifId: '1001', version: 3 })).invented).toBe(1)
    expect(check((run) => (run.topicEvents[0]!.version = 2)).invented).toBe(1)
    expect(
      check((run) =>
        run.calls.push({
          endSystem: 'crm',
          seq: 99,
          method: 'PATCH',
          cifId: '1001',
          version: undefined,
          idempotencyKey: 'e-x:crm',
          status: 200,
          kept: true
        })
      ).invented
    ).toBe(1)
    expect(check((run) => run.statuses.push({ type: 'cif.sync.customer.in-sync', cifId: '1001', version: 3 })).invented).toBe(1)
  })

  it('finds deliveries neither SUCCESS nor explained, and deliveries left open', () => {
    expect(check((run) => Object.assign(run.deliveries[0]!, { state: 'FAILED', remarks: 'gave up after 40 retries' })).unexplained).toBe(1)
    expect(check((run) => Object.assign(run.deliveries[0]!, { state: 'SKIPPED', remarks: null })).unexplained).toBe(1)
    expect(check((run) => Object.assign(run.deliveries[0]!, { state: 'SUPERSEDED', remarks: 'v2 is sent instead' })).unexplained).toBe(0)
    expect(check((run) => (run.deliveries[1]!.state = 'IN_FLIGHT')).stuck).toBe(1)
  })

  it('finds a call the syncer has no attempt row for, and a call log read only in part', () => {
    expect(check((run) => (run.attempts[0]!.count = 1)).unrecordedCalls).toBe(1)
    expect(check((run) => run.attempts.pop()).unrecordedCalls).toBe(1)
    const partial = check((run) => (run.callsUnread = 3))
    expect(passed(partial)).toBe(false)
  })

  it('passes bad messages put on the topic when each is handled as documented, and finds each one mishandled', () => {
    const handled = check(withBadMessages)
    expect(handled.problems).toEqual([])
    expect(handled).toMatchObject({ customers: 3, versions: 5, deliveries: 10, injected: 5 })
    const mishandled = (change: (run: SoakObservations) => void) =>
      check((run) => {
        withBadMessages(run)
        change(run)
      })
    // Told nothing, the checker takes the made-up customer and the new ids for the syncer's inventions.
    expect(mishandled((run) => (run.injected = [])).invented).toBeGreaterThan(0)
    // The signed update of a customer never created, sent after all: a delivery SUCCESS, a call.
    expect(mishandled((run) => (run.deliveries.find((d) => d.eventId === 'u2')!.state = 'SUCCESS')).invented).toBe(1)
    expect(
      mishandled((run) =>
        run.calls.push({ endSystem: 'crm', seq: 99, method: 'PUT', cifId: '9002', version: 2, idempotencyKey: 'u2:crm', status: 404, kept: true })
      ).invented
    ).toBe(1)
    // The older version under a new id delivered instead of kept as unreadable.
    expect(
      mishandled((run) => run.deliveries.push({ eventId: 'o1', cifId: '1001', endSystem: 'crm', version: 1, state: 'SUCCESS', remarks: null }))
        .invented
    ).toBe(1)
    // A message to be kept as unreadable that is nowhere: dropped without a word.
    expect(mishandled((run) => run.unreadableKeys.pop()).lost).toBe(1)
    // The made-up customer's gap never filled in one system: its version 2 held there.
    expect(
      mishandled((run) => {
        Object.assign(run.deliveries.find((d) => d.eventId === 'm2' && d.endSystem === 'crm')!, { state: 'BLOCKED', remarks: 'held' })
        run.records.find((r) => r.cifId === '9001' && r.endSystem === 'crm')!.version = 1
      })
    ).toMatchObject({ unexplained: 1, lost: 1 })
  })

  it('judges the calls by each system own order, whatever order the log was read in', () => {
    fc.assert(
      fc.property(
        fc.shuffledSubarray(
          cleanRun().calls.map((_, i) => i),
          { minLength: cleanRun().calls.length }
        ),
        (order) => {
          const run = cleanRun()
          run.calls = order.map((i) => run.calls[i]!)
          expect(findProblems(run).problems).toEqual([])
        }
      )
    )
  })
})
