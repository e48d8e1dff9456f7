import { Admin, ConfigResourceTypes } from '@platformatic/kafka'
import { describe, expect, it } from 'vitest'
import { topics } from '../../src/contracts/topics.ts'
import { clientConnection, createProbe, kafkaAnswers } from '../../src/platform/kafka.ts'
import { partitionStates } from '../support/cluster.ts'
import { killEventsLeader, runFaultSuite } from '../support/fault-suite.ts'

// A stack of its own on three local brokers (`npm run test:faults -- 'Kafka cluster'` has the longer
// scenarios): the leader of the events topic's partition 0 killed under load, nothing lost.
describe('a three-broker Kafka cluster', () => {
  it('keeps three copies of every partition, needs two for a write, answers with its first broker frozen, and loses nothing when a partition leader is killed under load', {
    timeout: 600_000
  }, async () => {
    const lines: string[] = []
    const layout: { replicas: number[]; minInsync: (string | null | undefined)[] } = { replicas: [], minInsync: [] }
    const withFirstFrozen = { kafkaAnswers: false, syncerReady: false }
    const reports = await runFaultSuite({
      ratePerSecond: 10,
      scale: 1,
      kafkaBrokers: 3,
      say: (text) => lines.push(text),
      scenarios: [
        {
          name: 'events partition leader killed (SIGKILL) and restarted',
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
            await killEventsLeader(stack, say)
          }
        }
      ]
    })
    process.stdout.write(`${lines.join('\n')}\n`)
    expect(layout).toEqual({ replicas: [3], minInsync: ['2', '2'] })
    // Found by freezing the first broker of a cluster: with no retry, a probe asked the first address alone.
    expect(withFirstFrozen).toEqual({ kafkaAnswers: true, syncerReady: true })
    const [report] = reports
    expect(lines.join('\n')).toMatch(/killed \(SIGKILL\)[\s\S]*back in \d+ ms, every partition fully replicated/)
    expect(report!.customers).toBeGreaterThan(10)
    expect({ lost: report!.lost, problems: report!.problems }).toEqual({ lost: 0, problems: [] })
    expect(report!.deliveries).toBe(report!.versions * 3)
  })
})
