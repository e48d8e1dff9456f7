import type { CustomerEvent } from '../../contracts/customer-events.ts'
import { formatDuration } from '../../platform/duration.ts'
import type { Logger } from '../../platform/logger.ts'
import { FailureLog } from '../../platform/retry.ts'
import { endSpan, SpanKind, traceparentOf } from '../../platform/tracing.ts'
import type { SyncerTelemetry } from '../metrics.ts'
import { EndSystemReader } from '../reconciliation/end-system-reader.ts'
import type { SyncerDb } from '../tables.ts'
import {
  attemptLeases,
  attemptTimeoutMs,
  type CallResult,
  judgeCall,
  LAG_WORTH_A_REMARK_MS,
  MESSAGE_EXCERPT,
  retryAfterCapped,
  retryDelayMs,
  type Verdict
} from './attempt-policy.ts'
import type { AttemptRecorder } from './attempt-recorder.ts'
import { decideClaim } from './claim-policy.ts'
import { type CreateAnswer, type Link, type Lookup, linkCreate, type ReadBackWay, shouldReadBack } from './create-link.ts'
import { type ClaimedDelivery, claimDue, type LeaseTable } from './delivery-store.ts'
import type { EndSystemClient } from './end-system-client.ts'
import { supersedeQueued } from './end-system-store.ts'
import { type EndSystemConfig, requestPath } from './end-systems-config.ts'
import { type Masker, personalDataMasker } from './masking.ts'
import { type Decision, decideAfterAttempt, remark } from './states.ts'

/** An attempt's lease outlives its timeout by this much before another syncer may presume it lost. */
const LEASE_MARGIN_MS = 5000

/** What a payload mapping sees: the event, flattened to what a mapping author needs. */
export interface MappingInput {
  cifId: string
  version: number
  eventType: string
  changedFields: string[]
  customer: Record<string, unknown>
}

export function mappingInput(event: CustomerEvent): MappingInput {
  return {
    cifId: event.subject,
    version: event.customerversion,
    eventType: event.type,
    changedFields: event.changedfields?.split(',') ?? [],
    customer: event.data
  }
}

/**
 * The deliveries of one end system: claims what is due, up to the system's concurrency and what its
 * circuit breaker allows, and runs each attempt. Lanes share nothing but the database pool, so a slow
 * or dead system fills only its own lane.
 */
export class DeliveryLane {
  readonly #system: EndSystemConfig
  readonly #db: SyncerDb
  readonly #client: EndSystemClient
  /** Reads a record back to link a create whose answer lacked its id or said 409 (create-link.ts). */
  readonly #reader: EndSystemReader | undefined
  readonly #recorder: AttemptRecorder
  readonly #leases: LeaseTable
  readonly #claiming: FailureLog
  readonly #recording: FailureLog
  readonly #telemetry: SyncerTelemetry
  readonly #log: Logger
  /** When the circuit opened, while it is open: re-opening after a failed trial call is not news. */
  #circuitOpenSince: number | undefined
  #inFlight = 0
  #pumping: Promise<void> | undefined
  #again = false
  #stopped = false
  /** Since when freed slots wait to be claimed together, and the timer that ends the wait (claim-policy.ts). */
  #gatheringSince: number | undefined
  #gatherTimer: ReturnType<typeof setTimeout> | undefined
  readonly #attempts = new Set<Promise<void>>()

  constructor(system: EndSystemConfig, db: SyncerDb, client: EndSystemClient, recorder: AttemptRecorder, log: Logger, telemetry: SyncerTelemetry) {
    this.#system = system
    this.#telemetry = telemetry
    this.#db = db
    this.#client = client
    this.#reader = system.reconcile && new EndSystemReader(system, system.reconcile)
    this.#recorder = recorder
    this.#leases = attemptLeases(system.retry, LEASE_MARGIN_MS)
    this.#claiming = new FailureLog(log, 'cannot claim deliveries; will retry')
    this.#recording = new FailureLog(log, 'could not finish an attempt; its lease runs out and the delivery is tried again')
    this.#log = log
    client.onCircuitChange((change) => {
      if (change === 'opened' && this.#circuitOpenSince === undefined) {
        this.#circuitOpenSince = Date.now()
        const { consecutiveFailures, halfOpenAfterMs } = system.circuitBreaker
        log.warn(
          { circuit: 'open', failedInARow: consecutiveFailures, trialCallEveryMs: halfOpenAfterMs },
          `circuit open: ${system.name} keeps failing; calls paused but for a trial call now and then`
        )
      } else if (change === 'closed' && this.#circuitOpenSince !== undefined) {
        const openFor = formatDuration(Date.now() - this.#circuitOpenSince)
        this.#circuitOpenSince = undefined
        log.warn({ circuit: 'closed', openFor }, `circuit closed: ${system.name} answers again; calls resume`)
      }
    })
  }

  get inFlight(): number {
    return this.#inFlight
  }

  /** Looks for due deliveries now (new ones stored, one finished, a retry came due). */
  wake(): void {
    if (this.#stopped) return
    if (this.#pumping) {
      this.#again = true
      return
    }
    this.#pumping = this.#pump().finally(() => {
      this.#pumping = undefined
      if (this.#again) {
        this.#again = false
        this.wake()
      }
    })
  }

