import fc from 'fast-check'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { backoffMs, FailureLog } from '../../src/platform/retry.ts'

describe('backoff', () => {
  it('doubles from the first pause, within the jitter, and never passes the cap', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 600_000 }),
        fc.double({ min: 0, max: 0.5, noNaN: true }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (failures, initialMs, maxMs, jitter, r) => {
          const pause = backoffMs(failures, { initialMs, maxMs, jitter }, () => r)
          const base = Math.min(maxMs, initialMs * 2 ** failures)
          return pause <= maxMs && pause >= Math.floor(base * (1 - jitter)) && pause <= Math.ceil(base * (1 + jitter))
        }
      )
    )
    expect([0, 1, 2, 3, 4].map((n) => backoffMs(n, { initialMs: 100, maxMs: 1000 }))).toEqual([100, 200, 400, 800, 1000])
  })
})

describe('a run of failures in the log', () => {
  function capture() {
    const lines: { msg: string; failures: number; level: number; error?: string }[] = []
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) })
    return { log, lines }
  }

  it('logs the first failure and every n-th after it, then once when it works again', () => {
    const { log, lines } = capture()
    const run = new FailureLog(log, 'cannot reach it', 3)
    for (let i = 0; i < 7; i++) run.failed(new Error(`refused ${i}`))
    run.succeeded('reaching it again')
    run.succeeded('reaching it again')
    expect(lines.map((l) => [l.msg, l.failures, l.error])).toEqual([
      ['cannot reach it', 1, 'refused 0'],
      ['cannot reach it', 4, 'refused 3'],
      ['cannot reach it', 7, 'refused 6'],
      ['reaching it again', 7, undefined]
    ])
    expect(run.failures).toBe(0)
  })
})
