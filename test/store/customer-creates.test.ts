import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type CreateOutcome, CustomerCreator } from '../../src/cif/customer-store.ts'
import { cifProblems, Refusal } from '../../src/contracts/problems.ts'
import { newPerson } from '../integration/helpers.ts'
import { asCif } from '../support/database.ts'
import { devSigningKey } from '../support/event-keys.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'

let database: OwnDatabase
beforeAll(async () => {
  database = await ownDatabase(8)
  await sql`create extension if not exists pg_stat_statements`.execute(database.db)
})
afterAll(async () => database?.close())

const caller = { sourceSystem: 'branch-portal', may: () => true }
const keyed = (key: string) => ({ key, requestHash: `hash-${key}`, answer: (customer: unknown) => ({ status: 201, body: customer, headers: {} }) })

/** How often this database ran the statement that writes creates, since the last reset. */
async function groupsWritten(): Promise<number> {
  const { rows } = await sql<{ calls: number }>`
    select coalesce(sum(calls), 0)::integer as calls from pg_stat_statements
    where dbid = (select oid from pg_database where datname = current_database()) and query like '%insert into idempotency_key%'`.execute(database.db)
  return rows[0]!.calls
}

/**
 * Runs `creates` behind four others, all asked for in the same tick: the four take the creator's four
 * writers, one create each, so `creates` wait and are written as one group when the first writer is free.
 */
async function asOneGroup(creator: CustomerCreator, creates: () => Promise<CreateOutcome>[]): Promise<PromiseSettledResult<CreateOutcome>[]> {
  await sql`select pg_stat_statements_reset(0, (select oid from pg_database where datname = current_database()), 0)`.execute(database.db)
  const ahead = Array.from({ length: 4 }, () => creator.create(newPerson() as never, caller))
  const outcomes = Promise.allSettled(creates())
  await Promise.all(ahead)
  return outcomes
}

describe('group commit of concurrent creates', () => {
  it('writes creates that arrive while others are written as one group, each answered on its own', async () => {
    const creator = new CustomerCreator(asCif(database.db), devSigningKey)
    const people = Array.from({ length: 12 }, () => newPerson())
    const outcomes = await asOneGroup(creator, () =>
      people.map((person, i) => creator.create(person as never, caller, i % 2 ? keyed(person.externalId) : undefined))
    )
    expect(outcomes.map((o) => o.status === 'fulfilled' && o.value.kind)).toEqual(people.map(() => 'created'))
    const cifIds = outcomes.map((o) => (o as PromiseFulfilledResult<{ customer: { cifId: string } }>).value.customer.cifId)
    expect(new Set(cifIds).size).toBe(12)
    // The four ahead one statement each, then the twelve in one.
    expect(await groupsWritten()).toBe(5)
    const stored = await database.db
      .selectFrom('customer')
      .select(['cif_id', 'external_id'])
      .where('cif_id', 'in', cifIds)
      .orderBy('cif_id')
      .execute()
    expect(stored).toEqual(
      people.map((person, i) => ({ cif_id: cifIds[i], external_id: person.externalId })).sort((a, b) => a.cif_id!.localeCompare(b.cif_id!))
    )
    const published = await database.db.selectFrom('outbox_message').select('message_key').where('message_key', 'in', cifIds).execute()
    expect(published).toHaveLength(12)
    const keys = await database.db
      .selectFrom('idempotency_key')
      .select('key')
      .where(
        'key',
        'in',
        people.map((p) => p.externalId)
      )
      .execute()
    expect(keys).toHaveLength(6)
  })

  it('fails only the bad creates of a group: the others are written, a retry in the same group is replayed', async () => {
    const creator = new CustomerCreator(asCif(database.db), devSigningKey)
    const known = newPerson()
    const existing = await creator.create(known as never, caller)
    if (existing.kind !== 'created') throw new Error('expected a customer')
    const good = Array.from({ length: 6 }, () => newPerson())
    const retried = newPerson()
    const sameDocument = newPerson({ identifiers: known.identifiers })
    const outcomes = await asOneGroup(creator, () => [
      ...good.map((person) => creator.create(person as never, caller)),
      creator.create(retried as never, caller, keyed(retried.externalId)),
      creator.create(sameDocument as never, caller),
      creator.create(retried as never, caller, keyed(retried.externalId))
    ])
    expect(outcomes.slice(0, 6).map((o) => o.status === 'fulfilled' && o.value.kind)).toEqual(good.map(() => 'created'))
    const [first, refused, second] = outcomes.slice(6)
    const kinds = [first, second].map((o) => (o as PromiseFulfilledResult<CreateOutcome>).value.kind).sort()
    expect(kinds).toEqual(['created', 'replayed'])
    expect(refused!.status).toBe('rejected')
    const refusal = (refused as PromiseRejectedResult).reason
    expect(refusal).toBeInstanceOf(Refusal)
    expect(refusal).toMatchObject({ type: cifProblems.customerExists, extra: { cifId: existing.customer.cifId } })
    const written = await database.db
      .selectFrom('customer')
      .select('external_id')
      .where(
        'external_id',
        'in',
        [...good, retried, sameDocument].map((p) => p.externalId)
      )
      .execute()
    expect(written.map((row) => row.external_id).sort()).toEqual([...good, retried].map((p) => p.externalId).sort())
  })
})
