import { sql } from 'kysely'
import pg from 'pg'
import type { CustomerAccess } from '../contracts/access.ts'
import { cifIdFromNumber } from '../contracts/cif-id.ts'
import { Customer, type CustomerInput, type CustomerPatch } from '../contracts/customer.ts'
import { customerEvent, customerEventTypes } from '../contracts/customer-events.ts'
import type { EventSigningKey } from '../contracts/event-signature.ts'
import { cifProblems, Refusal } from '../contracts/problems.ts'
import { topics } from '../contracts/topics.ts'
import { outboxMessage } from '../outbox/messages.ts'
import type { NewOutboxMessage } from '../outbox/tables.ts'
import { executePrepared } from '../platform/database/index.ts'
import { customerRecordErrors, normalizeIdentifierValue, reviewFlagsOf, todayUtc } from './customer-rules.ts'
import { erasedRefusal } from './erasure.ts'
import { type IdempotentRequest, type StoredResponse, storedResponse } from './idempotency.ts'
import { applyMergePatch, changedFields } from './merge-patch.ts'
import type { CifDb, CifTx, CustomerIdentifierTable, CustomerRow } from './tables.ts'

const customerFieldOrder = Object.keys(Customer.properties)
const UNIQUE_VIOLATION = '23505'

/**
 * The API's view of a row, fields in the contract's order (jsonb keeps its own order). Review flags are
 * worked out from the record as it is, so records stored before a flag existed have it too.
 */
export function toCustomer(row: CustomerRow): Customer {
  const flags = reviewFlagsOf(row.record)
  const values: Record<string, unknown> = {
    ...row.record,
    reviewFlags: flags.length ? flags.map(({ flag }) => flag) : undefined,
    cifId: row.cif_id,
    version: row.version,
    sourceSystem: row.source_system,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString()
  }
  return Object.fromEntries(customerFieldOrder.filter((k) => values[k] !== undefined).map((k) => [k, values[k]])) as Customer
}

/** The source system a request comes from, and what it may do with customers it did not create. */
export interface Caller {
  sourceSystem: string
  may(owner: string, access: CustomerAccess): boolean
}

/** One customer, one CIF: `holder` is named only to a caller that may know of it (its own, or granted). */
function conflict(what: string, holder: { cif_id: string; source_system: string } | undefined, field: string, caller: Caller): Refusal {
  const named = holder && caller.may(holder.source_system, 'name-duplicate')
  return new Refusal(
    cifProblems.customerExists,
    named ? `This ${what} already belongs to customer ${holder.cif_id}.` : `This ${what} already belongs to a customer of another source system.`,
    { ...(named ? { cifId: holder.cif_id } : {}), errors: [{ pointer: field, detail: 'already belongs to another customer' }] }
  )
}

type IdentifierRow = Pick<CustomerIdentifierTable, 'type' | 'issuing_country' | 'normalized_value'>

const identifierRows = (identifiers: CustomerInput['identifiers']): IdentifierRow[] =>
  (identifiers ?? []).map((identifier) => ({
    type: identifier.type,
    issuing_country: identifier.issuingCountry,
    normalized_value: normalizeIdentifierValue(identifier.value)
  }))

/**
 * The refusal for the first of `rows` that belongs to a customer already, or undefined if none does (any
 * more: it was released since the claim failed).
 */
async function identifierConflict(db: CifDb, rows: IdentifierRow[], caller: Caller): Promise<Refusal | undefined> {
  const held = await db
    .selectFrom('customer_identifier')
    .innerJoin('customer', 'customer.cif_id', 'customer_identifier.cif_id')
    .select(['type', 'issuing_country', 'normalized_value', 'customer.cif_id', 'customer.source_system'])
    .where(({ eb, refTuple, tuple }) =>
      eb(
        refTuple('type', 'issuing_country', 'normalized_value'),
        'in',
        rows.map((row) => tuple(row.type, row.issuing_country, row.normalized_value))
      )
    )
    .execute()
  const taken = rows.findIndex((row) =>
    held.some((h) => h.type === row.type && h.issuing_country === row.issuing_country && h.normalized_value === row.normalized_value)
  )
  if (taken < 0) return undefined
  const holder = held.find(
    (h) => h.type === rows[taken]!.type && h.issuing_country === rows[taken]!.issuing_country && h.normalized_value === rows[taken]!.normalized_value
  )
  return conflict(rows[taken]!.type, holder, `/identifiers/${taken}`, caller)
}

/**
 * Claims the customer's identifiers. A document held by another customer means the person or company
 * is already known: one customer, one CIF.
 */
