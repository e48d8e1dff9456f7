import type { ErrorObject } from 'ajv'

/** One field at fault: `pointer` (RFC 6901) into the JSON body, or the name of a path/query `parameter` or `header`. */
export interface FieldError {
  pointer?: string
  parameter?: string
  header?: string
  detail: string
}

/** An RFC 9457 problem details document; `errors` lists every field at fault. */
export interface Problem {
  type: string
  title: string
  status: number
  detail?: string
  instance?: string
  errors?: FieldError[]
  [extension: string]: unknown
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
 * The problems any API of this project can answer with, whatever its domain; each service declares its
 * own beside its contract and hands them to createHttpServer for the documentation.
 */
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
  notFound: { code: 'not-found', status: 404, title: 'Not found', description: 'No such route.' },
  bodyTooLarge: { code: 'body-too-large', status: 413, title: 'Request body too large', description: 'The body is larger than this API accepts.' },
  unsupportedMediaType: {
    code: 'unsupported-media-type',
    status: 415,
    title: 'Unsupported media type',
    description: 'The body is not sent as `application/json` (or, for PATCH, `application/merge-patch+json`).'
  },
  internalError: {
    code: 'internal-error',
    status: 500,
    title: 'Internal error',
    description: 'Something failed on our side; the request may be retried. Nothing was half-written.'
  }
} as const satisfies Record<string, ProblemType>

/** An error that becomes a problem+json response as it is: the detail is meant for the caller. */
export class ProblemError extends Error {
  readonly status: number
  readonly problem: Problem

  constructor(type: ProblemType, detail: string, extra: Partial<Problem> = {}) {
    super(detail)
    this.status = type.status
    this.problem = { type: problemTypeUri(type.code), title: type.title, status: type.status, detail, ...extra }
  }

  static invalid(errors: FieldError[], detail = 'One or more fields are not valid.'): ProblemError {
    return new ProblemError(httpProblems.validationFailed, detail, { errors })
  }
}

function escapePointer(segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1')
}

function describe(error: ErrorObject): string {
  switch (error.keyword) {
    case 'required':
      return 'is required'
    case 'additionalProperties':
      return 'is not a known field'
    case 'enum':
      return `must be one of: ${(error.params.allowedValues as unknown[]).slice(0, 12).join(', ')}${
        (error.params.allowedValues as unknown[]).length > 12 ? ', …' : ''
      }`
    case 'pattern':
      return 'has characters or a shape that is not allowed here'
    case 'format':
      return `must be a valid ${error.params.format}`
    default:
      return error.message ?? 'is not valid'
  }
}

/** Ajv errors as field errors, one per field (the first reason wins), for the part of the request they came from. */
export function fieldErrorsFromAjv(errors: ErrorObject[], part: string): FieldError[] {
  const byField = new Map<string, FieldError>()
  for (const error of errors) {
    // A failed anyOf (a nullable field) repeats its branches' errors; the branches say more.
    if (error.keyword === 'anyOf' || error.keyword === 'if') continue
    let path = error.instancePath
    if (error.keyword === 'required') path += `/${escapePointer(String(error.params.missingProperty))}`
    if (error.keyword === 'additionalProperties') path += `/${escapePointer(String(error.params.additionalProperty))}`
    if (byField.has(path)) continue
    const detail = describe(error)
    if (part === 'body') byField.set(path, { pointer: path || '/', detail })
    else if (part === 'headers') byField.set(path, { header: path.slice(1), detail })
    else byField.set(path, { parameter: path.slice(1), detail })
  }
  return [...byField.values()]
}
