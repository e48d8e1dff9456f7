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
  throw (await identifierConflict(trx, rows, caller))!
}

/** What a create answers: the customer it created, or, for a retry of an idempotent one, the first answer. */
export type CreateOutcome = { kind: 'created'; customer: Customer } | { kind: 'replayed'; response: StoredResponse }

/** An idempotent create's key, and the answer to store under it (in the create's own transaction). */
export interface IdempotentCreate extends IdempotentRequest {
  answer(customer: Customer): StoredResponse
}

/**
 * Creates the customer and its `created` event, signed with `signingKey`, and stores the answer under an
 * idempotency key if one is given. Everything is one statement, so its own transaction: customer,
 * identifiers, outbox row and key commit together or not at all. A document, externalId or key already
 * taken fails the statement on its unique index (after waiting for an uncommitted holder to commit or roll
 * back); the key's stored answer is then replayed, or the conflict refused.
 */
export async function createCustomer(
  db: CifDb,
  input: CustomerInput,
  caller: Caller,
  signingKey: EventSigningKey,
  idempotency?: IdempotentCreate
): Promise<CreateOutcome> {
  const { sourceSystem } = caller
  // The number and the time first: the event is signed over the customer as created, CIF ID and times included.
  const number = await executePrepared(db, sql<{ next: string; now: Date }>`select nextval('cif_number_seq')::text as next, now() as now`.compile(db))
  const { next, now } = number.rows[0]!
  const customer = toCustomer({
    cif_id: cifIdFromNumber(next),
    version: 1,
    legal_form: input.legalForm,
    source_system: sourceSystem,
    external_id: input.externalId ?? null,
    record: input,
    created_at: now,
    updated_at: now,
    erased_at: null,
    erased_by: null,
    erasure_reason: null
  })
  const message = outboxMessage(topics.customerEvents, customerEvent(customerEventTypes.created, customer, sourceSystem, signingKey))
  const identifiers = identifierRows(input.identifiers)
  const answer = idempotency?.answer(customer)
  try {
    // The key is the main statement, which runs before the WITH parts: a concurrent retry with it waits
    // there, before writing anything else.
    await executePrepared(
      db,
      sql`
        with customer as (
          insert into customer (cif_id, version, legal_form, source_system, external_id, record, created_at, updated_at)
          values (${customer.cifId}, 1, ${input.legalForm}, ${sourceSystem}, ${input.externalId ?? null}, ${JSON.stringify(input)}::jsonb, ${now}, ${now})
        ), customer_identifier as (
          insert into customer_identifier (type, issuing_country, normalized_value, cif_id)
          select type, issuing_country, normalized_value, ${customer.cifId}
          from unnest(${identifiers.map((row) => row.type)}::text[], ${identifiers.map((row) => row.issuing_country)}::text[],
                      ${identifiers.map((row) => row.normalized_value)}::text[]) as claimed (type, issuing_country, normalized_value)
        ), outbox_message as (
          insert into outbox_message (event_id, topic, message_key, payload, headers)
          values (${message.event_id}, ${message.topic}, ${message.message_key}, ${message.payload}, ${message.headers}::jsonb)
        )
        insert into idempotency_key (source_system, key, request_hash, response_status, response_body, response_headers)
        select ${sourceSystem}, ${idempotency?.key ?? null}::text, ${idempotency?.requestHash ?? null}, ${answer?.status ?? null}::integer,
               ${answer ? JSON.stringify(answer.body) : null}::jsonb, ${answer ? JSON.stringify(answer.headers) : null}::jsonb
        where ${idempotency?.key ?? null}::text is not null`.compile(db)
    )
    return { kind: 'created', customer }
  } catch (error) {
    if (!(error instanceof pg.DatabaseError && error.code === UNIQUE_VIOLATION)) throw error
    if (idempotency) {
      const stored = await storedResponse(db, sourceSystem, idempotency)
      if (stored) return { kind: 'replayed', response: stored }
    }
    const refusal =
      error.constraint === 'customer_source_external_id'
        ? await externalIdConflict(db, input.externalId!, caller)
        : error.constraint === 'customer_identifier_pkey'
          ? await identifierConflict(db, identifiers, caller)
          : undefined
    if (refusal) throw refusal
    // What it collided with is gone (a customer erased, a key purged): it can be created now.
    if (['idempotency_key_pkey', 'customer_source_external_id', 'customer_identifier_pkey'].includes(error.constraint ?? '')) {
      return createCustomer(db, input, caller, signingKey, idempotency)
    }
    throw error
  }
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
  signingKey: EventSigningKey
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
  await trx.insertInto('outbox_message').values(outboxMessage(topics.customerEvents, event)).execute()
  return customer
}