async function claimIdentifiers(trx: CifTx, cifId: string, identifiers: CustomerInput['identifiers'], caller: Caller): Promise<void> {
  const rows = identifierRows(identifiers)
  if (!rows.length) return
  const claimed = await trx
    .insertInto('customer_identifier')
    .values(rows.map((row) => ({ ...row, cif_id: cifId })))
    .onConflict((oc) => oc.doNothing())
    .executeTakeFirst()
  if (Number(claimed.numInsertedOrUpdatedRows) === rows.length) return
  throw (await identifierConflict(trx, rows, caller)) ?? conflict('identifier', undefined, '/identifiers', caller)
}

/** The customer a create makes, as its row will read once written (its `created` event is signed over it). */
export function newCustomer(cifId: string, input: CustomerInput, sourceSystem: string, at: Date): Customer {
  return toCustomer({
    cif_id: cifId,
    version: 1,
    legal_form: input.legalForm,
    source_system: sourceSystem,
    external_id: input.externalId ?? null,
    record: input,
    created_at: at,
    updated_at: at,
    erased_at: null,
    erased_by: null,
    erasure_reason: null
  })
}

/** What a create answers: the customer it created, or, for a retry of an idempotent one, the first answer. */
export type CreateOutcome = { kind: 'created'; customer: Customer } | { kind: 'replayed'; response: StoredResponse }

/** An idempotent create's key, and the answer to store under it (in the create's own transaction). */
export interface IdempotentCreate extends IdempotentRequest {
  answer(customer: Customer): StoredResponse
}

interface WaitingCreate {
  input: CustomerInput
  caller: Caller
  /** The create's span, if traced: its event's outbox row carries it to Kafka. */
  traceparent: string | undefined
  idempotency: IdempotentCreate | undefined
  answered(outcome: CreateOutcome): void
  failed(error: unknown): void
}

/** A create with its CIF ID, time, signed event and answer: what is written. */
interface ReadyCreate {
  waiting: WaitingCreate
  customer: Customer
  message: NewOutboxMessage
  identifiers: IdentifierRow[]
  answer: StoredResponse | undefined
}

/**
 * At most this many groups are written at once, each of at most MAX_GROUP creates: creates that arrive
 * while they are written wait and go together in the next group (group commit). Measured on 2 cores
 * (docs/performance.md, "Create path"): PostgreSQL's CPU per create fell about fourfold from one create per
 * statement to groups, the service's own by about as much; alone, a create goes at once, as a group of one.
 */
const WRITERS = 4
const MAX_GROUP = 32
const MAX_RETRIES_AFTER_CONFLICT = 3

/**
 * Creates customers, each with its `created` event signed with `signingKey` and, given an idempotency key,
 * the answer stored under it. A group of concurrent creates is one statement, so one transaction: customers,
 * identifiers, outbox rows and keys commit together or not at all. A document, externalId or key already
 * taken fails the statement on its unique index (after waiting for an uncommitted holder to commit or roll
 * back); each create of the group is then written alone, so that a bad one fails only itself, and a create
 * that fails alone gets the key's stored answer replayed, or the conflict refused.
 */
export class CustomerCreator {
  readonly #db: CifDb
  readonly #signingKey: EventSigningKey
  readonly #waiting: WaitingCreate[] = []
  #writing = 0

  constructor(db: CifDb, signingKey: EventSigningKey) {
    this.#db = db
    this.#signingKey = signingKey
  }

  create(input: CustomerInput, caller: Caller, idempotency?: IdempotentCreate, traceparent?: string): Promise<CreateOutcome> {
    return new Promise((answered, failed) => {
      this.#waiting.push({ input, caller, traceparent, idempotency, answered, failed })
      this.#writeNext()
    })
  }