  /** Stops claiming and waits for the attempts in flight to be recorded. */
  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#gatherTimer)
    await this.#pumping
    await Promise.allSettled([...this.#attempts])
    await this.#reader?.close()
  }

  async #pump(): Promise<void> {
    try {
      while (!this.#stopped) {
        const allowed = this.#client.callsAllowed(this.#inFlight)
        const now = Date.now()
        const decision = decideClaim({
          allowed,
          inFlight: this.#inFlight,
          concurrency: this.#system.concurrency,
          gatheringSinceMs: this.#gatheringSince,
          nowMs: now
        })
        if (decision.kind === 'none') return
        if (decision.kind === 'gather') {
          this.#gatheringSince ??= now
          this.#gatherTimer ??= setTimeout(() => {
            this.#gatherTimer = undefined
            this.wake()
          }, decision.forMs)
          return
        }
        this.#gatheringSince = undefined
        if (this.#system.coalesce) await supersedeQueued(this.#db, this.#system.name, allowed)
        const claimed = await claimDue(this.#db, this.#system.name, allowed, this.#leases)
        this.#claiming.succeeded('claiming deliveries again')
        for (const delivery of claimed) {
          this.#inFlight++
          // The slot is the end system's: it is given back as soon as the system has answered, not when
          // the answer is stored (the next version of this customer still waits for that, in the database).
          let released = false
          const release = (): void => {
            if (released) return
            released = true
            this.#inFlight--
            this.wake()
          }
          const attempt = this.#attempt(delivery, release)
            .then(
              () => this.#recording.succeeded('recording attempts again'),
              // Recording failed (PostgreSQL away): the lease runs out and the delivery is tried again.
              (error: unknown) => this.#recording.failed(error, { deliveryId: delivery.id })
            )
            .finally(() => {
              release()
              this.#attempts.delete(attempt)
            })
          this.#attempts.add(attempt)
        }
        if (claimed.length < allowed) return
      }
    } catch (error) {
      this.#claiming.failed(error)
    }
  }

  async #attempt(delivery: ClaimedDelivery, callDone: () => void): Promise<void> {
    const system = this.#system
    const input = mappingInput(delivery.event)
    const timeoutMs = attemptTimeoutMs(system.retry, delivery.round_attempts)
    const { metrics, tracing } = this.#telemetry
    const span = tracing.start(`${delivery.operation} ${system.name}`, SpanKind.CLIENT, delivery.event_traceparent, {
      'cif.id': delivery.cif_id,
      'cif.end_system': system.name,
      'cif.customer_version': delivery.customer_version,
      'cif.delivery_id': delivery.id,
      'cif.attempt': delivery.attempts
    })
    const traceparent = traceparentOf(span)
    const startedAt = new Date()
    const mask = personalDataMasker(input.customer, delivery.other_versions ?? [])
    const { verdict, externalId } = await this.#call(delivery, input, timeoutMs, mask, traceparent)
    const finishedAt = new Date()
    callDone()
    if (verdict.httpStatus !== null) span.setAttribute('http.response.status_code', verdict.httpStatus)
    // The verdict's remarks name the failure in plain words, masked, never the customer's data.
    endSpan(span, verdict.outcome === 'success' ? undefined : verdict.remarks)
    const outcome = verdict.outcome === 'success' ? 'success' : 'error'
    metrics.attempted(system.name, outcome, finishedAt.getTime() - startedAt.getTime())

