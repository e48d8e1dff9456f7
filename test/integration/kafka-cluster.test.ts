import { setTimeout as sleep } from 'node:timers/promises'
import { Admin, ConfigResourceTypes } from '@platformatic/kafka'
import { beforeAll, describe, expect, it } from 'vitest'
import { topics } from '../../src/contracts/topics.ts'
import { clientConnection, createProbe, kafkaAnswers } from '../../src/platform/kafka.ts'
import { partitionStates } from '../support/cluster.ts'
import { killEventsLeader, readiness, runFaultSuite } from '../support/fault-suite.ts'
import { ensureToxiproxyServer } from '../support/toxiproxy.ts'

// A stack of its own on three local brokers, with Toxiproxy on every link (a proxy per broker on the links to
// Kafka; `npm run test:faults -- 'Kafka cluster'` has the longer scenarios): the leader of the events topic's
// partition 0 killed under load, nothing lost.
describe('a three-broker Kafka cluster', () => {
  // The first run on a machine builds Toxiproxy with Go (minutes); later runs find it built.
  beforeAll(() => ensureToxiproxyServer(), 600_000)

  it('keeps three copies of every partition, needs two for a write, answers with its first broker frozen, and loses nothing when a partition leader is killed under load', {
    timeout: 600_000
  }, async () => {
    const lines: string[] = []
    const layout: { replicas: number[]; minInsync: (string | null | undefined)[] } = { replicas: [], minInsync: [] }
    const withFirstFrozen = { kafkaAnswers: false, syncerReady: false }
    const syncerCutOffFromKafka = { readyWhileCut: true, readyAgain: false }
    const reports = await runFaultSuite({
      ratePerSecond: 10,
      scale: 1,
      kafkaBrokers: 3,
      say: (text) => lines.push(text),
      scenarios: [
        {
          name: 'events partition leader killed (SIGKILL) and restarted',
          networkFaults: true,
          inject: async (stack, say) => {
            const { cluster } = stack.infrastructure.localKafka!
            const states = await partitionStates(cluster)
            layout.replicas = [...new Set(states.map((p) => p.replicas.length))]
            const admin = new Admin({ clientId: 'kafka-cluster-test', ...clientConnection(cluster) })
            try {
              const described = await admin.describeConfigs({
                resources: Object.values(topics).map((resourceName) => ({
                  resourceType: ConfigResourceTypes.TOPIC,
                  resourceName,
                  configurationKeys: ['min.insync.replicas']
                }))
              })
              layout.minInsync = described.flatMap((resource) => resource.configs.map((config) => config.value))
            } finally {
              await admin.close()
            }
            // The first address every client is given, frozen: its connections stay open and nothing answers.
            const first = stack.infrastructure.localKafka!.brokers[0]!
            const pid = first.pid()!
            process.kill(pid, 'SIGSTOP')
            try {
              const probe = createProbe(cluster, 2000)
              try {
                withFirstFrozen.kafkaAnswers = await kafkaAnswers(probe)
              } finally {
                await probe.close()
              }
              withFirstFrozen.syncerReady = (await fetch(`${stack.syncerUrl}/health/ready`)).ok
            } finally {
              process.kill(pid, 'SIGCONT')
            }
            // The syncer reaches each broker through a proxy of its own (the metadata advertises the proxies):
            // with the link cut, it reaches none, not even around the proxies to the brokers themselves.
            await stack.network!.cut('syncer-kafka')
            try {
              syncerCutOffFromKafka.readyWhileCut = await readyWithin(stack.syncerUrl, false, 30_000)
            } finally {
              await stack.network!.restore('syncer-kafka')
            }
            syncerCutOffFromKafka.readyAgain = await readyWithin(stack.syncerUrl, true, 60_000)
            await killEventsLeader(stack, say)
          }
        }
      ]
    })
    process.stdout.write(`${lines.join('\n')}\n`)
    expect(layout).toEqual({ replicas: [3], minInsync: ['2', '2'] })
    // Found by freezing the first broker of a cluster: with no retry, a probe asked the first address alone.
    expect(withFirstFrozen).toEqual({ kafkaAnswers: true, syncerReady: true })
    expect(syncerCutOffFromKafka).toEqual({ readyWhileCut: false, readyAgain: true })
    const [report] = reports
    expect(lines.join('\n')).toMatch(/killed \(SIGKILL\)[\s\S]*back in \d+ ms, every partition fully replicated/)
    expect(report!.customers).toBeGreaterThan(10)
    expect({ lost: report!.lost, problems: report!.problems }).toEqual({ lost: 0, problems: [] })
    expect(report!.deliveries).toBe(report!.versions * 3)
  })
})

/** Polls a service's readiness until it is `ready` (true) or not (false); returns what it was when it stopped. */
async function readyWithin(url: string, ready: boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { ok: now } = await readiness(url)
    if (now === ready || Date.now() > deadline) return now
    await sleep(500)
  }
}
