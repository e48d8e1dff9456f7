import type { deliveryActions, TransitionName } from './states.ts'

/**
 * Maker-checker for the operator actions that give up on data or move many customers at once: one person
 * requests, another approves or rejects. The request states, the kinds of request and the rule that decides
 * an answer, in one place; the store (api/action-request-store.ts), the database's check constraints (held to
 * these lists by a store test) and the API schemas take them from here.
 *
 * A single redrive needs no second person: it sends again what the syncer was already going to deliver, the
 * same version under the same Idempotency-Key, and loses nothing. A skip gives a customer's change up for good
 * in one end system, and a bulk redrive puts many customers on an end system that may only just have
 * recovered: those two wait for a second person.
 */

export const requestStates = ['PENDING', 'APPROVED', 'REJECTED', 'EXPIRED'] as const
export type RequestState = (typeof requestStates)[number]

export const requestStateMeanings: Record<RequestState, string> = {
  PENDING: 'waits for another person with the role approver to approve or reject it',
  APPROVED: 'approved, and applied to those of its deliveries that still qualified (appliedTo)',
  REJECTED: 'rejected; nothing was done',
  EXPIRED: 'nobody answered it in time (SYNCER_ACTION_REQUEST_EXPIRY_MS); nothing was done'
}

/** What a request asks for, and the move it makes on each of its deliveries once approved. */
export const requestKinds = {
  SKIP: 'skip',
  BULK_REDRIVE: 'redrive'
} as const satisfies Record<string, TransitionName & keyof typeof deliveryActions>
export type RequestKind = keyof typeof requestKinds

export type Verdict = 'approve' | 'reject'
const verdictState = { approve: 'APPROVED', reject: 'REJECTED' } as const satisfies Record<Verdict, RequestState>

/** A request as far as answering it goes. */
export interface RequestToDecide {
  state: RequestState
  requestedBy: string
  expiresAt: Date
}

export type RequestDecision =
  | { state: (typeof verdictState)[Verdict] }
  /** The one who asked may not answer: a request is someone else's to decide. */
  | { refused: 'own-request' }
  /** It was answered already, or expired: `state` says which. */
  | { refused: 'decided'; state: Exclude<RequestState, 'PENDING'> }
  /** It was PENDING, but its time ran out: it becomes EXPIRED. */
  | { refused: 'expired' }

/**
 * Whether `decider` may give `verdict` on `request` at `now`, and the state the request then takes. The
 * own-request rule comes first, so that a requester never learns more by trying; an expired request is
 * refused even when nobody has marked it yet.
 */
export function decide(request: RequestToDecide, decider: string, verdict: Verdict, now: Date): RequestDecision {
  if (request.requestedBy === decider) return { refused: 'own-request' }
  if (request.state !== 'PENDING') return { refused: 'decided', state: request.state }
  if (now.getTime() >= request.expiresAt.getTime()) return { refused: 'expired' }
  return { state: verdictState[verdict] }
}
