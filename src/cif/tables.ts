import type { ColumnType, Kysely, Selectable, Transaction } from 'kysely'
import type { OutboxTables } from '../outbox/tables.ts'
import type { DefaultedTimestamp } from '../platform/database/index.ts'

export interface CustomerTable {
  cif_id: string
  version: number
  legal_form: 'PERSON' | 'ENTITY'
  /** The source system that created the customer. */
  source_system: string
  external_id: string | null
  /** The customer's fields as the API shows them, without cifId, version and metadata. */
  record: ColumnType<Record<string, unknown>, string, string>
  created_at: DefaultedTimestamp
  updated_at: DefaultedTimestamp
  /** Set once the customer's personal data was erased (the record is then empty), with who and why. */
  erased_at: Date | null
  erased_by: string | null
  erasure_reason: string | null
}

export interface CustomerIdentifierTable {
  type: string
  issuing_country: string
  /** Upper-cased, without spaces, dots, hyphens or slashes, so "ab-12 3" and "AB123" are one document. */
  normalized_value: string
  cif_id: string
}

export interface IdempotencyKeyTable {
  source_system: string
  key: string
  request_hash: string
  /** The answer the key stands for, written in the same transaction as what it answers. */
  response_status: number
  response_body: ColumnType<unknown, string, string>
  response_headers: ColumnType<Record<string, string>, string, string>
  created_at: DefaultedTimestamp
}

/** The CIF service's tables; migrations in ./migrations. */
export interface CifTables {
  customer: CustomerTable
  customer_identifier: CustomerIdentifierTable
  idempotency_key: IdempotencyKeyTable
}

/** What the CIF service's code may touch: its tables and the outbox it publishes through. */
export type CifDatabase = CifTables & OutboxTables

export type CifDb = Kysely<CifDatabase>
export type CifTx = Transaction<CifDatabase>

export type CustomerRow = Selectable<CustomerTable>
