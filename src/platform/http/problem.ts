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

const titles: Record<number, string> = {
  400: 'The request is not valid',
  401: 'Authentication is required',
  403: 'Not allowed',
  404: 'Not found',
  405: 'Method not allowed',
  406: 'Not acceptable',
  409: 'Conflict',
  412: 'Precondition failed',
  413: 'Request body too large',
  415: 'Unsupported media type',
  422: 'Unprocessable request',
  428: 'Precondition required',
  429: 'Too many requests',
  500: 'Internal error',
  503: 'Service unavailable'
}

export function titleFor(status: number): string {
  return titles[status] ?? 'Error'
}

/** An error that becomes a problem+json response as it is: the detail is meant for the caller. */
export class ProblemError extends Error {
  readonly status: number
  readonly problem: Problem

  constructor(status: number, detail: string, extra: Partial<Problem> = {}) {
    super(detail)
    this.status = status
    this.problem = { type: 'about:blank', title: titleFor(status), status, detail, ...extra }
  }

  static invalid(errors: FieldError[], detail = 'One or more fields are not valid.'): ProblemError {
    return new ProblemError(400, detail, { errors })
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
