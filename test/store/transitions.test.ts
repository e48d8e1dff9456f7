import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Refusal, syncerProblems } from '../../src/contracts/problems.ts'
import { recoverExpiredLeases, unblock } from '../../src/syncer/delivery/delivery-store.ts'
import { retireRemovedEndSystems, supersedeQueued } from '../../src/syncer/delivery/end-system-store.ts'
import { redrive } from '../../src/syncer/delivery/operator-actions.ts'
import { type DeliveryState, deliveryStates, type TransitionName, transitions } from '../../src/syncer/delivery/states.ts'
import { eraseCustomerData } from '../../src/syncer/erasure.ts'
import type { DeliveryRow } from '../../src/syncer/tables.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import {
  asClaimed,
  claim,
  claimOne,
  decisions,
  deliveryById,
  deliveryOf,
  expireLease,
  newCifId,
  newEndSystem,
  record,
  skipApproved,
  storeVersions
} from './fixtures.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => database?.close())

// Every delivery walked here is version 3 of a customer of its own, for an end system of its own: room
// below it for an earlier version to fail, and a claim sees nothing but it.
const VERSION = 3
const operator = (deliveryId: string) => ({ deliveryId, operator: 'ops.tan', reason: 'walking the state machine' })

/** How to bring a delivery into each state, by the store functions alone. */
const arrive: Record<DeliveryState, (cifId: string, system: string) => Promise<void>> = {
  PENDING: async () => {},
  IN_FLIGHT: async (_cifId, system) => {
    await claimOne(database.db, system)
  },
  RETRY_SCHEDULED: async (_cifId, system) => {
    await record(database.db, await claimOne(database.db, system), decisions.retry(0))
  },
  SUCCESS: async (_cifId, system) => {
    await record(database.db, await claimOne(database.db, system), decisions.success())
  },
  FAILED: async (_cifId, system) => {
    await record(database.db, await claimOne(database.db, system), decisions.fail())
  },
  BLOCKED: async () => {
    // Stored behind an earlier version that FAILED (see deliveryIn).
  },
  SKIPPED: async (cifId, system) => {
    await record(database.db, await claimOne(database.db, system), decisions.fail())
    await skipApproved(database.db, operator((await deliveryOf(database.db, cifId, system, VERSION)).id))
  },
  SUPERSEDED: async (cifId, system) => {
    await storeVersions(database.db, cifId, [VERSION + 1], [system])
    await supersedeQueued(asSyncer(database.db), system, 10)
  },
  RETIRED: async (_cifId, system) => {
    await retireOnly(system)
  }
}

/** A syncer starting without `system` in its end systems file (and with every other this file made). */
async function retireOnly(system: string): Promise<void> {
  const others = await database.db.selectFrom('delivery').select('end_system').distinct().where('end_system', '<>', system).execute()
  await retireRemovedEndSystems(
    asSyncer(database.db),
    others.map((row) => row.end_system)
  )
}

async function deliveryIn(state: DeliveryState): Promise<DeliveryRow> {
  const cifId = newCifId()
  const system = newEndSystem()
  if (state === 'BLOCKED') {
    await storeVersions(database.db, cifId, [VERSION - 1], [system])
    await record(database.db, await claimOne(database.db, system), decisions.fail())
  }
  await storeVersions(database.db, cifId, [VERSION], [system])
  await arrive[state](cifId, system)
  const delivery = await deliveryOf(database.db, cifId, system, VERSION)
  expect(delivery.state, `brought a delivery to ${state}`).toBe(state)
  return delivery
}

/** An operator action on a delivery it does not apply to is refused; that is the move not being made. */
async function unlessRefused(action: Promise<unknown>): Promise<void> {
  await action.catch((error: unknown) => {
    if (!(error instanceof Refusal && error.type === syncerProblems.deliveryStateConflict)) throw error
  })
}

/** Each transition, made the way the syncer makes it, on one delivery. */
const moves: Record<TransitionName, (d: DeliveryRow) => Promise<void>> = {
  claim: async (d) => {
    await claim(database.db, d.end_system, 100)
  },
  succeed: async (d) => {
    await record(database.db, await asClaimed(database.db, d.id), decisions.success('X-1'))
  },
  retry: async (d) => {
    await record(database.db, await asClaimed(database.db, d.id), decisions.retry(60_000))
  },
  fail: async (d) => {
    await record(database.db, await asClaimed(database.db, d.id), decisions.fail())
  },
  recoverLease: async (d) => {
    await expireLease(database.db, d.id)
    await recoverExpiredLeases(asSyncer(database.db))
  },
  block: async (d) => {
    // Version 1 arrives late, is tried, and fails.
    await storeVersions(database.db, d.cif_id, [1], [d.end_system])
    const claimed = await claim(database.db, d.end_system, 100)
    const create = claimed.find((c) => c.customer_version === 1)!
    await record(database.db, create, decisions.fail())
  },
  unblock: async (d) => {
    // The FAILED versions it waits behind are given up on; then nothing holds it back.
    const failed = await database.db
      .selectFrom('delivery')
      .select('id')
      .where('cif_id', '=', d.cif_id)
      .where('end_system', '=', d.end_system)
      .where('customer_version', '<', d.customer_version)
      .where('state', '=', 'FAILED')
      .execute()
    for (const { id } of failed) await skipApproved(database.db, operator(id))
    await asSyncer(database.db)
      .transaction()
      .execute((trx) => unblock(trx, d.cif_id, d.end_system))
  },
  redrive: (d) => unlessRefused(redrive(asSyncer(database.db), operator(d.id))),
  skip: (d) => unlessRefused(skipApproved(database.db, operator(d.id))),
  erase: async (d) => {
    await eraseCustomerData(asSyncer(database.db), { cifId: d.cif_id, by: 'ops.tan', reason: 'walking the state machine' })
  },
  supersede: async (d) => {
    // A newer version queues behind it for a system that coalesces.
    await storeVersions(database.db, d.cif_id, [d.customer_version + 1], [d.end_system])
    await supersedeQueued(asSyncer(database.db), d.end_system, 100)
  },
  retire: (d) => retireOnly(d.end_system)
}

const named = Object.entries(transitions) as [TransitionName, { from: readonly DeliveryState[]; to: DeliveryState }][]

describe('the state machine in states.ts is the one the SQL runs', () => {
  it('moves a delivery from each declared from-state to the declared to-state, for every transition', async () => {
    const declared: string[] = []
    const walked: string[] = []
    for (const [name, { from, to }] of named) {
      for (const state of from) {
        declared.push(`${name}: ${state} -> ${to}`)
        const delivery = await deliveryIn(state)
        await moves[name](delivery)
        walked.push(`${name}: ${delivery.state} -> ${(await deliveryById(database.db, delivery.id)).state}`)
      }
    }
    expect(walked).toEqual(declared)
    // Every transition was walked, from at least one state.
    expect(new Set(walked.map((line) => line.split(':')[0]))).toEqual(new Set(Object.keys(transitions)))
  })

  it('leaves a delivery where it is when a transition does not apply to its state', async () => {
    const expected: string[] = []
    const observed: string[] = []
    for (const [name, { from }] of named) {
      for (const state of deliveryStates.filter((s) => !from.includes(s))) {
        expected.push(`${name}: ${state} stays ${state}`)
        const delivery = await deliveryIn(state)
        await moves[name](delivery)
        observed.push(`${name}: ${state} stays ${(await deliveryById(database.db, delivery.id)).state}`)
      }
    }
    expect(observed).toEqual(expected)
  })
})
