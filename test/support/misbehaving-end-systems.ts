import { setTimeout as sleep } from 'node:timers/promises'
import { type Misbehaviour, misbehaviourModes } from '../../src/simulator/end-system-simulator.ts'
import type { Scenario } from './fault-suite.ts'
import { operatorKey, type ProcessStack, setFault } from './stack.ts'

/** What the soak can make an end system do: each simulator misbehaviour, and a create answered 201 and never stored. */
export const misbehaviourKinds = [...misbehaviourModes, 'stores-nothing'] as const
export type MisbehaviourKind = (typeof misbehaviourKinds)[number]

/**
 * What each leaves behind once the end system behaves again (docs/reliability.md, "Misbehaving end
 * systems"): `retried`, nothing (the syncer retries until it succeeds); `failed`, creates FAILED by design
 * (nothing to link the customer's updates by, or a 409 the system cannot back up): `redriveFailed` then
 * delivers them, answered from what the system stored under the same Idempotency-Key, no record twice;
 * `missing`, a record the system never stored, found and repaired by reconciliation only.
 */
export const leavesBehind: Record<MisbehaviourKind, 'retried' | 'failed' | 'missing'> = {
  'not-json': 'failed',
  'no-record-id': 'failed',
  'huge-body': 'retried',
  redirect: 'failed',
  trickle: 'retried',
  'cut-after-headers': 'retried',
  'conflict-unknown': 'failed',
  'rate-limit': 'retried',
  'stores-nothing': 'missing'
}

/** The simulator's fault for each kind, for its next `count` calls. */
function faultOf(kind: Exclude<MisbehaviourKind, 'stores-nothing'>, count: number): Misbehaviour {
  switch (kind) {
    case 'huge-body':
      return { mode: kind, megabytes: 50, status: 500, count }
    case 'redirect':
      return { mode: kind, status: 307, count }
    case 'rate-limit':
      return { mode: kind, retryAfterSeconds: 2, as: Math.random() < 0.5 ? 'seconds' : 'date', count }
    default:
      return { mode: kind, count }
  }
}

/**
 * Makes `system` of the stack's simulator misbehave as `kind` for its next `count` calls that kind concerns
 * (creates only for no-record-id, conflict-unknown and stores-nothing), then behave again by itself.
 */
export async function misbehave(stack: ProcessStack, system: string, kind: MisbehaviourKind, count = 3, say?: (text: string) => void): Promise<void> {
  if (kind === 'stores-nothing') {
    const response = await fetch(`${stack.simulatorUrl}/systems/${system}/drift`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'lose-creates', count })
    })
    if (!response.ok) throw new Error(`losing creates on ${system} failed: ${response.status} ${await response.text()}`)
  } else {
    await setFault(stack, system, faultOf(kind, count) as unknown as Record<string, unknown>)
  }
  say?.(`${system} misbehaves: ${kind} x${count}`)
}

/** Redrives every FAILED delivery through the admin API, as an operator would once the end system is fixed; returns how many. */
export async function redriveFailed(stack: ProcessStack, reason = 'the end system misbehaved; fixed'): Promise<number> {
  const failed = await stack.database.db.selectFrom('delivery').select('id').where('state', '=', 'FAILED').execute()
  for (const { id } of failed) {
    const response = await fetch(`${stack.syncerUrl}/v1/admin/deliveries/${id}/redrive`, {
      method: 'POST',
      headers: { authorization: `Bearer ${operatorKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason })
    })
    if (!response.ok) throw new Error(`redriving delivery ${id} failed: ${response.status} ${await response.text()}`)
  }
  return failed.length
}

const systems = ['core-banking', 'crm', 'cards']

/**
 * For the full fault suite (`npm run test:faults -- 'End systems misbehave'`): under load, each misbehaviour the
 * syncer recovers from on its own or by a redrive, on a system picked at random, three calls each; then the
 * systems behave again and what FAILED by design is redriven, as an operator would. The suite's invariants
 * then hold as after any fault: every version in every system once, nothing lost, no record twice.
 * (A create stored nothing is reconciliation's to find: test/store/misbehaving-end-systems.test.ts.)
 */
export function misbehaviourScenario(): Scenario {
  return {
    name: 'End systems misbehave (every misbehaviour, then the FAILED creates redriven)',
    inject: async (stack, say) => {
      for (const kind of misbehaviourKinds.filter((k) => leavesBehind[k] !== 'missing')) {
        await sleep(1500)
        await misbehave(stack, systems[Math.floor(Math.random() * systems.length)]!, kind, 3, say)
      }
      await sleep(3000)
      for (const system of systems) await setFault(stack, system, { mode: 'none' })
      // Attempts under way when the faults ended are recorded before anything is redriven.
      await sleep(5000)
      say(`${await redriveFailed(stack)} FAILED deliveries redriven`)
    }
  }
}
