import { Writable } from 'node:stream'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { redactPaths } from '../../src/platform/logger.ts'

describe('log redaction', () => {
  it('never writes a customer’s personal data or an API key, at the top level or nested', () => {
    const lines: string[] = []
    const sink = new Writable({
      write: (chunk, _encoding, done) => {
        lines.push(String(chunk))
        done()
      }
    })
    const log = pino({ redact: { paths: redactPaths, censor: '[redacted]' } }, sink)
    const customer = {
      firstName: 'Ada',
      lastName: 'Lovelace',
      email: 'ada@example.com',
      mobileNumber: '+6591234567',
      identifiers: [{ value: 'S1234567D' }]
    }
    log.info({ ...customer, customer, event: { data: customer }, req: { headers: { authorization: 'Bearer secret-key' } } }, 'x')
    const line = lines.join('')
    for (const secret of ['Ada', 'Lovelace', 'ada@example.com', '+6591234567', 'S1234567D', 'secret-key']) expect(line).not.toContain(secret)
    expect(line).toContain('[redacted]')
  })
})
