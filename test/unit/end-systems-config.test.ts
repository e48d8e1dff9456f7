import { describe, expect, it } from 'vitest'
import { customerEvent, customerEventTypes } from '../../src/contracts/customer-events.ts'
import { ConfigError } from '../../src/platform/config.ts'
import { loadEndSystems, parseEndSystems, requestPath } from '../../src/syncer/delivery/end-systems-config.ts'
import { mappingInput } from '../../src/syncer/delivery/lane.ts'
import { devSigningKey } from '../support/event-keys.ts'

const minimal = (system: string) => `
endSystems:
${system}
`
const good = `  - name: ledger
    baseUrl: \${LEDGER_URL:-http://127.0.0.1:9000}/api/
    auth: { type: apiKey, header: X-Api-Key, valueEnv: LEDGER_KEY }
    retry: { retries: 5 }
    operations:
      create: { method: POST, path: /clients, body: '{"ref": cifId}', externalId: id }
      update: { method: PUT, path: '/clients/{externalId}', body: '{"ref": cifId, "v": version}' }`

describe('end systems file', () => {
  it('loads the shipped file with the specification’s defaults', () => {
    const systems = loadEndSystems('config/end-systems.yaml', { CORE_BANKING_TOKEN: 'secret' })
    expect(systems.map((s) => s.name)).toEqual(['core-banking', 'crm', 'cards'])
    expect(systems[0]!.retry).toMatchObject({ retries: 3, timeoutMs: 30_000, timeoutMultiplier: 2 })
    expect(systems[0]!.authHeaders).toEqual({ authorization: 'Bearer secret' })
    expect(systems[2]!.concurrency).toBe(16)
  })

  it('applies defaults, environment and per-system overrides', () => {
    const [ledger] = parseEndSystems(minimal(good), 'test.yaml', { LEDGER_KEY: 'k' })
    expect(ledger).toMatchObject({ baseUrl: 'http://127.0.0.1:9000/api', authHeaders: { 'x-api-key': 'k' }, concurrency: 16 })
    expect(ledger!.retry).toMatchObject({ retries: 5, timeoutMs: 30_000 })
  })

  it('coalesces a system’s queued versions only when told to, and names the line of a wrong setting', () => {
    expect(parseEndSystems(minimal(good), 'test.yaml', { LEDGER_KEY: 'k' })[0]!.coalesce).toBe(false)
    const coalescing = good.replace('    retry:', '    coalesce: true\n    retry:')
    expect(parseEndSystems(minimal(coalescing), 'test.yaml', { LEDGER_KEY: 'k' })[0]!.coalesce).toBe(true)
    expect(() =>
      parseEndSystems(minimal(good.replace('    retry:', '    coalesce: yes please\n    retry:')), 'test.yaml', { LEDGER_KEY: 'k' })
    ).toThrow('test.yaml:6: /endSystems/0/coalesce must be boolean')
  })

  it('names the line of every problem, all at once', () => {
    const text = minimal(`  - name: ledger
    baseUrl: http://127.0.0.1:9000
    auth: { type: bearer, tokenEnv: LEDGER_TOKEN }
    colour: blue
    operations:
      create: { method: GET, path: /clients, body: '{' }
      update: { method: PUT, path: '/clients/{externalId}', body: '{}' }`)
    let message = ''
    try {
      parseEndSystems(text, 'test.yaml', {})
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError)
      message = (error as Error).message
    }
    expect(message).toContain('test.yaml:6: /endSystems/0 has an unknown setting "colour"')
    expect(message).toContain('test.yaml:8: /endSystems/0/operations/create/method must be equal to one of the allowed values')
  })

  it('reports JSONata errors, missing secrets and a missing record id rule with their lines', () => {
    const text = minimal(`  - name: ledger
    baseUrl: http://127.0.0.1:9000
    auth: { type: bearer, tokenEnv: LEDGER_TOKEN }
    operations:
      create: { method: POST, path: /clients, body: '{"a": ' }
      update: { method: PUT, path: '/clients/{externalId}', body: '{}' }`)
    expect(() => parseEndSystems(text, 'test.yaml', {})).toThrow(
      /test.yaml:7: end system "ledger" has a JSONata error in operations.create.body[\s\S]*test.yaml:7: end system "ledger" updates by \{externalId\}[\s\S]*test.yaml:5: end system "ledger" needs the environment variable LEDGER_TOKEN/
    )
  })

  it('refuses YAML that does not parse, with its line', () => {
    expect(() => parseEndSystems('endSystems:\n  - name: [unclosed\n', 'bad.yaml')).toThrow(/bad.yaml:\d+: /)
  })

  it('reports unreadable and invalid TLS files, and TLS settings that cannot work, with the system and the line', () => {
    const text = minimal(`  - name: ledger
    baseUrl: http://127.0.0.1:9000
    tls:
      caFile: no-such-ca.pem
      certFile: ../README.md
    operations:
      create: { method: POST, path: /clients, body: '{}' }
      update: { method: PUT, path: '/clients/{cifId}', body: '{}' }`)
    let message = ''
    try {
      parseEndSystems(text, 'config/test.yaml', {})
    } catch (error) {
      message = (error as Error).message
    }
    expect(message).toContain('config/test.yaml:4: end system "ledger" has tls settings, but its baseUrl "http://127.0.0.1:9000" is not https')
    expect(message).toContain('config/test.yaml:6: end system "ledger" needs both tls.certFile and tls.keyFile, or neither')
    // Paths are relative to the file: config/no-such-ca.pem, and README.md beside config/.
    expect(message).toMatch(/config\/test.yaml:6: end system "ledger" cannot read tls.caFile \S*config\/no-such-ca.pem: ENOENT/)
    expect(message).toMatch(/config\/test.yaml:7: end system "ledger" has tls.certFile \S*README.md, which is not a PEM certificate/)
  })

  it('refuses a file that names a system twice', () => {
    expect(() => parseEndSystems(minimal(`${good}\n${good}`), 'twice.yaml', { LEDGER_KEY: 'k' })).toThrow(
      /twice.yaml:10: end system "ledger" is named twice/
    )
  })
})

