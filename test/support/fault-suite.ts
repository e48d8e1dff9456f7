import { setTimeout as sleep } from 'node:timers/promises'
import { topics } from '../../src/platform/kafka.ts'
import { checkInvariants, waitUntilDrained, type InvariantReport } from './invariants.ts'
import { runLoad } from './load.ts'
import { setFault, sourceKey, startProcessStack, type ProcessStack } from './stack.ts'
import { TopicReader } from './topic-reader.ts'

export interface Scenario {
  name: string
  /** Breaks something while the load runs; `at` says how far into the load each step comes. */
  inject(stack: ProcessStack, say: (text: string) => void): Promise<void>
}

export interface ScenarioReport extends InvariantReport {
  scenario: string
  created: number
  updated: number
  /** From the end of the load until every delivery succeeded. */
  recoveryMs: number
}

const systems = ['core-banking', 'crm', 'cards']
const randomBetween = (min: number, max: number) => min + Math.floor(Math.random() * (max - min))

/** A server stopped two seconds into the load, for `downMs`, then started again with its data. */
function restarted(name: string, server: (stack: ProcessStack) => { stop(): Promise<void>; start(): Promise<void> }, downMs: number): Scenario {
  return {
    name: `${name} stopped and restarted`,
    inject: async (stack, say) => {
      await sleep(2000)
      await server(stack).stop()
      say(`${name} stopped`)
      await sleep(downMs)
      await server(stack).start()
      say(`${name} back`)
    }
  }
}

export function scenarios(scale: number): Scenario[] {
  return [
    {
      name: 'syncer killed (SIGKILL) and restarted',
      inject: async (stack, say) => {
        for (let i = 1; i <= 2 + scale; i++) {
          await sleep(randomBetween(500, 2500 * scale))
          await stack.syncer.kill('SIGKILL')
          say(`syncer killed (${i})`)
          await sleep(randomBetween(200, 1500))
          await stack.syncer.start()
        }
      }
    },
    {
      name: 'CIF service killed (SIGKILL) and restarted',
      inject: async (stack, say) => {
        for (let i = 1; i <= scale; i++) {
          await sleep(randomBetween(1000, 3000 * scale))
          await stack.cif.kill('SIGKILL')
          say('CIF service killed')
          await sleep(1000)
          await stack.cif.start()
        }
      }
    },
    // Long enough, even in the short run, for the clients to give up retrying on their own.
    restarted('Kafka broker', (stack) => stack.infrastructure.localKafka!, Math.max(9000, 3000 * scale)),
    restarted('PostgreSQL', (stack) => stack.infrastructure.localPostgres!, Math.max(6000, 2000 * scale)),
    {
      name: 'end systems down, one at a time and all together',
      inject: async (stack, say) => {
        for (const system of systems) {
          await setFault(stack, system, { mode: 'down' })
          say(`${system} down`)
          await sleep(1500 * scale)
          await setFault(stack, system, { mode: 'none' })
        }
        for (const system of systems) await setFault(stack, system, { mode: 'down' })
        say('all end systems down')
        await sleep(2500 * scale)
        for (const system of systems) await setFault(stack, system, { mode: 'none' })
      }
    }
  ]
}

export interface FaultSuiteOptions {
  ratePerSecond: number
  /** 1 for the short run in the default tests; larger for `npm run test:faults`. */
  scale: number
  only?: string[]
  say?: (text: string) => void
}

/**
 * Runs each scenario under a steady stream of creates and updates, lets the stack recover, and checks
 * the same invariants after each. The services run as processes of their own, so they can be killed.
 */
export async function runFaultSuite(options: FaultSuiteOptions): Promise<ScenarioReport[]> {
  const say = options.say ?? (() => {})
  // Enough retry budget to outlast every outage here (about a minute); ordering and idempotency are the production ones.
  const stack = await startProcessStack({
    retry: { retries: 40, timeoutMs: 2000, timeoutMultiplier: 1.5, maxTimeoutMs: 5000, backoffMs: 200, maxBackoffMs: 1500 },
    circuitBreaker: { consecutiveFailures: 5, halfOpenAfterMs: 1000 }
  })
  const status = await TopicReader.open(stack.infrastructure.kafkaBrokers, topics.syncStatus)
  const inSync = (cifId: string, version: number): boolean =>
    status.forKey(cifId).some((m) => m.value.type === 'cif.sync.customer.in-sync' && m.value.data.customerVersion === version)
  const reports: ScenarioReport[] = []
  let repeatedBefore = 0
  try {
    for (const scenario of scenarios(options.scale).filter((s) => !options.only?.length || options.only.some((o) => s.name.startsWith(o)))) {
      say(`scenario: ${scenario.name}`)
      const since = new Date()
      const load = runLoad({
        cifUrl: stack.cifUrl,
        apiKey: sourceKey,
        ratePerSecond: options.ratePerSecond,
        durationMs: 8000 * options.scale,
        updateShare: 0.3
      })
      await scenario.inject(stack, (text) => say(`  ${text}`))
      const traffic = await load
      const recoveryMs = await waitUntilDrained(stack, since, 120_000)
      // The last "in sync" messages trail the deliveries by a relay poll or two.
      const statusDeadline = Date.now() + 30_000
      let report = await checkInvariants(stack, since, inSync)
      while (report.lost > 0 && Date.now() < statusDeadline) {
        await sleep(500)
        report = await checkInvariants(stack, since, inSync)
      }
      // The simulator counts repeats since it started; each scenario reports its own.
      const repeatedTotal = report.repeatedCalls
      report.repeatedCalls -= repeatedBefore
      repeatedBefore = repeatedTotal
      reports.push({ scenario: scenario.name, created: traffic.creates, updated: traffic.updates, recoveryMs, ...report })
      say(`  customers ${report.customers}, versions ${report.versions}, deliveries ${report.deliveries}, repeated calls ${report.repeatedCalls}, lost ${report.lost}, recovered in ${recoveryMs} ms`)
      for (const text of report.problems) say(`  ! ${text}`)
    }
  } finally {
    await status.close()
    await stack.stop()
  }
  return reports
}
