// The drain phase's baseline (bench/drain.ts): the plainest Kafka-to-HTTP pipe built from the syncer's own
// parts, so that the syncer's price for recording every attempt is a ratio measured in the same run. The same
// Kafka client and consumer settings, the same end systems file (mappings, paths, credentials, concurrency
// per system), the same HTTP client (undici) and the same signature check; no database, no masking, no
// circuit breaker, no timeouts: a failed call is simply sent again. Offsets are committed (at least once)
// as a pipe in production would, a partition's offset moving past an event only once all its calls are done.
//
// Run as a process of its own so that its CPU time is measured alone: the environment of the stack's
// services, plus BASELINE_GROUP (a fresh consumer group) and BASELINE_DELIVERIES (when to stop). It writes
// one JSON line on stdout when done: { deliveries, calls, refused, firstAt, lastAt } (times in ms since the
// epoch), then ends when its stdin is closed.
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Message as Message_ } from '@platformatic/kafka'
import { Agent, request } from 'undici'
import type { CustomerEvent } from '../src/contracts/customer-events.ts'
import { checkEventSignature } from '../src/contracts/event-signature.ts'
import { topics } from '../src/contracts/topics.ts'
import { configuredKafka, loadConfig, requireTrustedEventKeys } from '../src/platform/config.ts'
import { createConsumer } from '../src/platform/kafka.ts'
import { loadEndSystems, requestPath } from '../src/syncer/delivery/end-systems-config.ts'
import { mappingInput } from '../src/syncer/delivery/lane.ts'

type Message = Message_<string, string, string, string>

const config = loadConfig(process.env)
const trusted = requireTrustedEventKeys(config)
const expected = Number(process.env.BASELINE_DELIVERIES)
const systems = loadEndSystems(process.env.SYNCER_END_SYSTEMS_FILE!).map((system) => ({
  system,
  agent: new Agent({ connections: system.concurrency, keepAliveTimeout: 30_000, pipelining: 1 }),
  waiting: [] as (() => Promise<void>)[],
  inFlight: 0
}))

let deliveries = 0
let calls = 0
let refused = 0
let firstAt = 0
let lastAt = 0
const { promise: finished, resolve: finish } = Promise.withResolvers<void>()
/** Every event accounted for: delivered everywhere, or refused (which the benchmark then reports as a failure). */
const checkFinished = (): void => {
  if (deliveries + refused * systems.length >= expected) finish()
}

function run(lane: (typeof systems)[number]): void {
  while (lane.inFlight < lane.system.concurrency && lane.waiting.length > 0) {
    const task = lane.waiting.shift()!
    lane.inFlight++
    void task().finally(() => {
      lane.inFlight--
      run(lane)
    })
  }
}

/** One delivery: the mapped payload to one system, sent again until the system takes it. */
async function deliver(lane: (typeof systems)[number], event: CustomerEvent): Promise<void> {
  const { system } = lane
  const operation = system.operations[event.customerversion === 1 ? 'create' : 'update']
  const body = JSON.stringify((await operation.body.evaluate(mappingInput(event))) ?? {})
  // Every event of the backlog is a create: there is no record id to look up for an update's path.
  const url = system.baseUrl + requestPath(operation.path, { cifId: event.subject, externalId: null })
  for (let attempt = 0; ; attempt++) {
    calls++
    try {
      const response = await request(url, {
        method: operation.method,
        dispatcher: lane.agent,
        headers: {
          'content-type': 'application/json',
          accept: 'application/json',
          'idempotency-key': `${event.id}:${system.name}`,
          'user-agent': 'cif-syncer-baseline',
          ...system.authHeaders
        },
        body
      })
      await response.body.text()
      const ok = response.statusCode < 300 || (response.statusCode === 409 && system.createConflictMeansExists)
      if (ok) break
    } catch {
      // sent again below
    }
    await sleep(Math.min(1000, 50 * 2 ** attempt))
  }
  deliveries++
  if (firstAt === 0) firstAt = Date.now()
  lastAt = Date.now()
  checkFinished()
}

const consumer = createConsumer(configuredKafka(config)!, process.env.BASELINE_GROUP!, 'cif-syncer-baseline')
const stream = await consumer.consume({ topics: [topics.customerEvents], mode: 'committed', fallbackMode: 'earliest', maxWaitTime: 50 })

// Per partition, the events in the order read, and whether all their calls are done.
const pending = new Map<number, { message: Message; done: boolean }[]>()
const committing = setInterval(() => {
  for (const queue of pending.values()) {
    let last: Message | undefined
    while (queue[0]?.done) last = queue.shift()!.message
    // A failed commit means these events are read again after a restart: at least once, as intended.
    if (last) Promise.resolve(last.commit()).catch(() => {})
  }
}, 200)

const backlogLimit = Math.max(...systems.map((lane) => lane.system.concurrency)) * 4
stream.on('data', (message: Message) => {
  const entry = { message, done: false }
  const queue = pending.get(message.partition) ?? []
  queue.push(entry)
  pending.set(message.partition, queue)
  const event = JSON.parse(message.value) as CustomerEvent
  if (!checkEventSignature(event, trusted).signed) {
    refused++
    entry.done = true
    checkFinished()
    return
  }
  let left = systems.length
  for (const lane of systems) {
    lane.waiting.push(() =>
      deliver(lane, event).then(() => {
        if (--left === 0) entry.done = true
      })
    )
    run(lane)
  }
  if (!stream.isPaused() && systems.some((lane) => lane.waiting.length > backlogLimit)) {
    stream.pause()
    const resume = setInterval(() => {
      if (systems.every((lane) => lane.waiting.length <= backlogLimit / 2)) {
        clearInterval(resume)
        stream.resume()
      }
    }, 5)
  }
})

await finished
clearInterval(committing)
process.stdout.write(`${JSON.stringify({ deliveries, calls, refused, firstAt, lastAt })}\n`)
// The benchmark reads this process's CPU time from /proc before letting it end (closing stdin): an ended
// process's figures are gone.
process.stdin.resume()
await once(process.stdin, 'end')
await stream.close()
await consumer.close(true)
await Promise.all(systems.map((lane) => lane.agent.close()))
