/**
 * Every problem the project's APIs answer with, declared once: those any API has, then the CIF service's
 * and the syncer's. Code raises them by name (a Refusal), the HTTP edge turns a refusal into problem+json
 * (platform/http/problem.ts), and the OpenAPI documents and the README table (checked by a test) list
 * them. A caller tells them apart by `type`, `urn:cif-syncer:problem:<code>`.
 */

/** One field at fault: `pointer` (RFC 6901) into the JSON body, or the name of a path/query `parameter` or `header`. */
export interface FieldError {
  pointer?: string
  parameter?: string
  header?: string
  detail: string
}

/**
 * One kind of problem a caller can act on. `code` is stable: it ends the problem's `type` URI, which is
 * what a caller's code tells problems apart by (the `detail` is prose for people, and may change).
 */
export interface ProblemType {
  code: string
  status: number
  title: string
  /** When it happens and what to do, for the API documentation. */
  description: string
}

export const problemTypeUri = (code: string): string => `urn:cif-syncer:problem:${code}`

/**
 * A request refused for a reason the caller can act on, raised where the rule lives (a store, a route).
 * `extra` members (`errors`, `cifId`, `currentVersion`, ...) go into the problem document as they are.
 */
export class Refusal extends Error {
  override name = 'Refusal'
  readonly type: ProblemType
  readonly extra: Record<string, unknown>

  constructor(type: ProblemType, detail: string, extra: Record<string, unknown> = {}) {
    super(detail)
    this.type = type
    this.extra = extra
  }

  static invalid(errors: FieldError[], detail = 'One or more fields are not valid.'): Refusal {
    return new Refusal(httpProblems.validationFailed, detail, { errors })
  }
}

/** The problems any API of this project can answer with, whatever its domain. */
export const httpProblems = {
  validationFailed: {
    code: 'validation-failed',
    status: 400,
    title: 'One or more fields are not valid',
    description: '`errors` names every field at fault (`pointer` into the body, `parameter` or `header`), each with what is wrong.'
  },
  malformedBody: {
    code: 'malformed-body',
    status: 400,
    title: 'The request body cannot be read',
    description: 'The body is not valid JSON, is empty where a document is expected, or does not match its Content-Length.'
  },
  unauthorized: {
    code: 'unauthorized',
    status: 401,
    title: 'Authentication is required',
    description: 'No API key was sent as `Authorization: Bearer <key>`, or the key is not known.'
  },
  forbidden: {
    code: 'forbidden',
    status: 403,
    title: 'Not allowed to you',
    description:
      'Your key is known, but your role does not allow this action (a viewer may look, not act; only an approver approves or rejects requests).'
  },
  notFound: { code: 'not-found', status: 404, title: 'Not found', description: 'No such route.' },
  methodNotAllowed: {
    code: 'method-not-allowed',
    status: 405,
    title: 'Method not allowed',
    description: 'The path exists, but not with this method: `Allow` lists the methods it answers.'
  },
  bodyTooLarge: { code: 'body-too-large', status: 413, title: 'Request body too large', description: 'The body is larger than this API accepts.' },
  unsupportedMediaType: {
    code: 'unsupported-media-type',
    status: 415,
    title: 'Unsupported media type',
    description: 'The body is not sent as `application/json` (or, for PATCH, `application/merge-patch+json`).'
  },
  tooManyRequests: {
    code: 'too-many-requests',
    status: 429,
    title: 'Too many requests',
    description:
      'More requests than this API allows a caller per minute, or too many failed authentications from your address: wait as long as `Retry-After` says.'
  },
  serviceUnavailable: {
    code: 'service-unavailable',
    status: 503,
    title: 'Service unavailable',
    description:
      'The service cannot reach its database right now (a restart or a network fault): nothing was stored or changed. Retry after the seconds `Retry-After` says; a create with the same `Idempotency-Key`.'
  },
  internalError: {
    code: 'internal-error',
    status: 500,
    title: 'Internal error',
    description: 'Something failed on our side; the request may be retried. Nothing was half-written.'
  }
} as const satisfies Record<string, ProblemType>
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
    description:
      'An identifier (type, value, country) or your `externalId` already belongs to a customer: `cifId` names that customer, `errors` the field.'
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
  idempotencyKeyReused: {
    code: 'idempotency-key-reused',
    status: 422,
    title: 'This Idempotency-Key was used for another request',
    description: 'The key came with a different body before; use a new key for a new request.'
  },
  customerErased: {
    code: 'customer-erased',
    status: 410,
    title: "The customer's personal data was erased",
    description:
      'The customer was erased on request (`erasedAt` says when): its CIF ID stays taken and is never given out again, but it can no longer be read or changed. A replayed create of it answers this too.'
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
  },
  actionRequestNotFound: {
    code: 'action-request-not-found',
    status: 404,
    title: 'No such action request',
    description: 'No skip or bulk redrive request has this id.'
  },
  actionRequestDecided: {
    code: 'action-request-decided',
    status: 409,
    title: 'The action request is no longer pending',
    description: '`state` says what became of it: APPROVED or REJECTED (by someone, once), or EXPIRED (nobody answered in time).'
  },
  fourEyesRequired: {
    code: 'four-eyes-required',
    status: 403,
    title: 'Another person must decide this',
    description: 'You made this request yourself: another operator with the role approver approves or rejects it.'
  },
  endSystemNotFound: {
    code: 'end-system-not-found',
    status: 404,
    title: 'No such end system',
    description: 'No end system of this name is in the end systems file this syncer runs with.'
  },
  endSystemStateConflict: {
    code: 'end-system-state-conflict',
    status: 409,
    title: 'The end system is not in a state this action applies to',
    description: '`paused` says whether it is paused: a pause needs it running, a resume paused.'
  },
  runNotFound: {
    code: 'run-not-found',
    status: 404,
    title: 'No such reconciliation or backfill run',
    description: 'No reconciliation or backfill run has this id (admin API).'
  },
  findingNotFound: {
    code: 'finding-not-found',
    status: 404,
    title: 'No such reconciliation finding',
    description: 'No finding of a reconciliation run has this id (admin API).'
  }
} as const satisfies Record<string, ProblemType>