describe('reading end systems back (reconciliation)', () => {
  const withReadBack = (extra: string) => `${good}
      read: { method: GET, path: '/clients/{externalId}', record: data, version: v, cifId: ref }
      list: { path: '/clients?after={cursor}', items: items, cifId: ref, externalId: id, next: next }
    compare: '{"ref": cifId}'
${extra}`

  it('compiles read, compare and list, with the schedule, the rate and the repairs', async () => {
    const [ledger] = parseEndSystems(
      minimal(withReadBack('    reconcile: { everyMinutes: 60, ratePerSecond: 5, repair: [MISSING, ALTERED] }')),
      'test.yaml',
      {
        LEDGER_KEY: 'k'
      }
    )
    expect(ledger!.reconcile).toMatchObject({ read: { path: '/clients/{externalId}' }, everyMinutes: 60, repair: ['MISSING', 'ALTERED'] })
    expect(ledger!.readBackRatePerSecond).toBe(5)
    expect(await ledger!.reconcile!.compare.evaluate({ cifId: '10000000009' })).toEqual({ ref: '10000000009' })
    expect(await ledger!.reconcile!.read.record!.evaluate({ data: { ref: 'x' } })).toEqual({ ref: 'x' })
  })

  it('leaves a system without read and compare out of reconciliation, at the default rate', () => {
    const [ledger] = parseEndSystems(minimal(good), 'test.yaml', { LEDGER_KEY: 'k' })
    expect(ledger!.reconcile).toBeUndefined()
    expect(ledger!.readBackRatePerSecond).toBe(50)
  })

  it('names the line of each read-back problem: read without compare, a path with no id, a list without a cursor, bad JSONata, ORPHAN repaired', () => {
    const text = minimal(`${good}
      read: { method: GET, path: /clients }
      list: { path: /clients, items: items, cifId: ref, next: next }
    reconcile: { repair: [ORPHAN] }
  - name: cards
    baseUrl: http://127.0.0.1:9001
    operations:
      create: { method: POST, path: /c, body: '{}' }
      update: { method: PUT, path: '/c/{cifId}', body: '{}' }
      read: { method: GET, path: '/c/{cifId}' }
    compare: '{"a": '`)
    let message = ''
    try {
      parseEndSystems(text, 'test.yaml', { LEDGER_KEY: 'k' })
    } catch (error) {
      message = (error as Error).message
    }
    expect(message).toContain('test.yaml:12: /endSystems/0/reconcile/repair/0 must be equal to one of the allowed values')
    const second = minimal(`${good}
      read: { method: GET, path: /clients }
      list: { path: /clients, items: items, cifId: ref, next: next }
    compare: '{"ref": cifId}'
  - name: cards
    baseUrl: http://127.0.0.1:9001
    operations:
      create: { method: POST, path: /c, body: '{}' }
      update: { method: PUT, path: '/c/{cifId}', body: '{}' }
      read: { method: GET, path: '/c/{cifId}' }
    compare: '{"a": '
  - name: loans
    baseUrl: http://127.0.0.1:9002
    operations:
      create: { method: POST, path: /l, body: '{}' }
      update: { method: PUT, path: '/l/{cifId}', body: '{}' }
      read: { method: GET, path: '/l/{cifId}' }`)
    try {
      parseEndSystems(second, 'test.yaml', { LEDGER_KEY: 'k' })
      message = ''
    } catch (error) {
      message = (error as Error).message
    }
    expect(message).toContain('test.yaml:10: end system "ledger" reads by neither {externalId} nor {cifId} in operations.read.path')
    expect(message).toContain('test.yaml:11: end system "ledger" pages without {cursor} in operations.list.path')
    expect(message).toContain('test.yaml:19: end system "cards" has a JSONata error in compare')
    expect(message).toContain('test.yaml:23: end system "loans" needs both operations.read and compare to be read back, or neither')
  })

  it('refuses a read by record id that cannot tell whose record it got (no cifId)', () => {
    const text = minimal(`${good}
      read: { method: GET, path: '/clients/{externalId}', record: data }
    compare: '{"ref": cifId}'`)
    expect(() => parseEndSystems(text, 'test.yaml', { LEDGER_KEY: 'k' })).toThrow(
      /test\.yaml:10: end system "ledger" reads by \{externalId\} without cifId/
    )
  })
})

