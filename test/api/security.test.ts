import { X509Certificate } from 'node:crypto'
import { connect } from 'node:net'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import { cifProblems, httpProblems } from '../../src/contracts/problems.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import type { HttpServer } from '../../src/platform/http/server.ts'
import { redactPaths } from '../../src/platform/logger.ts'
import { type CertificateFiles, TestCertificates } from '../support/certificates.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { call, cifApp, keys, newPerson, problemType, testConfig } from './helpers.ts'

// Who may see and change what, and what a client may take of a server: the CIF API on its own database.
const reportingKey = 'test-reporting-key'
const withReporting = (grants: string, env: Record<string, string> = {}) =>
  testConfig({
    CIF_SOURCE_SYSTEMS: [
      `branch-portal=${apiKeyHash(keys.branchPortal)}`,
      `onboarding-app=${apiKeyHash(keys.onboardingApp)}`,
      `reporting=${apiKeyHash(reportingKey)}`
    ].join(','),
    CIF_SOURCE_SYSTEM_GRANTS: grants,
    ...env
  })

/** Well-formed, and no customer's. */
const unknownCifId = cifIdFromNumber(9_999_999_999)

let database: OwnDatabase
let app: HttpServer
const logLines: Record<string, unknown>[] = []
const logSink = new Writable({
  write: (chunk, _encoding, done) => {
    for (const line of String(chunk).split('\n').filter(Boolean)) logLines.push(JSON.parse(line))
    done()
  }
})

beforeAll(async () => {
  database = await ownDatabase()
  app = await cifApp(database, withReporting('reporting:read-all,reporting:see-duplicates'), pino({ level: 'info', redact: redactPaths }, logSink))
})
afterAll(async () => {
  await app?.close()
  await database?.close()
})

async function createdBy(key: string, overrides: Record<string, unknown> = {}) {
  const person = newPerson(overrides)
  const created = await call(app, 'POST', '/v1/customers', { body: person, key })
  expect(created.status).toBe(201)
  return { cifId: created.body.cifId as string, person }
}

