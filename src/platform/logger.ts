import { type Logger, pino } from 'pino'
import pretty from 'pino-pretty'
import { personalData } from '../contracts/customer.ts'

export type { Logger }

/**
 * Customer data must never reach the logs in clear. Request bodies are never logged; these paths are
 * the safety net for any object that carries a customer record by mistake.
 */
export const redactPaths = ['req.headers.authorization', ...personalData.fields.flatMap((field) => [field, `*.${field}`, `*.*.${field}`])]

/** JSON lines for machines (every process role in production), or lines a person reads (`npm start`). */
export const logFormats = ['json', 'pretty'] as const
export type LogFormat = (typeof logFormats)[number]

/**
 * One line per entry either way; `pretty` puts the time, the level and the service first and the
 * message after, with the other fields on the same line. Redaction applies before either.
 */
export function createLogger(level: string, name: string, format: LogFormat = 'json', destination?: NodeJS.WritableStream): Logger {
  const options = { name, level, redact: { paths: redactPaths, censor: '[redacted]' } }
  if (format === 'json') return destination ? pino(options, destination) : pino(options)
  return pino(
    options,
    pretty({
      ...(destination ? { destination } : {}),
      colorize: destination === undefined && process.stdout.isTTY,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,name,service',
      messageFormat: '{if service}{service}: {end}{msg}',
      singleLine: true,
      // Written before the process exits: the shutdown's last lines are the ones a person looks for.
      sync: true
    })
  )
}
