/**
 * What a create's answer leaves the customer linked to. Updates address the end system's record by the id
 * the create's answer holds (operations.create.externalId), so when the file says where that id is, a
 * create is SUCCESS only with it: from the answer, or found by reading the record back
 * (operations.read). A create is sent again only when the read-back shows there is no record: a system
 * that took a create and lost its id must not be given a second one (a duplicate record). docs/reliability.md,
 * "Misbehaving end systems".
 */

/** A create the end system took: made now (2xx), or there already (409, with createConflictMeansExists). */
export interface CreateAnswer {
  said: 'created' | 'exists'
  recordId: { kind: 'in-answer'; id: string } | { kind: 'none'; why: 'not-json' | 'not-in-answer' }
}

/** How the system's records can be read back (its `operations.read`), if at all. */
export type ReadBackWay = { kind: 'none' } | { kind: 'by-record-id' } | { kind: 'by-cif-id'; givesRecordId: boolean }

/** What reading the record back gave, or `not-read` when there was nothing to read it by. */
export type Lookup =
  | { kind: 'not-read' }
  | { kind: 'found'; recordId: string | undefined; cifId: string | undefined }
  | { kind: 'absent' }
  | { kind: 'error'; message: string }

export interface Link {
  outcome: 'success' | 'retry' | 'fail'
  externalId: string | null
  remarks: string
}

/**
 * Whether to read the record back before deciding: a 409 is confirmed (the system may say "exists" of a
 * customer it never saw), and an answer without the id is looked up by CIF ID when the read gives the id.
 * A 2xx with the id is taken as it is: that is every create of a well-behaved system, and costs no read.
 */
export function shouldReadBack(answer: CreateAnswer, way: ReadBackWay): boolean {
  if (answer.recordId.kind === 'in-answer') return answer.said === 'exists' && way.kind !== 'none'
  return way.kind === 'by-cif-id' && way.givesRecordId
}

const fixThen = (system: string) =>
  `give ${system} a read by {cifId} with operations.read.externalId in the end systems file, or have ${system} fixed; then redrive or skip`

export function linkCreate(answer: CreateAnswer, lookup: Lookup, system: string, cifId: string): Link {
  const said = answer.said === 'created' ? `${system} accepted the create` : `${system} answered 409 (exists already) to the create`
  const answered = answer.recordId.kind === 'in-answer' ? answer.recordId.id : undefined
  const noId =
    answer.recordId.kind === 'none' ? (answer.recordId.why === 'not-json' ? 'its answer was not JSON' : 'its answer held no record id') : ''
  const noSecondCreate = 'not sent again, as a second create could make a duplicate record'
  switch (lookup.kind) {
    case 'not-read':
      if (answered !== undefined) {
        const remarks = answer.said === 'created' ? said : `${system} already holds this customer (409 on create)`
        return { outcome: 'success', externalId: answered, remarks }
      }
      return {
        outcome: 'fail',
        externalId: null,
        remarks: `${said}, but ${noId}, so updates could not be addressed; ${answer.said === 'created' ? `${noSecondCreate}; ` : ''}${fixThen(system)}`
      }
    case 'found': {
      if (lookup.cifId !== undefined && lookup.cifId !== cifId) {
        const which = answered === undefined ? 'the record read back by CIF ID' : `record ${answered}, which it names,`
        return {
          outcome: 'fail',
          externalId: null,
          remarks: `${said}, but ${which} is another customer's; find this customer's record in ${system}, then redrive or skip`
        }
      }
      const id = lookup.recordId ?? answered
      if (id === undefined) {
        return { outcome: 'fail', externalId: null, remarks: `${said}, but ${noId} and the record read back holds none either; ${fixThen(system)}` }
      }
      const how = answered === undefined ? `${noId}: record ${id} found by reading it back by CIF ID` : `record ${id} read back as this customer's`
      return { outcome: 'success', externalId: id, remarks: `${said}; ${how}` }
    }
    case 'absent':
      if (answer.said === 'exists') {
        return {
          outcome: 'fail',
          externalId: null,
          remarks: `${said}, but read back it holds no record of this customer; ask ${system}'s team why, then redrive or skip`
        }
      }
      // Read back and not there: a second create cannot make a duplicate.
      return { outcome: 'retry', externalId: null, remarks: `${said}, but ${noId} and read back it holds no record of this customer: sent again` }
    case 'error':
      if (answer.said === 'exists') {
        // A 409 again makes no duplicate: trying again is safe.
        return { outcome: 'retry', externalId: null, remarks: `${said}, and it could not be read back to confirm it (${lookup.message})` }
      }
      return {
        outcome: 'fail',
        externalId: null,
        remarks: `${said}, but ${noId} and it could not be read back to find it (${lookup.message}); ${noSecondCreate}: check ${system}, then redrive or skip`
      }
  }
}