    const lateBy = startedAt.getTime() - delivery.created_at.getTime()
    const { decision, remark: decided } = decideAfterAttempt(verdict.outcome, delivery.round_attempts, system.retry.retries, externalId, () =>
      retryDelayMs(system.retry, delivery.round_attempts, verdict.retryAfterMs)
    )
    const remarks = [
      verdict.remarks,
      delivery.attempts === 1 && lateBy >= LAG_WORTH_A_REMARK_MS ? remark('firstAttemptLate', { late: formatDuration(lateBy) }) : null,
      delivery.attempts === 1 ? delivery.remarks : null,
      decided,
      decision.state === 'RETRY_SCHEDULED' ? retryAfterCapped(system.retry, verdict.retryAfterMs) : null
    ]
    const current = await this.#recorder.record({
      delivery,
      attempt: {
        status: verdict.outcome === 'success' ? 'SUCCESS' : 'ERROR',
        httpStatus: verdict.httpStatus,
        // Masked already, before it was cut to an excerpt (see #call).
        message: verdict.message,
        remarks: remarks.filter(Boolean).join('; '),
        timeoutMs,
        startedAt,
        finishedAt,
        traceparent
      },
      decision
    })
    // Counted and told once, as the delivery moves: a stale attempt (its lease ran out and a newer one took the
    // delivery) moved nothing.
    if (current) {
      metrics.moved(system.name, decision.state, new Date(delivery.event.time), finishedAt)
      this.#logMove(delivery, decision, verdict)
    }
  }

  /**
   * Retries and failures at warn, with the CIF ID and the end system (the logger's) and the reason in plain
   * words; never the end system's answer, which may quote the customer. Successes are the attempts table's.
   */
  #logMove(delivery: ClaimedDelivery, decision: Decision, verdict: Verdict): void {
    if (decision.state === 'SUCCESS') return
    const about = {
      cifId: delivery.cif_id,
      customerVersion: delivery.customer_version,
      operation: delivery.operation,
      deliveryId: delivery.id,
      attempt: delivery.round_attempts,
      httpStatus: verdict.httpStatus,
      reason: verdict.remarks
    }
    if (decision.state === 'RETRY_SCHEDULED') {
      this.#log.warn({ ...about, retryIn: formatDuration(decision.delayMs) }, 'delivery will be retried')
    } else {
      this.#log.warn(about, 'delivery FAILED: an operator must redrive or skip it')
    }
  }

  /**
   * Builds the request from the event, calls the end system, and judges its answer. What the end system
   * said is masked before it is judged: the verdict quotes an excerpt of it, and a value cut in two by the
   * excerpt ("…Lovel") would no longer be recognised as the customer's.
   */
  async #call(
    delivery: ClaimedDelivery,
    input: MappingInput,
    timeoutMs: number,
    mask: Masker,
    traceparent: string
  ): Promise<{ verdict: Verdict; externalId: string | null }> {
    const system = this.#system
    const operation = system.operations[delivery.operation]
    const externalId = delivery.xref_external_id
    if (delivery.operation === 'update' && operation.path.includes('{externalId}') && !externalId) {
      const remarks = `${system.name} has no record of this customer yet: its create did not succeed (skipped?)`
      return {
        verdict: { outcome: 'fail', httpStatus: null, message: 'not called: no record id for this customer in this system', remarks },
        externalId
      }
    }
    let body: string
    try {
      body = JSON.stringify((await operation.body.evaluate(input)) ?? {})
    } catch (error) {
      const remarks = `the payload mapping for ${system.name} ${delivery.operation} failed; fix the end systems file`
      return { verdict: { outcome: 'fail', httpStatus: null, message: `mapping error: ${mask((error as Error).message)}`, remarks }, externalId }
    }
    const calledAt = Date.now()
    const result = await this.#client.call({
      method: operation.method,
      url: system.baseUrl + requestPath(operation.path, { cifId: delivery.cif_id, externalId }),
      // A repair sends a version the system was sent before: under the first key the system would answer as
      // then, without storing it again. Each run's delivery has a key of its own, the same on every retry.
      idempotencyKey: `${delivery.event_id}:${system.name}${delivery.reconciliation_run_id ? `:run-${delivery.reconciliation_run_id}` : ''}`,
      body,
      timeoutMs,
      traceparent
    })
    const verdict = judgeCall(maskedAnswer(result, mask), system.name, delivery.operation, system.createConflictMeansExists)
    if (verdict.outcome !== 'success' || delivery.operation !== 'create' || result.kind !== 'response') return { verdict, externalId }
    if (!operation.externalId) return { verdict, externalId: null }
    // What is left of the attempt's time: the read-back must end before the attempt's lease does.
    const link = await this.#link(operation.externalId, result, delivery.cif_id, Math.max(1000, timeoutMs - (Date.now() - calledAt)))
    return { verdict: { ...verdict, outcome: link.outcome, remarks: link.remarks }, externalId: link.externalId }
  }

  /** The record a create the system took is linked to: by its answer, or read back (create-link.ts). */
  async #link(expression: Expression, answered: { status: number; body: string }, cifId: string, timeLeftMs: number): Promise<Link> {
    const id = await readExternalId(expression, answered.body)
    const answer: CreateAnswer = {
      said: answered.status === 409 ? 'exists' : 'created',
      recordId: id !== null ? { kind: 'in-answer', id } : { kind: 'none', why: isJson(answered.body) ? 'not-in-answer' : 'not-json' }
    }
    const reader = this.#reader
    const way: ReadBackWay = !reader
      ? { kind: 'none' }
      : reader.readsByExternalId
        ? { kind: 'by-record-id' }
        : { kind: 'by-cif-id', givesRecordId: reader.findsExternalId }
    let lookup: Lookup = { kind: 'not-read' }
    if (reader && shouldReadBack(answer, way)) {
      const read = await reader.read(cifId, id, timeLeftMs)
      lookup =
        read.kind === 'found'
          ? { kind: 'found', recordId: read.heldExternalId, cifId: read.heldCifId }
          : read.kind === 'unlinked'
            ? { kind: 'not-read' }
            : read
    }
    return linkCreate(answer, lookup, this.#system.name, cifId)
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

/**
 * How much of a long answer is masked: its excerpt quotes the first MESSAGE_EXCERPT characters only, and
 * masking all of an answer (up to 64 KiB) on every attempt would cost more than the rest of the attempt.
 */
const ANSWER_HEAD = 16 * MESSAGE_EXCERPT

/** The end system's answer as the attempt may quote it; the record id is read from the answer itself. */
export function maskedAnswer(result: CallResult, mask: Masker): CallResult {
  if (result.kind === 'network') return { ...result, message: mask(result.message) }
  if (result.kind !== 'response') return result
  // A redirect's target may carry the customer's data in its query, as the request did.
  if (result.location !== undefined) result = { ...result, location: mask(result.location) }
  const { body } = result
  if (body.length <= ANSWER_HEAD) return { ...result, body: mask(body) }
  // A value cut in two at the end of the head is not recognised, so it must lie well past the excerpt.
  // Masking turns two characters or more into three ("***"), and the excerpt flattens whitespace: while
  // the masked head still holds four excerpts on one line, the excerpt ends a thousand characters or more
  // before the head does. When it does not (an answer made mostly of the customer's data), all is masked.
  const head = mask(body.slice(0, ANSWER_HEAD))
  return { ...result, body: head.replace(/\s+/g, ' ').length >= 4 * MESSAGE_EXCERPT ? head : mask(body) }
}

type Expression = NonNullable<EndSystemConfig['operations']['create']['externalId']>

/** The field names of a mapping that is only a path of names (`contact.id`), else undefined; once per expression. */
const plainPaths = new WeakMap<Expression, readonly string[] | undefined>()
function plainPathOf(expression: Expression): readonly string[] | undefined {
  if (plainPaths.has(expression)) return plainPaths.get(expression)
  const ast = expression.ast() as { type: string; steps?: { type: string; value: unknown }[] }
  // Only bare names: a step with anything else (a filter, a group, a focus) has JSONata's meaning to keep.
  const steps = ast.steps ?? []
  const plain =
    ast.type === 'path' &&
    steps.length > 0 &&
    steps.every((step) => step.type === 'name' && Object.keys(step).every((key) => ['type', 'value', 'position'].includes(key)))
      ? steps.map((step) => String(step.value))
      : undefined
  plainPaths.set(expression, plain)
  return plain
}

/**
 * A plain path read directly, or `fallback` where JSONata's meaning differs from a plain read: an array on
 * the way (JSONata maps the rest of the path over it).
 */
function readPlainPath(value: unknown, path: readonly string[]): { value: unknown } | undefined {
  let at = value
  for (const name of path) {
    if (Array.isArray(at)) return undefined
    if (at === null || typeof at !== 'object') return { value: undefined }
    at = (at as Record<string, unknown>)[name]
  }
  return { value: at }
}

/** The record id an end system's answer to a create holds, where `expression` says; null if none. */
export async function readExternalId(expression: EndSystemConfig['operations']['create']['externalId'], body: string): Promise<string | null> {
  if (!expression) return null
  try {
    const answer: unknown = JSON.parse(body)
    // A record id is nearly always a field of the answer: read directly, it costs no JSONata evaluation.
    const path = plainPathOf(expression)
    const read = path && readPlainPath(answer, path)
    const value = read ? read.value : await expression.evaluate(answer)
    return typeof value === 'string' || typeof value === 'number' ? String(value) : null
  } catch {
    return null
  }
}
