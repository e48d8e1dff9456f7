import { Writable } from 'node:stream'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { createLogger, redactPaths } from '../../src/platform/logger.ts'

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

describe('the local stack’s log, for a person', () => {
  it('writes time, level, service and message first, the other fields after on the same line, redacted as JSON is', () => {
    let text = ''
    const sink = new Writable({
      write: (chunk, _encoding, done) => {
        text += String(chunk)
        done()
      }
    })
    const log = createLogger('info', 'up', 'pretty', sink).child({ service: 'syncer' }).child({ endSystem: 'crm' })
    log.warn({ cifId: '10000000009', lastName: 'Lovelace' }, 'delivery will be retried')
    log.debug('not at info')
    const lines = text.trimEnd().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(
      /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: syncer: delivery will be retried \{"endSystem":"crm","cifId":"10000000009","lastName":"\[redacted\]"\}$/
    )
  })
})
