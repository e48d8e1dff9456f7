import { formatDuration } from '../../platform/duration.ts'

/**
 * The delivery state machine, in one place: the states, the moves between them as data, the remarks
 * the moves write, and the decisions that choose a move. The SQL that moves deliveries
 * (delivery-store.ts, operator-actions.ts, intake/event-store.ts) takes its states and remarks from here;
 * the API schema and the TypeScript type come from the same list, and a store test holds the database's
 * check constraint to it.
 */

/** One delivery per (event, end system): what must reach that system, and where it stands. */
export const deliveryStates = ['PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'SUCCESS', 'FAILED', 'BLOCKED', 'SKIPPED', 'SUPERSEDED', 'RETIRED'] as const
export type DeliveryState = (typeof deliveryStates)[number]

export const stateMeanings: Record<DeliveryState, string> = {
  PENDING: 'stored, waiting for its turn (behind earlier versions of the same customer for the same system)',
  IN_FLIGHT: 'an attempt is calling the end system now',
  RETRY_SCHEDULED: 'an attempt failed in a way a retry may fix; the next one is due at nextAttemptAt',
  SUCCESS: 'the end system holds this version',
  FAILED: 'retrying cannot help or the retries ran out; an operator redrives or skips it',
  BLOCKED: 'waits behind an earlier version of the same customer that FAILED, or for a version before it that has not reached the syncer (a gap)',
  SKIPPED: 'an operator gave up on it on purpose, or the customer was erased before it went',
  SUPERSEDED:
    'not sent: the end system takes the full record (coalesce) and a newer version queued behind it is sent instead, or it already had a newer version when this one arrived',
  RETIRED: 'not sent: its end system was removed from the end systems file'
}

interface Transition {
  from: readonly DeliveryState[]
  to: DeliveryState
  /** What makes the move, in words. */
  cause: string
}

/** Every move a delivery can make; nothing moves a delivery otherwise. */
export const transitions = {
  claim: {
    from: ['PENDING', 'RETRY_SCHEDULED'],
    to: 'IN_FLIGHT',
    cause: 'a lane takes it for an attempt once it is due and every earlier version has gone'
  },
  succeed: { from: ['IN_FLIGHT'], to: 'SUCCESS', cause: 'the end system accepted it' },
  retry: { from: ['IN_FLIGHT'], to: 'RETRY_SCHEDULED', cause: 'the attempt failed in a way a retry may fix, and the retry budget allows one' },
  fail: { from: ['IN_FLIGHT'], to: 'FAILED', cause: 'retrying cannot help, or the retry budget is spent' },
  recoverLease: {
    from: ['IN_FLIGHT'],
    to: 'RETRY_SCHEDULED',
    cause: 'the syncer running the attempt stopped: its lease ran out with no answer recorded'
  },
  block: {
    from: ['PENDING', 'RETRY_SCHEDULED'],
    to: 'BLOCKED',
    cause: 'an earlier version for the same customer and system FAILED, or the version before it has not reached the syncer while an earlier one has'
  },
  unblock: {
    from: ['BLOCKED'],
    to: 'PENDING',
    cause: 'no earlier version FAILED any more (it was redriven or skipped), and none is missing (the version it waited for arrived)'
  },
  redrive: { from: ['FAILED'], to: 'PENDING', cause: 'an operator sends it again, with a fresh retry budget' },
  skip: { from: ['FAILED', 'BLOCKED'], to: 'SKIPPED', cause: 'an operator gives up on it' },
  erase: {
    from: ['PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'FAILED', 'BLOCKED'],
    to: 'SKIPPED',
    cause: "the customer's personal data was erased: nothing of it may be sent any more"
  },
  supersede: {
    from: ['PENDING', 'RETRY_SCHEDULED'],
    to: 'SUPERSEDED',
    cause:
      'a newer version of the customer is queued for the same end system, which takes the full record (coalesce); or, an update arriving late, the system was already sent a newer version'
  },
  retire: {
    from: ['PENDING', 'IN_FLIGHT', 'RETRY_SCHEDULED', 'FAILED', 'BLOCKED'],
    to: 'RETIRED',
    cause: 'a syncer started without its end system in the end systems file'
  }
} as const satisfies Record<string, Transition>
export type TransitionName = keyof typeof transitions

/** What each attempt in the transaction table came to. */
export const attemptStatuses = ['SUCCESS', 'ERROR'] as const
export type AttemptStatus = (typeof attemptStatuses)[number]

/** What an operator can do to a delivery (each recorded, with who and why). */
export const deliveryActions = { redrive: 'REDRIVE', skip: 'SKIP' } as const satisfies Partial<Record<TransitionName, string>>
/**
 * What an operator can do to an end system as a whole: a pause holds its deliveries unattempted (the claim
 * passes them over) until a resume; no delivery changes state for it.
 */
export const endSystemActions = { pause: 'PAUSE', resume: 'RESUME' } as const
/** Every action the operator action log records. */
export const operatorActions = { ...deliveryActions, ...endSystemActions } as const
export type OperatorAction = (typeof operatorActions)[keyof typeof operatorActions]

/** A new delivery starts here, or BLOCKED when an earlier version already FAILED. */
export const initialState: DeliveryState = 'PENDING'

/** States waiting to be claimed, due at `next_attempt_at`. */
export const waitingStates = transitions.claim.from
/**
 * States that let later versions of the customer go: the end system holds this one, or nobody wants it to.
 * No move leaves them, so an event whose deliveries are all settled needs its payload no more (retention).
 */
export const settledStates = ['SUCCESS', 'SKIPPED', 'SUPERSEDED', 'RETIRED'] as const satisfies readonly DeliveryState[]
/** Every other state: the delivery may still move. */
export const openStates: readonly DeliveryState[] = deliveryStates.filter((state) => !(settledStates as readonly DeliveryState[]).includes(state))
/** States a person must act on. */
export const attentionStates = ['FAILED', 'BLOCKED'] as const satisfies readonly DeliveryState[]

export const isWaiting = (state: DeliveryState): boolean => (waitingStates as readonly DeliveryState[]).includes(state)

/**
 * The remarks the moves write, as templates: `{name}` is filled in from TypeScript with `remark()`, or in
 * SQL, row by row, by the store (delivery-store.ts, `remarkSql`).
 */
export const remarkTemplates = {
  waitsBehind: 'waits behind delivery {delivery} (version {version}), which FAILED; redrive or skip it',
  unblocked: 'no longer blocked: the delivery it waited behind was redriven or skipped',
  waitsForVersion:
    'held: version {version} of the customer has not reached the syncer, though an earlier one has (a gap in the versions); it goes after version {version}',
  versionArrived: 'no longer held: the version before it arrived',
  arrivedLate:
    'not sent: {system} was already sent version {version} (delivery {delivery}) when this older version arrived; an older version never goes over a newer one',
  leaseLostAttempt: 'the syncer stopped or stalled during this attempt (syncer down); the delivery is tried again',
  leaseLost: 'the syncer stopped during attempt {attempt} (syncer down); retrying',
  redriven: 'redriven by {operator}: {reason}',
  redrivenOnApproval: 'redriven by {operator}, approved by {approver}: {reason}',
  skipped: 'skipped by {operator}, approved by {approver}: {reason}',
  erased: 'not delivered: the customer was erased by {operator}: {reason}',
  retryScheduled: 'retry {retry} of {retries} in {delay}',
  gaveUp: 'gave up after {attempts} attempts',
  firstAttemptLate: 'first attempt {late} after the event was stored (syncer busy or down)',
  paused: 'paused by {operator}: {reason}',
  resumed: 'waited while {system} was paused; resumed by {operator}: {reason}',
  superseded: 'superseded by version {version} (delivery {delivery}): {system} takes the full record, so only the newest queued version is sent',
  retired: 'retired: {system} is no longer in the end systems file, so this was never sent'
} as const
export type RemarkTemplate = keyof typeof remarkTemplates

export function remark(template: RemarkTemplate, values: Record<string, string | number> = {}): string {
  return remarkTemplates[template].replace(/\{(\w+)\}/g, (_whole, name: string) => String(values[name] ?? `{${name}}`))
}

/** Where a finished attempt takes its delivery. */
export type Decision =
  | { state: typeof transitions.succeed.to; externalId: string | null }
  | { state: typeof transitions.retry.to; delayMs: number }
  | { state: typeof transitions.fail.to }

/**
 * After attempt `roundAttempts` of a round (1-based; a redrive starts a new round): success, a retry
 * while fewer than `retries` retries have been made, or FAILED. `delayMs` says when the retry is due.
 */
export function decideAfterAttempt(
  outcome: 'success' | 'retry' | 'fail',
  roundAttempts: number,
  retries: number,
  externalId: string | null,
  delayMs: () => number
): { decision: Decision; remark: string | null } {
  if (outcome === 'success') return { decision: { state: 'SUCCESS', externalId }, remark: null }
  if (outcome === 'retry' && roundAttempts <= retries) {
    const delay = delayMs()
    return {
      decision: { state: 'RETRY_SCHEDULED', delayMs: delay },
      remark: remark('retryScheduled', { retry: roundAttempts, retries, delay: formatDuration(delay) })
    }
  }
  return { decision: { state: 'FAILED' }, remark: outcome === 'retry' ? remark('gaveUp', { attempts: roundAttempts }) : null }
}

/** A customer's sync state as source systems see it. */
export const customerSyncStates = {
  IN_SYNC: 'every end system holds the latest version',
  IN_PROGRESS: 'deliveries of the latest version are under way',
  NEEDS_ATTENTION: 'a delivery FAILED or is BLOCKED: a person must redrive or skip it',
  PARTIAL: 'done, but an operator skipped some'
} as const
export type CustomerSyncState = keyof typeof customerSyncStates

/**
 * Per end system its latest delivery: all SUCCESS at the latest version is in sync; a FAILED or BLOCKED one needs a
 * person. A system removed from the configuration (its delivery RETIRED) no longer counts.
 */
export function overallState(all: { state: DeliveryState; customer_version: number }[], latestVersion: number): CustomerSyncState {
  const among = (states: readonly DeliveryState[], state: DeliveryState): boolean => states.includes(state)
  const latest = all.filter((d) => d.state !== transitions.retire.to)
  if (latest.some((d) => among(attentionStates, d.state))) return 'NEEDS_ATTENTION'
  if (latest.some((d) => d.customer_version !== latestVersion || !among(settledStates, d.state))) return 'IN_PROGRESS'
  return latest.every((d) => d.state === transitions.succeed.to) ? 'IN_SYNC' : 'PARTIAL'
}
