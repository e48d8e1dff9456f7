import { describe, expect, it } from 'vitest'
import { runSoak, soakFaultKinds } from '../support/soak.ts'

// The short soak (`npm run test:soak` is the long one): two CIF service instances and two syncers under load
// while instances are killed and end systems misbehave, then the independent checker. PostgreSQL and Kafka
// restarts stay in the long run and the fault suite: each costs more than this test's whole budget.
describe('soak (short)', () => {
  it('loses, repeats and reorders nothing while any instance is killed', { timeout: 300_000 }, async () => {
    const lines: string[] = []
    const report = await runSoak({
      minutes: 0.75,
      ratePerSecond: 20,
      meanFaultIntervalMs: 4000,
      cifInstances: 2,
      syncerInstances: 2,
      kinds: soakFaultKinds.filter((kind) => !/PostgreSQL|Kafka/.test(kind.kind)),
      say: (text) => lines.push(text)
    })
    process.stdout.write(`${lines.join('\n')}\n`)
    const { problems, ...counts } = report.findings
    expect(report.kills).toBeGreaterThanOrEqual(3)
    expect(counts.customers).toBeGreaterThan(50)
    expect(report.drainMs).toBeGreaterThanOrEqual(0)
    expect({ ...counts, problems }).toMatchObject({
      lost: 0,
      duplicates: 0,
      orderViolations: 0,
      invented: 0,
      unexplained: 0,
      stuck: 0,
      unrecordedCalls: 0,
      callsUnread: 0,
      problems: []
    })
    expect(counts.deliveries).toBe(counts.versions * 3)
  })
})