  #writeNext(): void {
    while (this.#writing < WRITERS && this.#waiting.length > 0) {
      const group = this.#waiting.splice(0, MAX_GROUP)
      this.#writing++
      void this.#prepare(group)
        .then(
          (ready) => this.#write(ready),
          (error) => {
            for (const create of group) create.failed(error)
          }
        )
        .finally(() => {
          this.#writing--
          this.#writeNext()
        })
    }
  }

  /** Numbers and times first: each event is signed over its customer as created, CIF ID and times included. */
  async #prepare(group: WaitingCreate[]): Promise<ReadyCreate[]> {
    const { rows } = await executePrepared(
      this.#db,
      sql<{ next: string; now: Date }>`
        select nextval('cif_number_seq')::text as next, now() as now from generate_series(1, ${group.length}::integer)`.compile(this.#db)
    )
    return group.map((waiting, i) => {
      const { input, caller, idempotency, traceparent } = waiting
      const { next, now } = rows[i]!
      const customer = newCustomer(cifIdFromNumber(next), input, caller.sourceSystem, now)
      const event = customerEvent(customerEventTypes.created, customer, caller.sourceSystem, this.#signingKey)
      return {
        waiting,
        customer,
        message: outboxMessage(topics.customerEvents, event, traceparent),
        identifiers: identifierRows(input.identifiers),
        answer: idempotency?.answer(customer)
      }
    })
  }

  /** `retries`: how often this create met a holder that was gone when looked for (see #afterConflict). */
  async #write(group: ReadyCreate[], retries = 0): Promise<void> {
    try {
      await executePrepared(this.#db, insertCreates(group).compile(this.#db))
    } catch (error) {
      if (group.length > 1) {
        await Promise.all(group.map((create) => this.#write([create])))
        return
      }
      const [create] = group as [ReadyCreate]
      let outcome: CreateOutcome | 'again'
      try {
        outcome = await this.#afterConflict(create, error)
      } catch (refusal) {
        create.waiting.failed(refusal)
        return
      }
      // Bounded: a holder that keeps coming and going (erased, purged) must not hold a request forever.
      if (outcome === 'again' && retries < MAX_RETRIES_AFTER_CONFLICT) await this.#write(group, retries + 1)
      else if (outcome === 'again') create.waiting.failed(error)
      else create.waiting.answered(outcome)
      return
    }
    for (const create of group) create.waiting.answered({ kind: 'created', customer: create.customer })
  }

  /** Why a create written alone failed: a retry's stored answer, a conflict refused, or, if what it met is gone, 'again'. */
  async #afterConflict(create: ReadyCreate, error: unknown): Promise<CreateOutcome | 'again'> {
    if (!(error instanceof pg.DatabaseError && error.code === UNIQUE_VIOLATION)) throw error
    const { input, caller, idempotency } = create.waiting
    if (idempotency) {
      const stored = await storedResponse(this.#db, caller.sourceSystem, idempotency)
      if (stored) return { kind: 'replayed', response: stored }
    }
    const refusal =
      error.constraint === 'customer_source_external_id'
        ? await externalIdConflict(this.#db, input.externalId!, caller)
        : error.constraint === 'customer_identifier_pkey'
          ? await identifierConflict(this.#db, create.identifiers, caller)
          : undefined
    if (refusal) throw refusal
    // What it met is gone (a customer erased, a key purged): it can be written now.
    if (['idempotency_key_pkey', 'customer_source_external_id', 'customer_identifier_pkey'].includes(error.constraint ?? '')) return 'again'
    throw error
  }
}

/**
 * One statement for a group of creates, its text the same for any group (arrays, one per column), so it is
 * prepared once. The keys are the main statement, which PostgreSQL runs before the WITH parts (with every
 * index taken, the key's is the one reported): a concurrent retry with a key waits there, before writing
 * anything else.
 */
function insertCreates(group: ReadyCreate[]) {
  const column = <T>(value: (create: ReadyCreate) => T) => group.map(value)
  const identifiers = group.flatMap((create) => create.identifiers.map((row) => ({ ...row, cif_id: create.customer.cifId })))
  const keyed = group.filter((create) => create.waiting.idempotency && create.answer)
  return sql`
    with customer as (
      insert into customer (cif_id, version, legal_form, source_system, external_id, record, created_at, updated_at)
      select cif_id, 1, legal_form, source_system, external_id, record, created_at, created_at
      from unnest(${column((c) => c.customer.cifId)}::text[], ${column((c) => c.customer.legalForm)}::text[],
                  ${column((c) => c.customer.sourceSystem)}::text[], ${column((c) => c.waiting.input.externalId ?? null)}::text[],
                  ${column((c) => JSON.stringify(c.waiting.input))}::jsonb[], ${column((c) => c.customer.createdAt)}::timestamptz[])
        as created (cif_id, legal_form, source_system, external_id, record, created_at)
    ), customer_identifier as (
      insert into customer_identifier (type, issuing_country, normalized_value, cif_id)
      select type, issuing_country, normalized_value, cif_id
      from unnest(${identifiers.map((row) => row.type)}::text[], ${identifiers.map((row) => row.issuing_country)}::text[],
                  ${identifiers.map((row) => row.normalized_value)}::text[], ${identifiers.map((row) => row.cif_id)}::text[])
        as claimed (type, issuing_country, normalized_value, cif_id)
    ), outbox_message as (
      insert into outbox_message (event_id, topic, message_key, payload, headers)
      select event_id, topic, message_key, payload, headers
      from unnest(${column((c) => c.message.event_id)}::uuid[], ${column((c) => c.message.topic)}::text[],
                  ${column((c) => c.message.message_key)}::text[], ${column((c) => c.message.payload)}::text[],
                  ${column((c) => c.message.headers)}::jsonb[])
        as published (event_id, topic, message_key, payload, headers)
    )
    insert into idempotency_key (source_system, key, request_hash, response_status, response_body, response_headers)
    select source_system, key, request_hash, response_status, response_body, response_headers
    from unnest(${keyed.map((c) => c.customer.sourceSystem)}::text[], ${keyed.map((c) => c.waiting.idempotency!.key)}::text[],
                ${keyed.map((c) => c.waiting.idempotency!.requestHash)}::text[], ${keyed.map((c) => c.answer!.status)}::integer[],
                ${keyed.map((c) => JSON.stringify(c.answer!.body))}::jsonb[], ${keyed.map((c) => JSON.stringify(c.answer!.headers))}::jsonb[])
      as answered (source_system, key, request_hash, response_status, response_body, response_headers)`
}

/** externalIds are unique per source system: the holder is always the caller's own customer. */
async function externalIdConflict(db: CifDb, externalId: string, caller: Caller): Promise<Refusal | undefined> {
  const holder = await db
    .selectFrom('customer')
    .select(['cif_id', 'source_system'])
    .where('source_system', '=', caller.sourceSystem)
    .where('external_id', '=', externalId)
    .executeTakeFirst()
  return holder && conflict('externalId', holder, '/externalId', caller)
}

/**
 * The customer, if it exists and the caller may read it: another source system's is as unknown as none.
 * An erased one is refused as such (`customer-erased`), to a caller that may read it only.
 */
export async function findCustomer(db: CifDb, cifId: string, caller: Caller): Promise<Customer | undefined> {
  const row = await db.selectFrom('customer').selectAll().where('cif_id', '=', cifId).executeTakeFirst()
  if (!row || !caller.may(row.source_system, 'read')) return undefined
  if (row.erased_at) throw erasedRefusal(row)
  return toCustomer(row)
}

/**
 * Applies a merge patch if the caller saw the current version (optimistic concurrency). The row lock
 * also orders this customer's events: a later version's outbox row is always written after an earlier one's.
 * The `updated` event is signed with `signingKey`.
 */
export async function updateCustomer(
  trx: CifTx,
  cifId: string,
  patch: CustomerPatch,
  expectedVersion: number,
  caller: Caller,
  signingKey: EventSigningKey,
  traceparent?: string
): Promise<Customer> {
  const row = await trx.selectFrom('customer').selectAll().where('cif_id', '=', cifId).forUpdate().executeTakeFirst()
  // Checked before the version, so that a 412 does not tell another source system that the customer exists.
  if (!row || !caller.may(row.source_system, 'update')) throw new Refusal(cifProblems.customerNotFound, `No customer has CIF ID ${cifId}.`)
  if (row.erased_at) throw erasedRefusal(row)
  if (row.version !== expectedVersion) {
    throw new Refusal(
      cifProblems.versionMismatch,
      `The customer is at version ${row.version}, not ${expectedVersion}; read it again and reapply your change.`,
      {
        currentVersion: row.version
      }
    )
  }
  const before = row.record
  const after = applyMergePatch(before, patch) as Record<string, unknown>
  const errors = customerRecordErrors(after, todayUtc())
  if (errors.length) throw Refusal.invalid(errors, 'The customer would not be valid after this change.')
  const changed = changedFields(before, after)
  if (changed.length === 0) return toCustomer(row)

  if (changed.includes('identifiers')) {
    await trx.deleteFrom('customer_identifier').where('cif_id', '=', cifId).execute()
    await claimIdentifiers(trx, cifId, (after as CustomerInput).identifiers, caller)
  }
  const updated = await trx
    .updateTable('customer')
    .set({ version: row.version + 1, record: JSON.stringify(after), updated_at: sql`now()` })
    .where('cif_id', '=', cifId)
    .returningAll()
    .executeTakeFirstOrThrow()
  const customer = toCustomer(updated)
  const event = customerEvent(customerEventTypes.updated, customer, caller.sourceSystem, signingKey, changed)
  await trx
    .insertInto('outbox_message')
    .values(outboxMessage(topics.customerEvents, event, traceparent))
    .execute()
  return customer
}