describe('each source system sees only its own customers, unless granted more', () => {
  it('answers another source system’s customer exactly as an unknown one: read, change, or stale change', async () => {
    const { cifId } = await createdBy(keys.branchPortal)
    const unknown = unknownCifId
    for (const [method, options] of [
      ['GET', {}],
      ['PATCH', { body: { email: 'taken@example.com' }, headers: { 'if-match': '"1"' } }],
      // A wrong version must not answer 412 either: that would say the customer exists.
      ['PATCH', { body: { email: 'taken@example.com' }, headers: { 'if-match': '"7"' } }]
    ] as const) {
      const theirs = await call(app, method, `/v1/customers/${cifId}`, { ...options, key: keys.onboardingApp })
      const none = await call(app, method, `/v1/customers/${unknown}`, { ...options, key: keys.onboardingApp })
      expect(theirs.status, method).toBe(404)
      expect(theirs.body.type).toBe(problemType(cifProblems.customerNotFound))
      expect({ ...theirs.body, detail: theirs.body.detail.replace(cifId, 'X'), instance: undefined }).toEqual({
        ...none.body,
        detail: none.body.detail.replace(unknown, 'X'),
        instance: undefined
      })
    }
    const mine = await call(app, 'GET', `/v1/customers/${cifId}`)
    expect(mine.status).toBe(200)
    expect(mine.body.email).toBe('ada@example.com')
  })

  it('says an identifier is taken without naming another source system’s customer, but names one’s own', async () => {
    const { cifId, person } = await createdBy(keys.branchPortal)
    const again = newPerson({ identifiers: person.identifiers })
    const theirs = await call(app, 'POST', '/v1/customers', { body: again, key: keys.onboardingApp })
    expect(theirs.status).toBe(409)
    expect(theirs.body.type).toBe(problemType(cifProblems.customerExists))
    expect(theirs.body.cifId).toBeUndefined()
    expect(JSON.stringify(theirs.body)).not.toContain(cifId)
    expect(theirs.body.errors).toEqual([{ pointer: '/identifiers/0', detail: 'already belongs to another customer' }])
    const mine = await call(app, 'POST', '/v1/customers', { body: again })
    expect(mine.status).toBe(409)
    expect(mine.body.cifId).toBe(cifId)
  })

  it('lets a source system granted read-all and see-duplicates read and be told, but not change', async () => {
    const { cifId, person } = await createdBy(keys.branchPortal)
    const read = await call(app, 'GET', `/v1/customers/${cifId}`, { key: reportingKey })
    expect(read.status).toBe(200)
    expect(read.body.cifId).toBe(cifId)
    const duplicate = await call(app, 'POST', '/v1/customers', { body: newPerson({ identifiers: person.identifiers }), key: reportingKey })
    expect(duplicate.body.cifId).toBe(cifId)
    const change = await call(app, 'PATCH', `/v1/customers/${cifId}`, {
      body: { branchCode: 'SIN01' },
      headers: { 'if-match': '"1"' },
      key: reportingKey
    })
    expect(change.status).toBe(404)
  })

  it('lets a source system granted update-all change another’s customer, recorded as the one that changed it', async () => {
    const granted = await cifApp(database, withReporting('reporting:update-all'))
    try {
      const { cifId } = await createdBy(keys.branchPortal)
      const change = await call(granted, 'PATCH', `/v1/customers/${cifId}`, {
        body: { branchCode: 'SIN01' },
        headers: { 'if-match': '"1"' },
        key: reportingKey
      })
      expect(change.status).toBe(200)
      expect(change.body).toMatchObject({ version: 2, branchCode: 'SIN01', sourceSystem: 'branch-portal' })
      const [event] = await database.db
        .selectFrom('outbox_message')
        .select('payload')
        .where('message_key', '=', cifId)
        .orderBy('id', 'desc')
        .execute()
      expect(JSON.parse(event!.payload)).toMatchObject({ customerversion: 2, sourcesystem: 'reporting' })
    } finally {
      await granted.close()
    }
  })

  it('refuses grants for unknown source systems or of unknown kinds at start', () => {
    expect(() => withReporting('nobody:read-all')).toThrow(/not a source system/)
    expect(() => withReporting('reporting:read-everything')).toThrow(/must look like name:grant/)
  })

  it('writes the caller into the access log of every request, and never the customer', async () => {
    const { cifId, person } = await createdBy(keys.branchPortal)
    logLines.length = 0
    await call(app, 'GET', `/v1/customers/${cifId}`, { key: reportingKey })
    const completed = logLines.find((line) => line.msg === 'request completed')
    expect(completed).toMatchObject({ caller: 'reporting' })
    expect(JSON.stringify(logLines)).not.toContain(person.lastName)
  })
})

describe('mixed-script names', () => {
  it('accepts them flagged for review, tells the log which field and never the value, and clears the flag once fixed', async () => {
    const { cifId } = await createdBy(keys.branchPortal, { lastName: 'Lovel\u0430ce' })
    const read = await call(app, 'GET', `/v1/customers/${cifId}`)
    expect(read.body.reviewFlags).toEqual(['MIXED_SCRIPT_NAME'])
    const told = logLines.find((line) => line.cifId === cifId && line.reviewFlag)
    expect(told).toMatchObject({ level: 40, reviewFlag: 'MIXED_SCRIPT_NAME', fields: ['lastName'], caller: 'branch-portal' })
    expect(JSON.stringify(logLines.filter((line) => line.cifId === cifId))).not.toContain('Lovel')

    const fixed = await call(app, 'PATCH', `/v1/customers/${cifId}`, { body: { lastName: 'Lovelace' }, headers: { 'if-match': '"1"' } })
    expect(fixed.status).toBe(200)
    expect(fixed.body).not.toHaveProperty('reviewFlags')
    // Set by the CIF service only.
    const forged = await call(app, 'PATCH', `/v1/customers/${cifId}`, { body: { reviewFlags: [] }, headers: { 'if-match': '"2"' } })
    expect(forged.status).toBe(400)
    expect((await call(app, 'POST', '/v1/customers', { body: newPerson({ reviewFlags: [] }) })).status).toBe(400)
  })
})

