import type { Kysely } from 'kysely'
import { type CifErasure, eraseCustomer } from '../cif/erasure.ts'
import type { CifDatabase, CifTables } from '../cif/tables.ts'
import { isValidCifId } from '../contracts/cif-id.ts'
import { eraseCustomerData, type SyncerErasure } from '../syncer/erasure.ts'
import type { SyncerDatabase, SyncerTables } from '../syncer/tables.ts'

/** Who asks for the erasure and why: both kept, in each service, for good. */
export interface CustomerErasureRequest {
  cifId: string
  by: string
  reason: string
}

/** Why an erasure was not started: the request itself is wrong. */
export class ErasureRequestError extends Error {
  override name = 'ErasureRequestError'
}

/**
 * Erases one customer's personal data from everything the project keeps (`cif-syncer erase-customer`),
 * each service by its own function on its own tables: the CIF service first, so that no change of the
 * customer can be made or published any more, then the syncer, which from then on stores no payload of
 * that customer's events and sends nothing of them. Each step is one transaction and may be run again:
 * if the second fails, running the command again completes it.
 */
export async function eraseCustomerEverywhere(
  db: Kysely<CifDatabase & SyncerDatabase>,
  request: CustomerErasureRequest
): Promise<{ cif: CifErasure; syncer: SyncerErasure }> {
  const by = request.by.trim()
  const reason = request.reason.trim()
  if (!isValidCifId(request.cifId))
    throw new ErasureRequestError(`"${request.cifId.slice(0, 40)}" is not a CIF ID (11 digits, the last a Luhn check digit).`)
  if (!by || by.length > 100) throw new ErasureRequestError('Say who erases the customer (--by, 1 to 100 characters).')
  if (!reason || reason.length > 500)
    throw new ErasureRequestError('Say why the customer is erased (--reason, 1 to 500 characters), e.g. the request reference.')
  const cleaned = { cifId: request.cifId, by, reason }
  const cif = await eraseCustomer(db.$omitTables<keyof SyncerTables>(), cleaned)
  const syncer = await eraseCustomerData(db.$omitTables<keyof CifTables>(), cleaned)
  return { cif, syncer }
}
