import { pino, type Logger } from 'pino'

export type { Logger }

/**
 * Customer data must never reach the logs in clear. Request bodies are never logged; these paths are
 * the safety net for any object that carries a customer record by mistake.
 */
const personalDataFields = [
  'firstName', 'middleName', 'lastName', 'fullName', 'dateOfBirth', 'mobileNumber', 'email',
  'identifiers', 'addresses', 'registrationNumber', 'externalId'
]

export const redactPaths = [
  'req.headers.authorization',
  ...personalDataFields.flatMap((field) => [field, `*.${field}`, `*.*.${field}`])
]

export function createLogger(level: string, name: string): Logger {
  return pino({ name, level, redact: { paths: redactPaths, censor: '[redacted]' } })
}
