import { sql } from 'kysely'
import type { CustomerAccess } from '../contracts/access.ts'
import { cifIdFromNumber } from '../contracts/cif-id.ts'
import { Customer, type CustomerInput, type CustomerPatch } from '../contracts/customer.ts'
import { customerEvent, customerEventTypes } from '../contracts/customer-events.ts'
import type { EventSigningKey } from '../contracts/event-signature.ts'
import { cifProblems, Refusal } from '../contracts/problems.ts'
import { topics } from '../contracts/topics.ts'
import { outboxMessage } from '../outbox/messages.ts'
import { customerRecordErrors, normalizeIdentifierValue, reviewFlagsOf, todayUtc } from './customer-rules.ts'
import { erasedRefusal } from './erasure.ts'
import { applyMergePatch, changedFields } from './merge-patch.ts'
import type { CifDb, CifTx, CustomerRow } from './tables.ts'

const customerFieldOrder = Object.keys(Customer.properties)

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

/**
 * Claims the customer's identifiers. A document held by another customer means the person or company
 * is already known: one customer, one CIF.
 */
async function claimIdentifiers(trx: CifTx, cifId: string, identifiers: CustomerInput['identifiers'], caller: Caller): Promise<void> {
  if (!identifiers?.length) return
  const rows = identifiers.map((identifier) => ({
    type: identifier.type,
    issuing_country: identifier.issuingCountry,
    normalized_value: normalizeIdentifierValue(identifier.value),
    cif_id: cifId
  }))
  const claimed = await trx
    .insertInto('customer_identifier')
    .values(rows)
    .onConflict((oc) => oc.doNothing())
    .returning(['type', 'issuing_country', 'normalized_value'])
    .execute()
  if (claimed.length === rows.length) return
  const taken = rows.findIndex(
    (row) => !claimed.some((c) => c.type === row.type && c.issuing_country === row.issuing_country && c.normalized_value === row.normalized_value)
  )
  const holder = await trx
    .selectFrom('customer_identifier')
    .innerJoin('customer', 'customer.cif_id', 'customer_identifier.cif_id')
    .select(['customer.cif_id', 'customer.source_system'])
    .where('type', '=', rows[taken]!.type)
    .where('issuing_country', '=', rows[taken]!.issuing_country)
    .where('normalized_value', '=', rows[taken]!.normalized_value)
    .executeTakeFirst()
  throw conflict(rows[taken]!.type, holder, `/identifiers/${taken}`, caller)
}

/** Creates the customer and, in the same transaction, its `created` event, signed with `signingKey`. */
export async function createCustomer(trx: CifTx, input: CustomerInput, caller: Caller, signingKey: EventSigningKey): Promise<Customer> {
  const { sourceSystem } = caller
  const { next } = await sql<{ next: string }>`select nextval('cif_number_seq')::text as next`.execute(trx).then((r) => r.rows[0]!)
  const cifId = cifIdFromNumber(next)
  const row = await trx
    .insertInto('customer')
    .values({
      cif_id: cifId,
      version: 1,
      legal_form: input.legalForm,
      source_system: sourceSystem,
      external_id: input.externalId ?? null,
      record: JSON.stringify(input)
    })
    .onConflict((oc) => oc.columns(['source_system', 'external_id']).where('external_id', 'is not', null).doNothing())
    .returningAll()
    .executeTakeFirst()
  if (!row) {
    // externalIds are unique per source system: the holder is always the caller's own customer.
    const holder = await trx
      .selectFrom('customer')
      .select(['cif_id', 'source_system'])
      .where('source_system', '=', sourceSystem)
      .where('external_id', '=', input.externalId!)
      .executeTakeFirst()
    throw conflict('externalId', holder, '/externalId', caller)
  }
  await claimIdentifiers(trx, cifId, input.identifiers, caller)
  const customer = toCustomer(row)
  await trx
    .insertInto('outbox_message')
    .values(outboxMessage(topics.customerEvents, customerEvent(customerEventTypes.created, customer, sourceSystem, signingKey)))
    .execute()
  return customer
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
