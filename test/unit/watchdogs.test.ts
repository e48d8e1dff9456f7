import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { judgeRelay, type RelayObservation } from '../../src/outbox/relay-watchdog.ts'
import { type IntakeObservation, judgeIntake } from '../../src/syncer/intake/intake-watchdog.ts'

const STALL = 30_000

describe('the intake watchdog', () => {
  const consuming = (over: Partial<IntakeObservation> = {}): IntakeObservation => ({
    now: 100_000,
    joinedAt: 0,
    lastFetchAt: 99_900,
    lastStoredAt: undefined,
    assignedPartitions: 12,
    storingSince: undefined,
    lag: { waiting: 0, committedMovedAt: 99_000 },
    kafkaAnsweringSince: 0,
    ...over
  })

  it('leaves a consumer alone that fetches and keeps up', () => {
    expect(judgeIntake(consuming(), STALL)).toEqual({ kind: 'progressing' })
  })

  it('calls a stream stalled when no fetch was answered for the stall period, and says for how long', () => {
    const verdict = judgeIntake(consuming({ lastFetchAt: 60_000 }), STALL)
    expect(verdict).toEqual({ kind: 'stalled', stalledSince: 60_000, reason: 'no fetch answered for 40 s on 12 partitions' })
  })

  it('gives a consumer that just joined the whole stall period before its first fetch', () => {
    expect(judgeIntake(consuming({ joinedAt: 80_000, lastFetchAt: undefined }), STALL)).toEqual({ kind: 'progressing' })
    expect(judgeIntake(consuming({ joinedAt: 60_000, lastFetchAt: undefined }), STALL).kind).toBe('stalled')
  })

  it('counts a stored batch as progress: a stream fetches nothing while its batch is stored and committed', () => {
    expect(judgeIntake(consuming({ lastFetchAt: 10_000, lastStoredAt: 95_000 }), STALL)).toEqual({ kind: 'progressing' })
  })

  it('expects no fetches from a consumer without partitions (more syncers than partitions)', () => {
    expect(judgeIntake(consuming({ assignedPartitions: 0, lastFetchAt: undefined }), STALL)).toEqual({ kind: 'progressing' })
  })

  it('calls it stalled when events wait and the committed offsets have not moved, though fetches are answered', () => {
    const verdict = judgeIntake(consuming({ lag: { waiting: 42, committedMovedAt: 50_000 } }), STALL)
    expect(verdict).toEqual({
      kind: 'stalled',
      stalledSince: 50_000,
      reason: '42 events wait on its partitions and the committed offsets have not moved for 50 s'
    })
  })

  it('never blames Kafka while a batch waits on the database', () => {
    const blocked = consuming({ storingSince: 10_000, lastFetchAt: 1000, lag: { waiting: 500, committedMovedAt: 0 } })
    expect(judgeIntake(blocked, STALL)).toEqual({ kind: 'progressing' })
  })

  it('waits out a broker that is away or frozen instead of blaming the consumer', () => {
    expect(judgeIntake(consuming({ lastFetchAt: 0, kafkaAnsweringSince: undefined }), STALL)).toEqual({ kind: 'progressing' })
  })

  it('gives the consumer a stall period after Kafka answers again', () => {
    const back = consuming({ lastFetchAt: 0, kafkaAnsweringSince: 80_000 })
    expect(judgeIntake(back, STALL)).toEqual({ kind: 'progressing' })
    expect(judgeIntake({ ...back, now: 110_000 }, STALL).kind).toBe('stalled')
  })

  it('does not judge the lag when Kafka could not say what it is', () => {
    expect(judgeIntake(consuming({ lag: undefined }), STALL)).toEqual({ kind: 'progressing' })
  })

  it('never calls a consumer stalled within the stall period of its last sign of progress', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e6 }),
        fc.integer({ min: 0, max: STALL - 1 }),
        fc.integer({ min: 0, max: STALL - 1 }),
        fc.integer({ min: 0, max: 24 }),
        fc.integer({ min: 0, max: 10_000 }),
        (joinedAt, sinceFetch, sinceCommit, partitions, waiting) => {
          const now = joinedAt + Math.max(sinceFetch, sinceCommit)
          const observation = consuming({
            now,
            joinedAt,
            lastFetchAt: now - sinceFetch,
            assignedPartitions: partitions,
            lag: { waiting, committedMovedAt: now - sinceCommit }
          })
          return judgeIntake(observation, STALL).kind === 'progressing'
        }
      )
    )
  })

  it('always calls it stalled past the stall period with partitions and no fetch, and names a time in the past', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e6 }),
        fc.integer({ min: STALL, max: 10 * STALL }),
        fc.integer({ min: 1, max: 24 }),
        (joinedAt, silent, partitions) => {
          const now = joinedAt + silent
          const verdict = judgeIntake(consuming({ now, joinedAt, lastFetchAt: joinedAt, assignedPartitions: partitions }), STALL)
          return verdict.kind === 'stalled' && verdict.stalledSince <= now - STALL
        }
      )
    )
  })
})

