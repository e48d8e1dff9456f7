import { execFileSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { checkEventSignature, signEvent } from '../../src/contracts/event-signature.ts'
import {
  ConfigError,
  configuredKafka,
  devEventSigningKey,
  devSourceSystem,
  loadConfig,
  parseApiKeys,
  parseCertificates,
  parseTrustedEventKeys,
  requireEventSigningKey,
  requireTrustedEventKeys
} from '../../src/platform/config.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import { newEventKeyPair } from '../support/event-keys.ts'

const hash = apiKeyHash('a-real-secret-key')

describe('configuration', () => {
  it('has working defaults for the local stack, with the dev source system', () => {
    const config = loadConfig({})
    expect(config.cif).toMatchObject({ host: '127.0.0.1', port: 8080, bodyLimitBytes: 65536 })
    expect(config.databaseUrl).toBeUndefined()
    expect(config.kafkaBrokers).toBeUndefined()
    expect(new Map(config.sourceSystemKeyHashes)).toEqual(new Map([[devSourceSystem.name, [{ hash: apiKeyHash(devSourceSystem.apiKey) }]]]))
  })

  it('reads source systems as name=sha256 pairs, several per caller with an optional expiry, and refuses anything else', () => {
    const other = apiKeyHash('another-key')
    expect(parseApiKeys(`crm=${hash}, branch-portal=${other}`, 'CIF_SOURCE_SYSTEMS')).toEqual(
      new Map([
        ['crm', [{ hash }]],
        ['branch-portal', [{ hash: other }]]
      ])
    )
    // A new key given out before the old one stops: both work until the old one's expiry.
    expect(parseApiKeys(`crm=${hash}@2027-01-31T00:00:00Z,crm=${other}`, 'CIF_SOURCE_SYSTEMS')).toEqual(
      new Map([['crm', [{ hash, expiresAt: new Date('2027-01-31T00:00:00Z') }, { hash: other }]]])
    )
    expect(() => parseApiKeys('crm=plain-text-key', 'CIF_SOURCE_SYSTEMS')).toThrow(ConfigError)
    expect(() => parseApiKeys(`crm=${hash},crm=${hash}`, 'CIF_SOURCE_SYSTEMS')).toThrow(/twice/)
    expect(() => parseApiKeys(`crm=${hash},cards=${hash}`, 'CIF_SOURCE_SYSTEMS')).toThrow(/two callers/)
    expect(() => parseApiKeys(`crm=${hash}@tomorrow`, 'CIF_SOURCE_SYSTEMS')).toThrow(/not a date-time/)
    // Date would read these as 2 March and 1 May: a key working weeks longer than its owner wrote.
    expect(() => parseApiKeys(`crm=${hash}@2027-02-30T00:00:00Z`, 'CIF_SOURCE_SYSTEMS')).toThrow(/not a date-time/)
    expect(() => parseApiKeys(`crm=${hash}@2027-04-31T00:00:00Z`, 'CIF_SOURCE_SYSTEMS')).toThrow(/not a date-time/)
    expect(parseApiKeys(`crm=${hash}@2028-02-29T00:00:00+01:00`, 'CIF_SOURCE_SYSTEMS').get('crm')).toEqual([
      { hash, expiresAt: new Date('2028-02-28T23:00:00Z') }
    ])
  })

  it('refuses the public dev key and an empty key list in production', () => {
    const devHash = apiKeyHash(devSourceSystem.apiKey)
    expect(() => loadConfig({ NODE_ENV: 'production', CIF_SOURCE_SYSTEMS: `branch-portal=${devHash}` })).toThrow(/public development key/)
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/at least one/)
    expect(loadConfig({ NODE_ENV: 'production', CIF_SOURCE_SYSTEMS: `crm=${hash}` }).sourceSystemKeyHashes.size).toBe(1)
  })

  it('serves the API documentation publicly outside production only, unless told', () => {
    const production = { NODE_ENV: 'production', CIF_SOURCE_SYSTEMS: `crm=${hash}` }
    expect(loadConfig({}).publicApiDocs).toBe(true)
    expect(loadConfig(production).publicApiDocs).toBe(false)
    expect(loadConfig({ ...production, API_DOCS: 'public' }).publicApiDocs).toBe(true)
    expect(loadConfig({ API_DOCS: 'off' }).publicApiDocs).toBe(false)
    expect(() => loadConfig({ API_DOCS: 'private' })).toThrow('API_DOCS must be public or off, not "private".')
    expect(loadConfig({}).logFormat).toBeUndefined()
    expect(loadConfig({ LOG_FORMAT: 'json' }).logFormat).toBe('json')
    expect(() => loadConfig({ LOG_FORMAT: 'text' })).toThrow('LOG_FORMAT must be json or pretty, not "text".')
  })

  it('reads pinned client certificates as name=<SHA-256 fingerprint>, with or without colons, and checks they can be used', () => {
    const printed = `${'AB:'.repeat(31)}CD`
    expect(parseCertificates(`crm=${printed}, crm=${'0f'.repeat(32)}`, 'CIF_SOURCE_SYSTEM_CERTIFICATES')).toEqual(
      new Map([['crm', [`${'ab'.repeat(31)}cd`, '0f'.repeat(32)]]])
    )
    expect(() => parseCertificates('crm=AB:CD', 'CIF_SOURCE_SYSTEM_CERTIFICATES')).toThrow(/must look like name=<SHA-256 fingerprint/)
    expect(() => parseCertificates(`crm=${printed},cards=${'ab'.repeat(31)}cd`, 'CIF_SOURCE_SYSTEM_CERTIFICATES')).toThrow(/two callers/)
    const pinned = { CIF_SOURCE_SYSTEMS: `crm=${hash}`, CIF_SOURCE_SYSTEM_CERTIFICATES: `crm=${printed}` }
    expect(() => loadConfig(pinned)).toThrow(/TLS_CLIENT_CA_FILE is not set/)
    const tls = { TLS_CERT_FILE: 'cert.pem', TLS_KEY_FILE: 'key.pem', TLS_CLIENT_CA_FILE: 'ca.pem' }
    expect(loadConfig({ ...pinned, ...tls }).sourceSystemKeyHashes.certificatesOf('crm')).toEqual([`${'ab'.repeat(31)}cd`])
    const operator = { SYNCER_OPERATORS: `ops=${hash}`, SYNCER_OPERATOR_CERTIFICATES: `ops=${'0f'.repeat(32)}` }
    expect(loadConfig({ ...operator, ...tls }).operatorKeyHashes.certificatesOf('ops')).toEqual(['0f'.repeat(32)])
    // A certificate without a key authenticates no one unless a certificate suffices alone.
    const certificateOnly = { ...tls, CIF_SOURCE_SYSTEMS: `crm=${hash}`, CIF_SOURCE_SYSTEM_CERTIFICATES: `cards=${printed}` }
    expect(() => loadConfig(certificateOnly)).toThrow(/"cards", which has no key/)
    expect([...loadConfig({ ...certificateOnly, TLS_CLIENT_CERTIFICATE_SUFFICES: 'true' }).sourceSystemKeyHashes.keys()].sort()).toEqual([
      'cards',
      'crm'
    ])
    expect(() => loadConfig({ ...pinned, ...tls, TLS_CLIENT_CERTIFICATE_SUFFICES: 'yes' })).toThrow(/must be true or false/)
    expect(() => loadConfig({ TLS_CLIENT_CA_FILE: 'ca.pem' })).toThrow(/TLS_CERT_FILE and TLS_KEY_FILE/)
  })

  it('takes a list setting from the environment or from its _FILE, not both', () => {
    expect(() => loadConfig({ CIF_SOURCE_SYSTEMS: `crm=${hash}`, CIF_SOURCE_SYSTEMS_FILE: 'keys.txt' })).toThrow(
      'Set CIF_SOURCE_SYSTEMS or CIF_SOURCE_SYSTEMS_FILE, not both.'
    )
    expect(() => loadConfig({ SYNCER_OPERATORS_FILE: '/no/such/file' })).toThrow(/Cannot read SYNCER_OPERATORS_FILE: ENOENT/)
  })

  it('names the setting that is out of range', () => {
    expect(() => loadConfig({ CIF_PORT: '80x' })).toThrow('CIF_PORT must be a whole number from 0 to 65535, got "80x".')
    expect(loadConfig({ KAFKA_BROKERS: ' a:1, b:2 ,' }).kafkaBrokers).toEqual(['a:1', 'b:2'])
  })

  it('starts one local broker unless told a cluster of up to five', () => {
    expect(loadConfig({}).localKafkaBrokers).toBe(1)
    expect(loadConfig({ LOCAL_KAFKA_BROKERS: '3' }).localKafkaBrokers).toBe(3)
    expect(() => loadConfig({ LOCAL_KAFKA_BROKERS: '0' })).toThrow('LOCAL_KAFKA_BROKERS must be a whole number from 1 to 5, got "0".')
  })

  it('reads how long an action request waits and how many deliveries a bulk redrive may take, within bounds', () => {
    expect(loadConfig({}).syncer).toMatchObject({ actionRequestExpiryMs: 86_400_000, bulkRedriveLimit: 500 })
    expect(loadConfig({ SYNCER_ACTION_REQUEST_EXPIRY_MS: '3600000', SYNCER_BULK_REDRIVE_LIMIT: '1000' }).syncer).toMatchObject({
      actionRequestExpiryMs: 3_600_000,
      bulkRedriveLimit: 1000
    })
    expect(() => loadConfig({ SYNCER_ACTION_REQUEST_EXPIRY_MS: '1000' })).toThrow(/SYNCER_ACTION_REQUEST_EXPIRY_MS must be a whole number from 60000/)
    // Bounded so that the listed ids of a bulk redrive fit the admin API's body.
    expect(() => loadConfig({ SYNCER_BULK_REDRIVE_LIMIT: '1001' })).toThrow(/SYNCER_BULK_REDRIVE_LIMIT must be a whole number from 1 to 1000/)
  })

  it("takes the console's session secret only when long enough to sign with, and none (one per process) when unset", () => {
    expect(loadConfig({}).syncer.consoleSessionSecret).toBeUndefined()
    expect(loadConfig({ SYNCER_CONSOLE_SESSION_SECRET: 'x'.repeat(32) }).syncer.consoleSessionSecret).toBe('x'.repeat(32))
    expect(() => loadConfig({ SYNCER_CONSOLE_SESSION_SECRET: 'too-short' })).toThrow(
      /SYNCER_CONSOLE_SESSION_SECRET must be at least 32 characters, got 9/
    )
  })

  it('keeps personal data for the documented periods unless told otherwise, and an idempotency key at least an hour', () => {
    const defaults = loadConfig({})
    expect([defaults.cif.idempotencyRetentionHours, defaults.syncer.eventPayloadRetentionHours, defaults.retentionBatchSize]).toEqual([24, 168, 1000])
    const set = loadConfig({ CIF_IDEMPOTENCY_RETENTION_HOURS: '48', SYNCER_EVENT_PAYLOAD_RETENTION_HOURS: '0', RETENTION_BATCH_SIZE: '50' })
    expect([set.cif.idempotencyRetentionHours, set.syncer.eventPayloadRetentionHours, set.retentionBatchSize]).toEqual([48, 0, 50])
    expect(() => loadConfig({ CIF_IDEMPOTENCY_RETENTION_HOURS: '0' })).toThrow(
      'CIF_IDEMPOTENCY_RETENTION_HOURS must be a whole number from 1 to 8760'
    )
    expect(() => loadConfig({ RETENTION_BATCH_SIZE: '0' })).toThrow('RETENTION_BATCH_SIZE must be a whole number from 1 to 100000')
  })

  it('gives a customer version five minutes to be in every end system unless told otherwise', () => {
    expect(loadConfig({}).syncer.inSyncDeadlineMs).toBe(300_000)
    expect(loadConfig({ SYNCER_IN_SYNC_DEADLINE_MS: '60000' }).syncer.inSyncDeadlineMs).toBe(60_000)
    expect(() => loadConfig({ SYNCER_IN_SYNC_DEADLINE_MS: '0' })).toThrow('SYNCER_IN_SYNC_DEADLINE_MS must be a whole number from 1000 to 604800000')
  })

  it('keeps the transaction table for ever unless told a number of months, and detaches rather than drops by default', () => {
    expect(loadConfig({}).syncer.attemptRetention).toEqual({ months: 0, action: 'detach' })
    expect(loadConfig({ SYNCER_ATTEMPT_RETENTION_MONTHS: '84', SYNCER_ATTEMPT_RETENTION_ACTION: 'drop' }).syncer.attemptRetention).toEqual({
      months: 84,
      action: 'drop'
    })
    expect(() => loadConfig({ SYNCER_ATTEMPT_RETENTION_ACTION: 'delete' })).toThrow(
      'SYNCER_ATTEMPT_RETENTION_ACTION must be detach or drop, not "delete".'
    )
    expect(() => loadConfig({ SYNCER_ATTEMPT_RETENTION_MONTHS: '-1' })).toThrow(
      'SYNCER_ATTEMPT_RETENTION_MONTHS must be a whole number from 0 to 1200'
    )
  })
})