describe('keys', () => {
  it('takes the Bearer scheme in any case', async () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER']) {
      const answer = await call(app, 'GET', `/v1/customers/${unknownCifId}`, {
        key: null,
        headers: { authorization: `${scheme} ${keys.branchPortal}` }
      })
      expect(answer.status, scheme).toBe(404)
    }
  })

  it('accepts a caller’s new key beside its old one, and refuses the old one once it has expired, saying so', async () => {
    const rotating = await cifApp(
      database,
      testConfig({
        CIF_SOURCE_SYSTEMS: [
          `branch-portal=${apiKeyHash(keys.branchPortal)}@2020-01-01T00:00:00Z`,
          `branch-portal=${apiKeyHash('test-branch-portal-new-key')}`,
          `onboarding-app=${apiKeyHash('test-onboarding-old-key')}@2999-01-01T00:00:00Z`,
          `onboarding-app=${apiKeyHash(keys.onboardingApp)}`
        ].join(',')
      })
    )
    try {
      const expired = await call(rotating, 'GET', `/v1/customers/${unknownCifId}`)
      expect(expired.status).toBe(401)
      expect(expired.body.detail).toBe('The API key expired at 2020-01-01T00:00:00.000Z; use your new one.')
      expect((await call(rotating, 'GET', `/v1/customers/${unknownCifId}`, { key: 'test-branch-portal-new-key' })).status).toBe(404)
      for (const key of ['test-onboarding-old-key', keys.onboardingApp]) {
        expect((await call(rotating, 'GET', `/v1/customers/${unknownCifId}`, { key })).status, key).toBe(404)
      }
    } finally {
      await rotating.close()
    }
  })

  it('locks an address out after repeated failed authentications, even for a right key, and says for how long', async () => {
    const locking = await cifApp(database, testConfig({ AUTH_FAILURES_BEFORE_LOCKOUT: '3', AUTH_LOCKOUT_MS: '60000' }))
    try {
      for (let i = 0; i < 3; i++) expect((await call(locking, 'GET', `/v1/customers/${unknownCifId}`, { key: `wrong-key-${i}` })).status).toBe(401)
      const locked = await call(locking, 'GET', `/v1/customers/${unknownCifId}`)
      expect(locked.status).toBe(429)
      expect(locked.body.type).toBe(problemType(httpProblems.tooManyRequests))
      expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(50)
    } finally {
      await locking.close()
    }
  })
})

describe('limits', () => {
  it('answers 429 with Retry-After past the per-minute limit of a key, and never to health probes', async () => {
    const limited = await cifApp(database, testConfig({ HTTP_RATE_LIMIT_PER_MINUTE: '5' }))
    try {
      const answers = []
      for (let i = 0; i < 6; i++) answers.push(await call(limited, 'GET', `/v1/customers/${unknownCifId}`))
      expect(answers.map((a) => a.status)).toEqual([404, 404, 404, 404, 404, 429])
      expect(answers[5]!.body.type).toBe(problemType(httpProblems.tooManyRequests))
      expect(Number(answers[5]!.headers.get('retry-after'))).toBeGreaterThan(0)
      // Another key has its own allowance.
      expect((await call(limited, 'GET', `/v1/customers/${unknownCifId}`, { key: keys.onboardingApp })).status).toBe(404)
      for (let i = 0; i < 10; i++) expect((await call(limited, 'GET', '/health/live', { key: null })).status).toBe(200)
    } finally {
      await limited.close()
    }
  })

  it('cuts a request whose body does not arrive within the request timeout', async () => {
    const slow = await cifApp(database, testConfig({ HTTP_REQUEST_TIMEOUT_MS: '1000' }))
    try {
      await slow.listen({ host: '127.0.0.1', port: 0 })
      const { port } = slow.server.address() as { port: number }
      const started = Date.now()
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.write(
            `POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${keys.branchPortal}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`
          )
        })
        let received = ''
        socket.on('data', (chunk) => {
          received += String(chunk)
        })
        socket.on('close', () => resolve(received))
        socket.on('error', reject)
      })
      expect(answer).toMatch(/^HTTP\/1\.1 408/)
      expect(Date.now() - started).toBeLessThan(5000)
    } finally {
      await slow.close()
    }
  })

  it('closes an idle kept-alive connection after the keep-alive timeout, and refuses connections beyond the cap', async () => {
    const capped = await cifApp(database, testConfig({ HTTP_KEEP_ALIVE_TIMEOUT_MS: '1000', HTTP_MAX_CONNECTIONS: '1' }))
    try {
      await capped.listen({ host: '127.0.0.1', port: 0 })
      const { port } = capped.server.address() as { port: number }
      const open = (request?: string) =>
        new Promise<{ received: string; closedAfterMs: number }>((resolve, reject) => {
          const started = Date.now()
          let received = ''
          const socket = connect(port, '127.0.0.1', () => {
            if (request) socket.write(request)
          })
          socket.on('data', (chunk) => {
            received += String(chunk)
          })
          socket.on('close', () => resolve({ received, closedAfterMs: Date.now() - started }))
          socket.on('error', reject)
        })
      // The first connection asks once and keeps the connection: the server closes it once idle for 1 s.
      const first = open('GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n')
      await new Promise((resolve) => setTimeout(resolve, 200))
      // Meanwhile a second one is over the cap of one: closed at once, unanswered.
      const second = await open('GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n')
      expect(second.received).toBe('')
      expect(second.closedAfterMs).toBeLessThan(1000)
      const kept = await first
      expect(kept.received).toMatch(/^HTTP\/1\.1 200/)
      expect(kept.closedAfterMs).toBeGreaterThanOrEqual(1000)
      expect(kept.closedAfterMs).toBeLessThan(5000)
    } finally {
      await capped.close()
    }
  })

  it('sends security headers, and no-store on every answer', async () => {
    const answer = await call(app, 'GET', `/v1/customers/${unknownCifId}`)
    expect(answer.headers.get('cache-control')).toBe('no-store')
    expect(answer.headers.get('x-content-type-options')).toBe('nosniff')
    expect(answer.headers.get('content-security-policy')).toContain("default-src 'self'")
    expect(answer.headers.get('strict-transport-security')).toBeNull() // plain HTTP here: HSTS comes with TLS
  })
})