describe('the relay watchdog', () => {
  const relay = (over: Partial<RelayObservation> = {}): RelayObservation => ({
    now: 100_000,
    oldestUnsentAt: undefined,
    lastPublishedAt: 90_000,
    lastRestartAt: undefined,
    kafkaAnsweringSince: 0,
    ...over
  })

  it('is caught up when nothing waits', () => {
    expect(judgeRelay(relay(), STALL)).toEqual({ kind: 'caught-up' })
  })

  it('calls a long backlog that is still going out waiting, not stalled', () => {
    expect(judgeRelay(relay({ oldestUnsentAt: 0, lastPublishedAt: 99_000 }), STALL)).toEqual({ kind: 'waiting', since: 99_000 })
  })

  it('never replaces the producer while Kafka is away, however long messages wait', () => {
    expect(judgeRelay(relay({ oldestUnsentAt: 0, lastPublishedAt: undefined, kafkaAnsweringSince: undefined }), STALL)).toEqual({
      kind: 'waiting',
      since: 0
    })
  })

  it('gives the relay a stall period after Kafka is back before blaming its producer', () => {
    const back = relay({ oldestUnsentAt: 0, lastPublishedAt: undefined, kafkaAnsweringSince: 90_000 })
    expect(judgeRelay(back, STALL)).toEqual({ kind: 'waiting', since: 0 })
    expect(judgeRelay({ ...back, now: 120_000 }, STALL)).toEqual({
      kind: 'stalled',
      since: 0,
      reason: 'messages have waited 120 s and none went out for 30 s while Kafka answers'
    })
  })

  it('gives a new producer a stall period of its own', () => {
    const restarted = relay({ oldestUnsentAt: 0, lastPublishedAt: undefined, lastRestartAt: 80_000 })
    expect(judgeRelay(restarted, STALL).kind).toBe('waiting')
    expect(judgeRelay({ ...restarted, now: 110_000 }, STALL).kind).toBe('stalled')
  })

  const moment = fc.option(fc.integer({ min: 0, max: 200_000 }), { nil: undefined })
  const observations = fc.record({
    now: fc.constant(200_000),
    oldestUnsentAt: moment,
    lastPublishedAt: moment,
    lastRestartAt: moment,
    kafkaAnsweringSince: moment
  })

  it('never blames the producer while Kafka does not answer', () => {
    fc.assert(fc.property(observations, (o) => judgeRelay({ ...o, kafkaAnsweringSince: undefined }, STALL).kind !== 'stalled'))
  })

  it('never blames it within a stall period of a publish, a new producer or Kafka coming back', () => {
    fc.assert(
      fc.property(
        observations,
        fc.constantFrom('lastPublishedAt', 'lastRestartAt', 'kafkaAnsweringSince'),
        fc.integer({ min: 0, max: STALL - 1 }),
        (o, recent, ago) => {
          return judgeRelay({ ...o, [recent]: o.now - ago }, STALL).kind !== 'stalled'
        }
      )
    )
  })

  it('always blames it once messages have waited, and Kafka has answered, a stall period without anything going out', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: STALL, max: 10 * STALL }),
        fc.option(fc.integer({ min: STALL, max: 10 * STALL }), { nil: undefined }),
        (quiet, published) => {
          const now = 10 * STALL + 1
          const verdict = judgeRelay(
            {
              now,
              oldestUnsentAt: now - quiet,
              lastPublishedAt: published === undefined ? undefined : now - published,
              lastRestartAt: undefined,
              kafkaAnsweringSince: now - quiet
            },
            STALL
          )
          return verdict.kind === 'stalled'
        }
      )
    )
  })

  it('says since when nothing went out: the later of the oldest message and the last publish', () => {
    expect(judgeRelay(relay({ oldestUnsentAt: 50_000, lastPublishedAt: 20_000, kafkaAnsweringSince: undefined }), STALL)).toEqual({
      kind: 'waiting',
      since: 50_000
    })
  })
})