describe('event signing keys', () => {
  const own = newEventKeyPair('cif-2026-01')
  const ownPem = own.signingKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const next = newEventKeyPair('cif-2026-07')
  const production = { NODE_ENV: 'production', CIF_SOURCE_SYSTEMS: `crm=${hash}` }
  const signs = (env: Record<string, string>, trustedBy: Record<string, string>) => {
    const event = signEvent({ id: 'e-1', data: { cifId: '10000000009' } }, requireEventSigningKey(loadConfig(env)))
    return checkEventSignature(JSON.parse(JSON.stringify(event)), requireTrustedEventKeys(loadConfig(trustedBy)))
  }

  it('signs and verifies with the documented development key pair when nothing is set', () => {
    const config = loadConfig({})
    expect(config.cif.eventSigningKey?.keyId).toBe(devEventSigningKey.keyId)
    expect([...(config.syncer.trustedEventKeys?.keys() ?? [])]).toEqual([devEventSigningKey.keyId])
    expect(signs({}, {})).toEqual({ signed: true, keyId: 'local-development' })
    expect(signs({}, { SYNCER_EVENT_KEYS: `cif-2026-07=${next.spkiBase64}` })).toMatchObject({ signed: false })
  })

  it('reads the CIF service’s key as PEM (line breaks as they are, or as \\n) with its id', () => {
    expect(
      signs({ CIF_EVENT_SIGNING_KEY: ownPem, CIF_EVENT_SIGNING_KEY_ID: 'cif-2026-01' }, { SYNCER_EVENT_KEYS: `cif-2026-01=${own.spkiBase64}` })
    ).toEqual({
      signed: true,
      keyId: 'cif-2026-01'
    })
    const oneLine = ownPem.trim().replaceAll('\n', '\\n')
    expect(oneLine).not.toContain('\n')
    expect(requireEventSigningKey(loadConfig({ CIF_EVENT_SIGNING_KEY: oneLine, CIF_EVENT_SIGNING_KEY_ID: 'cif-2026-01' })).keyId).toBe('cif-2026-01')
  })

  it('names the signing key setting that is wrong, and never shows the key', () => {
    expect(() => loadConfig({ CIF_EVENT_SIGNING_KEY: ownPem })).toThrow(
      'Set both CIF_EVENT_SIGNING_KEY (PEM) and CIF_EVENT_SIGNING_KEY_ID, or neither.'
    )
    expect(() => loadConfig({ CIF_EVENT_SIGNING_KEY_ID: 'cif-2026-01' })).toThrow(/Set both CIF_EVENT_SIGNING_KEY/)
    expect(() => loadConfig({ CIF_EVENT_SIGNING_KEY: ownPem, CIF_EVENT_SIGNING_KEY_ID: 'cif 2026' })).toThrow(
      /^CIF_EVENT_SIGNING_KEY_ID "cif 2026" must be/
    )
    const broken = ownPem.replace(/[A-Za-z0-9+/]{20}/, 'x')
    expect(() => loadConfig({ CIF_EVENT_SIGNING_KEY: broken, CIF_EVENT_SIGNING_KEY_ID: 'k1' })).toThrow(
      'CIF_EVENT_SIGNING_KEY must be an unencrypted private key in PEM (PKCS#8, "-----BEGIN PRIVATE KEY-----").'
    )
    const publicPem = own.publicKey.export({ type: 'spki', format: 'pem' }).toString()
    expect(() => loadConfig({ CIF_EVENT_SIGNING_KEY: publicPem, CIF_EVENT_SIGNING_KEY_ID: 'k1' })).toThrow(
      /^CIF_EVENT_SIGNING_KEY must be an unencrypted private key/
    )
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    expect(() => loadConfig({ CIF_EVENT_SIGNING_KEY: ec, CIF_EVENT_SIGNING_KEY_ID: 'k1' })).toThrow(
      'CIF_EVENT_SIGNING_KEY must be an Ed25519 key, not ec'
    )
  })

  it('trusts several keys at once, so that a new key is trusted before the CIF service signs with it', () => {
    const trusted = `cif-2026-01=${own.spkiBase64}, cif-2026-07=${next.spkiBase64}`
    expect([...parseTrustedEventKeys(trusted).keys()]).toEqual(['cif-2026-01', 'cif-2026-07'])
    for (const key of [own, next]) {
      const env = {
        CIF_EVENT_SIGNING_KEY: key.signingKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        CIF_EVENT_SIGNING_KEY_ID: key.signingKey.keyId
      }
      expect(signs(env, { SYNCER_EVENT_KEYS: trusted })).toMatchObject({ signed: true, keyId: key.signingKey.keyId })
    }
  })

  it('names the trusted key that is wrong', () => {
    expect(() => parseTrustedEventKeys(own.spkiBase64)).toThrow(
      /^SYNCER_EVENT_KEYS entry "MCow.*" must look like keyid=<base64 of the DER public key>/
    )
    expect(() => parseTrustedEventKeys(`a=${own.spkiBase64},a=${next.spkiBase64}`)).toThrow('SYNCER_EVENT_KEYS names key "a" twice.')
    expect(() => parseTrustedEventKeys('a=not base64!')).toThrow(
      'SYNCER_EVENT_KEYS key "a" is not a public key in base64 of DER (SubjectPublicKeyInfo).'
    )
    expect(() => parseTrustedEventKeys(`a=${own.spkiBase64.slice(4)}`)).toThrow(/key "a" is not a public key/)
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64')
    expect(() => loadConfig({ SYNCER_EVENT_KEYS: `b=${ec}` })).toThrow('SYNCER_EVENT_KEYS key "b" must be an Ed25519 key, not ec')
  })

  it('refuses the development key in production, and each service starts only with its own setting', () => {
    const ownEnv = { CIF_EVENT_SIGNING_KEY: ownPem, CIF_EVENT_SIGNING_KEY_ID: 'cif-2026-01', SYNCER_EVENT_KEYS: `cif-2026-01=${own.spkiBase64}` }
    expect(() => loadConfig({ ...production, ...ownEnv, CIF_EVENT_SIGNING_KEY: devEventSigningKey.privateKey })).toThrow(
      /^CIF_EVENT_SIGNING_KEY is the public development key/
    )
    expect(() => loadConfig({ ...production, ...ownEnv, SYNCER_EVENT_KEYS: `mine=${devEventSigningKey.publicKey}` })).toThrow(
      /^SYNCER_EVENT_KEYS trusts the public development key \(as "mine"\)/
    )
    // Unset: no development key stands in, and the service that needs the setting refuses to start.
    const bare = loadConfig(production)
    expect(bare.cif.eventSigningKey).toBeUndefined()
    expect(bare.syncer.trustedEventKeys).toBeUndefined()
    expect(() => requireEventSigningKey(bare)).toThrow(ConfigError)
    expect(() => requireEventSigningKey(bare)).toThrow(/^Set CIF_EVENT_SIGNING_KEY \(PEM, PKCS#8 Ed25519\) and CIF_EVENT_SIGNING_KEY_ID/)
    expect(() => requireTrustedEventKeys(bare)).toThrow(/^Set SYNCER_EVENT_KEYS/)
    const configured = loadConfig({ ...production, ...ownEnv })
    expect(requireEventSigningKey(configured).keyId).toBe('cif-2026-01')
    expect([...requireTrustedEventKeys(configured).keys()]).toEqual(['cif-2026-01'])
    // Outside production a key of its own is taken as it is too.
    expect(loadConfig(ownEnv).cif.eventSigningKey?.keyId).toBe('cif-2026-01')
  })
})

describe('Kafka client security', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cif-syncer-kafka-config-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  const file = (name: string, content: string): string => {
    writeFileSync(join(dir, name), content)
    return join(dir, name)
  }
  // A certificate and its key (made once with openssl), as a CA file or a client certificate would hold.
  const [certFile, keyFile] = [join(dir, 'client.pem'), join(dir, 'client.key')]
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=kafka-client',
      '-keyout',
      keyFile,
      '-out',
      certFile
    ],
    { stdio: 'pipe' }
  )
  const brokers = { KAFKA_BROKERS: 'kafka-1:9093,kafka-2:9093' }
  const sasl = { ...brokers, KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SASL_USERNAME: 'cif-service', KAFKA_SASL_PASSWORD: 'its-password' }

  it('is PLAINTEXT by default, for the local stack', () => {
    expect(loadConfig({}).kafkaSecurity).toEqual({})
    expect(configuredKafka(loadConfig(brokers))).toEqual({ brokers: ['kafka-1:9093', 'kafka-2:9093'], security: {} })
  })

  it('takes SCRAM-SHA-512 over TLS, the password from the environment or a file, and a CA of its own', () => {
    expect(loadConfig(sasl).kafkaSecurity).toEqual({
      tls: {},
      sasl: { mechanism: 'SCRAM-SHA-512', username: 'cif-service', password: 'its-password' }
    })
    const { KAFKA_SASL_PASSWORD: _, ...withoutPassword } = sasl
    const fromFile = loadConfig({
      ...withoutPassword,
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-256',
      KAFKA_SASL_PASSWORD_FILE: file('password', 'from-a-file\n'),
      KAFKA_TLS_CA_FILE: certFile
    }).kafkaSecurity
    expect(fromFile.sasl).toEqual({ mechanism: 'SCRAM-SHA-256', username: 'cif-service', password: 'from-a-file' })
    expect(fromFile.tls?.ca).toMatch(/^-----BEGIN CERTIFICATE-----/)
  })

  it('takes a client certificate (SSL, mTLS) only with its own key', () => {
    const ssl = { ...brokers, KAFKA_SECURITY_PROTOCOL: 'SSL', KAFKA_TLS_CERT_FILE: certFile }
    expect(loadConfig({ ...ssl, KAFKA_TLS_KEY_FILE: keyFile }).kafkaSecurity.tls).toMatchObject({
      cert: expect.stringMatching(/^-----BEGIN CERTIFICATE-----/),
      key: expect.stringMatching(/^-----BEGIN PRIVATE KEY-----/)
    })
    const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    expect(() => loadConfig({ ...ssl, KAFKA_TLS_KEY_FILE: file('other.key', otherKey) })).toThrow(
      'KAFKA_TLS_KEY_FILE is not the private key of the certificate in KAFKA_TLS_CERT_FILE.'
    )
    expect(() => loadConfig(ssl)).toThrow('Set both KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE (PEM) for a client certificate, or neither.')
  })

  it('refuses a setting its protocol would ignore, so that nobody believes a connection secured when it is not', () => {
    expect(() => loadConfig({ ...brokers, KAFKA_SASL_USERNAME: 'cif-service', KAFKA_SASL_PASSWORD: 'x' })).toThrow(
      'KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD set, but KAFKA_SECURITY_PROTOCOL is PLAINTEXT: set it to SSL or SASL_SSL.'
    )
    expect(() => loadConfig({ ...brokers, KAFKA_TLS_CA_FILE: certFile })).toThrow(/^KAFKA_TLS_CA_FILE set, but KAFKA_SECURITY_PROTOCOL is PLAINTEXT/)
    expect(() => loadConfig({ ...sasl, KAFKA_SECURITY_PROTOCOL: 'SSL' })).toThrow(
      /^KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD set, but KAFKA_SECURITY_PROTOCOL is SSL/
    )
  })

  it('names the Kafka setting that is wrong, and never shows the password', () => {
    expect(() => loadConfig({ ...sasl, KAFKA_SECURITY_PROTOCOL: 'SASL_PLAINTEXT' })).toThrow(
      'KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_SSL, got "SASL_PLAINTEXT".'
    )
    expect(() => loadConfig({ ...sasl, KAFKA_SASL_MECHANISM: 'GSSAPI' })).toThrow(
      'KAFKA_SASL_MECHANISM must be one of SCRAM-SHA-512, SCRAM-SHA-256, PLAIN, got "GSSAPI".'
    )
    expect(() => loadConfig({ ...sasl, KAFKA_SASL_USERNAME: '' })).toThrow(/^KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME/)
    expect(() => loadConfig({ ...sasl, KAFKA_SASL_PASSWORD: '' })).toThrow(/needs KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE/)
    expect(() => loadConfig({ ...sasl, KAFKA_SASL_PASSWORD_FILE: join(dir, 'password') })).toThrow(
      'Set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both.'
    )
    expect(() => loadConfig({ ...sasl, KAFKA_TLS_CA_FILE: join(dir, 'missing.pem') })).toThrow(
      `KAFKA_TLS_CA_FILE: cannot read "${join(dir, 'missing.pem')}" (ENOENT).`
    )
    expect(() => loadConfig({ ...sasl, KAFKA_TLS_CA_FILE: file('not-pem', 'its-password') })).toThrow(
      /^KAFKA_TLS_CA_FILE ".*" must hold PEM certificates/
    )
    expect(() => loadConfig({ KAFKA_SECURITY_PROTOCOL: 'SASL_SSL', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' })).toThrow(
      /^KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_BROKERS/
    )
    for (const env of [
      { ...sasl, KAFKA_SASL_MECHANISM: 'GSSAPI' },
      { ...sasl, KAFKA_TLS_CA_FILE: file('not-pem', 'its-password') }
    ]) {
      expect(() => loadConfig(env)).toThrow(expect.objectContaining({ message: expect.not.stringContaining('its-password') }))
    }
  })

  it('in production, reaches Kafka in clear text only when told to', () => {
    const production = { NODE_ENV: 'production', CIF_SOURCE_SYSTEMS: `crm=${hash}`, ...brokers }
    expect(() => loadConfig(production)).toThrow(/^Set KAFKA_SECURITY_PROTOCOL \(SASL_SSL, or SSL\): in production/)
    expect(loadConfig({ ...production, KAFKA_SECURITY_PROTOCOL: 'PLAINTEXT' }).kafkaSecurity).toEqual({})
    expect(loadConfig({ ...production, ...sasl }).kafkaSecurity.sasl?.username).toBe('cif-service')
  })
})
