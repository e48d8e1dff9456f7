import { beforeAll, describe, expect, it } from 'vitest'
import { networkScenarios, runFaultSuite } from '../support/fault-suite.ts'
import { ensureToxiproxyServer } from '../support/toxiproxy.ts'

// The short run of the network faults (`npm run test:faults -- network` runs them all): Toxiproxy on every
// link of a stack of its own, and the syncer cut off from PostgreSQL while calls to an end system are in flight.
describe('network faults (short)', () => {
  // The first run on a machine builds Toxiproxy with Go (minutes); later runs find it built.
  beforeAll(() => ensureToxiproxyServer(), 600_000)

  it('loses nothing when the syncer loses PostgreSQL with end-system calls in flight', { timeout: 300_000 }, async () => {
    const lines: string[] = []
    const scenario = networkScenarios(1).find((s) => s.name === 'network: syncer cut off from PostgreSQL with calls in flight')!
    const [report] = await runFaultSuite({ ratePerSecond: 20, scale: 1, scenarios: [scenario], say: (text) => lines.push(text) })
    process.stdout.write(`${lines.join('\n')}\n`)
    expect(lines).toContain('  syncer cut off from PostgreSQL')
    expect(report!.customers).toBeGreaterThan(20)
    expect({ lost: report!.lost, problems: report!.problems, recovered: report!.recoveryMs >= 0 }).toEqual({ lost: 0, problems: [], recovered: true })
    expect(report!.deliveries).toBe(report!.versions * 3)
  })
})