describe('finding a record by CIF ID (a create answered without its record id)', () => {
  it('compiles read.externalId for a read by {cifId}, and refuses it on a read by {externalId}, where it would do nothing', async () => {
    const byCifId = minimal(`${good}
      read: { method: GET, path: '/clients?ref={cifId}', record: data, cifId: ref, externalId: data.id }
    compare: '{"ref": cifId}'`)
    const [ledger] = parseEndSystems(byCifId, 'test.yaml', { LEDGER_KEY: 'k' })
    expect(await ledger!.reconcile!.read.externalId!.evaluate({ data: { id: 'L-7', ref: '10000000009' } })).toBe('L-7')
    const byRecordId = minimal(`${good}
      read: { method: GET, path: '/clients/{externalId}', record: data, cifId: ref, externalId: data.id }
    compare: '{"ref": cifId}'`)
    expect(() => parseEndSystems(byRecordId, 'test.yaml', { LEDGER_KEY: 'k' })).toThrow(
      /test\.yaml:10: end system "ledger" has operations\.read\.externalId, which only a read by \{cifId\} uses/
    )
  })
})

describe('requests built from the file', () => {
  it('fills path templates, encoding the values', () => {
    expect(requestPath('/clients/{externalId}/cif/{cifId}', { cifId: '10000000009', externalId: 'a/b c' })).toBe('/clients/a%2Fb%20c/cif/10000000009')
  })

  it('gives mappings the event in a mapping author’s terms', () => {
    const customer = {
      cifId: '10000000009',
      version: 3,
      legalForm: 'PERSON' as const,
      email: 'x@example.com',
      sourceSystem: 'branch-portal',
      createdAt: '2026-11-26T10:00:00.000Z',
      updatedAt: '2026-11-26T11:00:00.000Z'
    }
    expect(mappingInput(customerEvent(customerEventTypes.updated, customer, 'branch-portal', devSigningKey, ['email', 'mobileNumber']))).toEqual({
      cifId: '10000000009',
      version: 3,
      eventType: 'cif.customer.updated',
      changedFields: ['email', 'mobileNumber'],
      customer
    })
  })
})
