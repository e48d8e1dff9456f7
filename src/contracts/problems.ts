import type { ProblemType } from '../platform/http/problem.ts'

/**
 * The problems of the customer APIs, beyond those every API has (platform/http/problem.ts): declared
 * once here, each service raises them by name, and the OpenAPI documents and the README table (checked by
 * a test) list them. A caller tells them apart by `type`, `urn:cif-syncer:problem:<code>`.
 */
const customerNotFound = {
  code: 'customer-not-found',
  status: 404,
  title: 'No such customer',
  description:
    'No customer has this CIF ID (a well-formed one: a wrong check digit is `validation-failed`). On the syncer: none of your source system has it.'
} as const satisfies ProblemType

export const cifProblems = {
  customerNotFound,
  customerExists: {
    code: 'customer-exists',
    status: 409,
    title: 'The customer already has a CIF ID',
    description: 'An identifier (type, value, country) or your `externalId` already belongs to a customer: `cifId` names that customer, `errors` the field.'
  },
  versionMismatch: {
    code: 'version-mismatch',
    status: 412,
    title: 'The customer has changed since you read it',
    description: '`currentVersion` says which version it is at: read it again and reapply your change.'
  },
  ifMatchRequired: {
    code: 'if-match-required',
    status: 428,
    title: 'If-Match is required',
    description: 'Send `If-Match` with the ETag of the version you read, so that no concurrent change is overwritten.'
  },
  idempotencyKeyInUse: {
    code: 'idempotency-key-in-use',
    status: 409,
    title: 'A request with this Idempotency-Key is still being processed',
    description: 'Retry after it completes: the retry then gets its answer.'
  },
  idempotencyKeyReused: {
    code: 'idempotency-key-reused',
    status: 422,
    title: 'This Idempotency-Key was used for another request',
    description: 'The key came with a different body before; use a new key for a new request.'
  },
  idempotencyKeyTakenOver: {
    code: 'idempotency-key-taken-over',
    status: 409,
    title: 'A retry took this request over',
    description: 'This request took so long that a retry with the same Idempotency-Key took it over; that retry answers it, and nothing was created twice.'
  }
} as const satisfies Record<string, ProblemType>

export const syncerProblems = {
  customerNotFound,
  deliveryNotFound: { code: 'delivery-not-found', status: 404, title: 'No such delivery', description: 'No delivery has this id.' },
  deliveryStateConflict: {
    code: 'delivery-state-conflict',
    status: 409,
    title: 'The delivery is not in a state this action applies to',
    description: '`state` says which state it is in: a redrive needs it FAILED, a skip FAILED or BLOCKED.'
  }
} as const satisfies Record<string, ProblemType>