describe('API documentation', () => {
  it('is served where configured public, and is not there at all where off', async () => {
    expect((await call(app, 'GET', '/openapi.json', { key: null })).status).toBe(200)
    const closed = await cifApp(database, withReporting('', { API_DOCS: 'off' }))
    try {
      for (const path of ['/openapi.json', '/docs', '/docs/json']) {
        expect((await call(closed, 'GET', path, { key: null })).status, path).toBe(404)
      }
      expect((await call(closed, 'GET', `/v1/customers/${unknownCifId}`)).status).toBe(404)
      expect((await call(closed, 'POST', '/v1/customers', { body: newPerson() })).status).toBe(201)
    } finally {
      await closed.close()
    }
  })
})

describe('TLS', () => {
  const certificates = new TestCertificates()
  const serverAuthority = certificates.authority('api-ca')
  const server = certificates.issue(serverAuthority, 'cif-service')
  // A dedicated authority for the source systems' client certificates, and one that is not it.
  const clientAuthority = certificates.authority('source-systems-ca')
  const branchPortal = certificates.issue(clientAuthority, 'branch-portal')
  const onboardingApp = certificates.issue(clientAuthority, 'onboarding-app')
  // Same authority, same name as the branch portal's: not the pinned certificate.
  const lookAlike = certificates.issue(clientAuthority, 'branch-portal')
  const stranger = certificates.issue(certificates.authority('other-ca'), 'branch-portal')
  const fingerprint = (files: CertificateFiles) => new X509Certificate(certificates.read(files.certFile)).fingerprint256
  const https = { TLS_CERT_FILE: server.certFile, TLS_KEY_FILE: server.keyFile }
  const withClientCertificates = {
    ...https,
    TLS_CLIENT_CA_FILE: clientAuthority.certFile,
    CIF_SOURCE_SYSTEM_CERTIFICATES: `branch-portal=${fingerprint(branchPortal)},onboarding-app=${fingerprint(onboardingApp).replaceAll(':', '')}`
  }
  afterAll(() => certificates.remove())

  // The access log's line is written once the answer has gone out: a client over the network may read the
  // answer first, hence expect.poll below.

  /** The CIF API over HTTPS with `env`, and a GET through it with a client certificate or none, and a key or none. */
  async function serving(env: Record<string, string>, test: (get: Get) => Promise<void>): Promise<void> {
    const secure = await cifApp(database, testConfig(env), pino({ level: 'info', redact: redactPaths }, logSink))
    const agents: Agent[] = []
    try {
      const address = await secure.listen({ host: '127.0.0.1', port: 0 })
      expect(address).toMatch(/^https:/)
      await test(async (path, { certificate, key }) => {
        const client = certificate ? { cert: certificates.read(certificate.certFile), key: certificates.read(certificate.keyFile) } : {}
        const agent = new Agent({ connect: { ca: certificates.read(serverAuthority.certFile), ...client } })
        agents.push(agent)
        const answer = await request(`${address}${path}`, { dispatcher: agent, headers: key ? { authorization: `Bearer ${key}` } : {} })
        const body = (await answer.body.json()) as { detail?: string }
        return { status: answer.statusCode, detail: body.detail, hsts: answer.headers['strict-transport-security'] }
      })
    } finally {
      await Promise.all(agents.map((agent) => agent.close()))
      await secure.close()
    }
  }
  type Get = (
    path: string,
    from: { certificate?: CertificateFiles; key?: string }
  ) => Promise<{ status: number; detail: string | undefined; hsts: unknown }>
  const customer = `/v1/customers/${unknownCifId}`

  it('serves HTTPS with the configured certificate and key', async () => {
    await serving(https, async (get) => {
      const answer = await get(customer, { key: keys.branchPortal })
      expect(answer.status).toBe(404)
      expect(answer.hsts).toContain('max-age=')
    })
  })

  it('asks a source system with a pinned client certificate for it and its key, and refuses either alone or another’s', async () => {
    await serving(withClientCertificates, async (get) => {
      logLines.length = 0
      expect(await get(customer, { certificate: branchPortal, key: keys.branchPortal })).toMatchObject({ status: 404 })
      await expect.poll(() => logLines.find((line) => line.msg === 'request completed')).toMatchObject({ caller: 'branch-portal' })
      const refused = (detail: string) => ({ status: 401, detail })
      expect(await get(customer, { key: keys.branchPortal })).toMatchObject(refused('Present your client certificate with your API key.'))
      expect(await get(customer, { certificate: branchPortal })).toMatchObject(
        refused('Send your API key as "Authorization: Bearer <key>" with your client certificate.')
      )
      // Pinned by fingerprint: the same name from the same authority, or from another, is not the certificate.
      for (const certificate of [lookAlike, stranger]) {
        expect(await get(customer, { certificate, key: keys.branchPortal })).toMatchObject(
          refused('Present your client certificate with your API key.')
        )
      }
      expect(await get(customer, { certificate: onboardingApp, key: keys.branchPortal })).toMatchObject(
        refused('The client certificate and the API key are not the same caller’s.')
      )
      expect(await get(customer, { certificate: onboardingApp, key: keys.onboardingApp })).toMatchObject({ status: 404 })
      // Health probes connect without a certificate.
      expect(await get('/health/live', {})).toMatchObject({ status: 200 })
    })
  })

  it('takes a pinned certificate alone with TLS_CLIENT_CERTIFICATE_SUFFICES, writing its caller into the access log', async () => {
    await serving({ ...withClientCertificates, TLS_CLIENT_CERTIFICATE_SUFFICES: 'true' }, async (get) => {
      logLines.length = 0
      expect(await get(customer, { certificate: onboardingApp })).toMatchObject({ status: 404 })
      await expect.poll(() => logLines.find((line) => line.msg === 'request completed')).toMatchObject({ caller: 'onboarding-app' })
      expect(await get(customer, { certificate: lookAlike })).toMatchObject({ status: 401 })
      expect(await get(customer, { certificate: onboardingApp, key: keys.branchPortal })).toMatchObject({ status: 401 })
      // A key still does, with no certificate.
      expect(await get(customer, { key: keys.branchPortal })).toMatchObject({ status: 404 })
    })
  })
})

describe('every refusal is a problem', () => {
  it('answers a known path with another method 405, saying which methods it answers', async () => {
    const answer = await call(app, 'DELETE', `/v1/customers/${unknownCifId}`)
    expect(answer.status).toBe(405)
    expect(answer.headers.get('content-type')).toContain('application/problem+json')
    expect(answer.body.type).toBe(problemType(httpProblems.methodNotAllowed))
    expect(answer.headers.get('allow')?.split(', ').sort()).toEqual(['GET', 'HEAD', 'PATCH'])
    expect((await call(app, 'PUT', '/v1/customers')).headers.get('allow')).toBe('POST')
    expect((await call(app, 'GET', '/v1/no-such-thing')).status).toBe(404)
  })

  it('answers a URL the router cannot read with 400 problem+json', async () => {
    for (const url of ['/v1/customers/%zz', `/v1/customers/${'1'.repeat(200)}`]) {
      const answer = await call(app, 'GET', url)
      expect(answer.status, url).toBe(400)
      expect(answer.body.type, url).toBe(problemType(httpProblems.validationFailed))
    }
  })
})
