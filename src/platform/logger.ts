import { type Logger, pino } from 'pino'
import { personalData } from '../contracts/customer.ts'

export type { Logger }

/**
 * Customer data must never reach the logs in clear. Request bodies are never logged; these paths are
 * the safety net for any object that carries a customer record by mistake.
 */
export const redactPaths = ['req.headers.authorization', ...personalData.fields.flatMap((field) => [field, `*.${field}`, `*.*.${field}`])]

export function createLogger(level: string, name: string): Logger {
  return pino({ name, level, redact: { paths: redactPaths, censor: '[redacted]' } })
}
