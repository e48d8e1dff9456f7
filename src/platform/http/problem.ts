import type { ErrorObject } from 'ajv'
import { type FieldError, type ProblemType, problemTypeUri, type Refusal } from '../../contracts/problems.ts'

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

/** The problem document of a problem type, as an API answers it. */
export function problemDocument(type: ProblemType, detail: string, extra: Record<string, unknown> = {}): Problem {
  return { type: problemTypeUri(type.code), title: type.title, status: type.status, detail, ...extra }
}

/** What a refusal (contracts/problems.ts) is answered with: the detail is meant for the caller. */
export function problemOf(refusal: Refusal): Problem {
  return problemDocument(refusal.type, refusal.message, refusal.extra)
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
