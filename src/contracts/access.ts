/**
 * What a source system may do with customers it did not create. By default nothing: it reads, changes and
 * learns of its own customers only. Each grant widens that, by configuration (CIF_SOURCE_SYSTEM_GRANTS).
 * A request outside the caller's grants is answered as if the customer did not exist (404), so that
 * existence itself does not leak.
 */
export const sourceSystemGrants = {
  'read-all': 'read any customer (CIF API) and its sync state (callback API)',
  'update-all': 'change any customer',
  'see-duplicates': "be told which customer already holds an identifier or externalId, when it is another source system's"
} as const
export type SourceSystemGrant = keyof typeof sourceSystemGrants

export type CustomerAccess = 'read' | 'update' | 'name-duplicate'

/**
 * What an operator may do on the admin API (SYNCER_OPERATOR_ROLES); an operator listed without a role is
 * an `operator`. An approver holds an operator's rights too (a bank's small night shift needs both from the
 * same people), but never decides a request of its own: that is the second person's part (four eyes).
 */
export const operatorRoles = {
  viewer: 'find deliveries, attempts and action requests, and count them: read only',
  operator: 'also redrive one delivery, pause and resume an end system, and request a skip or a bulk redrive (which another person approves)',
  approver: "also approve or reject other people's requests, never their own"
} as const
export type OperatorRole = keyof typeof operatorRoles

/**
 * What a role lets an operator do beyond reading (every operator reads), each right named once; routes ask
 * `mayDo`, never a role's name.
 */
export const operatorRights = {
  act: ['operator', 'approver'],
  decide: ['approver']
} as const satisfies Record<string, readonly OperatorRole[]>
export type OperatorRight = keyof typeof operatorRights

export function mayDo(role: OperatorRole | undefined, right: OperatorRight): boolean {
  return role !== undefined && (operatorRights[right] as readonly OperatorRole[]).includes(role)
}

const grantFor: Record<CustomerAccess, SourceSystemGrant> = { read: 'read-all', update: 'update-all', 'name-duplicate': 'see-duplicates' }

/** Whether `caller` may do `access` to a customer created by `owner`. */
export function mayAccess(
  grants: ReadonlyMap<string, ReadonlySet<SourceSystemGrant>>,
  caller: string,
  owner: string,
  access: CustomerAccess
): boolean {
  return caller === owner || (grants.get(caller)?.has(grantFor[access]) ?? false)
}
