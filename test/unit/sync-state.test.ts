import { describe, expect, it } from 'vitest'
import { overallState } from '../../src/syncer/delivery/states.ts'

describe('a customer’s overall sync state', () => {
  const d = (state: string, customer_version = 2) => ({ state, customer_version }) as Parameters<typeof overallState>[0][number]
  it.each([
    [[d('SUCCESS'), d('SUCCESS')], 'IN_SYNC'],
    [[d('SUCCESS'), d('RETRY_SCHEDULED')], 'IN_PROGRESS'],
    [[d('SUCCESS'), d('SUCCESS', 1)], 'IN_PROGRESS'],
    [[d('SUCCESS'), d('FAILED')], 'NEEDS_ATTENTION'],
    [[d('BLOCKED'), d('IN_FLIGHT')], 'NEEDS_ATTENTION'],
    [[d('SUCCESS'), d('SKIPPED')], 'PARTIAL'],
    // A system removed from the configuration no longer counts, at whatever version it stopped.
    [[d('SUCCESS'), d('RETIRED', 1)], 'IN_SYNC'],
    [[d('RETRY_SCHEDULED'), d('RETIRED')], 'IN_PROGRESS']
  ])('%j is %s', (latest, state) => {
    expect(overallState(latest, 2)).toBe(state)
  })
})
