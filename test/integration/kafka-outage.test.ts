import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CifService } from '../../src/cif/service.ts'
import { type DatabaseHandle, openDatabase } from '../../src/platform/database/index.ts'
import type { LocalKafka } from '../../src/platform/local/kafka-broker.ts'
import type { Simulator } from '../../src/simulator/service.ts'
import type { Syncer } from '../../src/syncer/service.ts'
import type { TestDatabase } from '../support/database.ts'
import { call, connections, newPerson, startOwnBroker, startTestCifService } from './helpers.ts'
import { deliveriesOf, eventually, startTestSimulator, startTestSyncer } from './syncer-helpers.ts'

// The syncer's side of a broker outage: its intake must come back by itself, and say while it cannot.
// The stall period is short here (5 s, against 30 s by default), so that a watchdog acting where it must
// not would do so within the test.
describe('the syncer through a Kafka outage', () => {
  let kafka: LocalKafka
  let broker: Awaited<ReturnType<typeof startOwnBroker>>
  let database: DatabaseHandle<TestDatabase>
  let cif: CifService
  let simulator: Simulator
  let syncer: Syncer

  beforeAll(async () => {
    // One partition: a second syncer in the group has none, as when there are more syncers than partitions.
    broker = await startOwnBroker(1)
    kafka = broker.kafka
    database = openDatabase<TestDatabase>(connections().databaseUrl, { maxConnections: 4 })
    cif = await startTestCifService({ kafka: kafka.cluster })
    simulator = await startTestSimulator()
    syncer = await startOutageSyncer()
  })
  afterAll(async () => {
    await syncer?.close()
    await simulator?.close()
    await cif?.close()
    await database?.close()
    await broker?.remove()
  })

  const startOutageSyncer = () =>
    startTestSyncer(
      simulator,
      {},
      {
        connections: { kafka: kafka.cluster },
        env: { SYNCER_GROUP_ID: 'cif-syncer-outage-test', SYNCER_INTAKE_STALL_MS: '5000', SYNCER_INTAKE_UNREADY_AFTER_MS: '2000' }
      }
    )
  const create = async (): Promise<string> => {
    const created = await call(cif.url, 'POST', '/v1/customers', { body: newPerson() })
    expect(created.status).toBe(201)
    return created.body.cifId
  }
  const delivered = (cifId: string) =>
    eventually(
      () => deliveriesOf(database, cifId),
      (rows) => rows.length === 3 && rows.every((row) => row.state === 'SUCCESS'),
      60_000
    )
  const readiness = () => call(syncer.url, 'GET', '/health/ready', { key: null })

  it('reports the intake not ready while it cannot consume, comes back by itself, and delivers what waited', async () => {
    await delivered(await create())
    // The lag is measured every few seconds; once everything is committed it is 0.
    const before = await eventually(readiness, (answer) => answer.body.details.intake.lag === 0, 30_000)
    expect(before.status).toBe(200)
    expect(before.body.details.intake).toMatchObject({ state: 'consuming', unableSince: null, restarts: 0 })

    await kafka.stop('SIGKILL')
    const waiting = [await create(), await create(), await create()]
    const notReady = await eventually(
      readiness,
      (answer) => answer.body.checks.intake === 'down' && answer.body.details.intake.state === 'recovering',
      60_000
    )
    expect(notReady.status).toBe(503)
    expect(notReady.body.details.intake.lag).toBeNull() // Kafka cannot say while it is away; no stale figure either
    expect(notReady.body.details.intake.lastRestart.reason).toMatch(/^its (stream|consumer) failed: /)

    await kafka.start()
    for (const cifId of waiting) await delivered(cifId)
    const ready = await eventually(readiness, (answer) => answer.status === 200, 30_000)
    expect(ready.body.details.intake).toMatchObject({ state: 'consuming', unableSince: null })
    expect(ready.body.details.intake.restarts).toBeGreaterThanOrEqual(1)
    // It came back by its own recovery, not because the watchdog found it stuck.
    expect(ready.body.details.intake.lastRestart.reason).not.toMatch(/^watchdog/)
    // And it goes on consuming: a customer made after the outage arrives too.
    await delivered(await create())
  })

  it('waits out a frozen broker instead of replacing its consumer, and says meanwhile that it cannot consume', async () => {
    await delivered(await create())
    const { restarts: restartsBefore, lastRestart: lastRestartBefore } = (await readiness()).body.details.intake
    // A frozen broker keeps its connections open and answers nothing: the client sees no error for a long while.
    process.kill(kafka.pid()!, 'SIGSTOP')
    try {
      const notReady = await eventually(readiness, (answer) => answer.body.checks.intake === 'down', 30_000)
      expect(notReady.body.checks.kafka).toBe('down')
      expect(notReady.body.details.intake.lastFetchAgeMs).toBeGreaterThan(5000)
      // A new consumer could do no better against a broker that answers nobody: the watchdog holds back.
      expect(notReady.body.details.intake.restarts).toBe(restartsBefore)
    } finally {
      process.kill(kafka.pid()!, 'SIGCONT')
    }
    await delivered(await create())
    const ready = await eventually(readiness, (answer) => answer.status === 200, 30_000)
    expect(ready.body.details.intake).toMatchObject({ state: 'consuming', unableSince: null })
    // The client may have had to start its stream over once the broker thawed; the watchdog never had to.
    const { lastRestart } = ready.body.details.intake
    if (lastRestart?.at !== lastRestartBefore?.at) expect(lastRestart.reason).not.toMatch(/^watchdog/)
  })

  it('keeps a syncer that has no partition consuming and ready, through an outage too', async () => {
    const second = await startOutageSyncer()
    try {
      const readinessOfBoth = () => Promise.all([syncer, second].map((s) => call(s.url, 'GET', '/health/ready', { key: null })))
      const allConsuming = (answers: Awaited<ReturnType<typeof readinessOfBoth>>) =>
        answers.every((answer) => answer.status === 200 && answer.body.details.intake.state === 'consuming')
      const settled = await eventually(
        readinessOfBoth,
        (answers) => allConsuming(answers) && answers.some((a) => a.body.details.intake.partitions === 0),
        30_000
      )
      expect(settled.map((answer) => answer.body.details.intake.partitions).sort()).toEqual([0, 1])

      await kafka.stop()
      const waiting = await create()
      await kafka.start()
      await delivered(waiting)
      await eventually(readinessOfBoth, allConsuming, 30_000)
    } finally {
      await second.close()
    }
  })
})
