import { describe, expect, it } from 'vitest'
import { runFaultSuite } from '../support/fault-suite.ts'

// The short run of the fault suite (`npm run test:faults` is the long one). It starts a stack of its own,
// with each service as a process, because it kills them.
describe('fault suite (short)', () => {
  it('loses nothing when the syncer, the CIF service, Kafka, PostgreSQL or the end systems fail under load', { timeout: 600_000 }, async () => {
    const lines: string[] = []
    const reports = await runFaultSuite({ ratePerSecond: 20, scale: 1, say: (text) => lines.push(text) })
    process.stdout.write(`${lines.join('\n')}\n`)
    expect(reports.map((r) => r.scenario)).toHaveLength(5)
    for (const report of reports) {
      expect(report.customers, report.scenario).toBeGreaterThan(20)
      expect({ scenario: report.scenario, lost: report.lost, problems: report.problems }).toEqual({
        scenario: report.scenario,
        lost: 0,
        problems: []
      })
      expect(report.deliveries).toBe(report.versions * 3)
    }
  })
})
