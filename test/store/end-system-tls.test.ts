import { writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLogger } from '../../src/platform/logger.ts'
import { AttemptRecorder } from '../../src/syncer/delivery/attempt-recorder.ts'
import { EndSystemClient } from '../../src/syncer/delivery/end-system-client.ts'
import { loadEndSystems } from '../../src/syncer/delivery/end-systems-config.ts'
import { DeliveryLane } from '../../src/syncer/delivery/lane.ts'
import { type CertificateFiles, TestCertificates } from '../support/certificates.ts'
import { asSyncer } from '../support/database.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { attemptsOf, deliveriesOf, laneTelemetry, newCifId, newEndSystem, storeVersions } from './fixtures.ts'

// An end system that takes only callers with a client certificate of its own authority, over HTTPS with a
// server certificate of that authority: the syncer reaches it only with the tls settings of the end systems file.
let database: OwnDatabase
const certificates = new TestCertificates()
let authority: CertificateFiles
let otherAuthority: CertificateFiles
let syncerCertificate: CertificateFiles
let server: Server
let baseUrl: string
const received: string[] = []

beforeAll(async () => {
  database = await ownDatabase()
  authority = certificates.authority('ledger-ca')
  otherAuthority = certificates.authority('other-ca')
  const serverCertificate = certificates.issue(authority, 'ledger')
  syncerCertificate = certificates.issue(authority, 'cif-syncer')
  server = createServer(
    {
      cert: certificates.read(serverCertificate.certFile),
      key: certificates.read(serverCertificate.keyFile),
      ca: certificates.read(authority.certFile),
      requestCert: true,
      rejectUnauthorized: true
    },
    (request, response) => {
      received.push(request.url ?? '')
      request.resume()
      request.on('end', () => response.writeHead(201, { 'content-type': 'application/json' }).end('{"id":"L-1"}'))
    }
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  baseUrl = `https://127.0.0.1:${(server.address() as { port: number }).port}`
})
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve))
  await database?.close()
  certificates.remove()
})

/** An end systems file beside the certificates, naming them by relative paths as an operator would. */
function endSystemsFile(name: string, tls: string): string {
  const file = join(certificates.dir, `${name}.yaml`)
  writeFileSync(
    file,
    `endSystems:
  - name: ${name}
    baseUrl: ${baseUrl}
    tls: ${tls}
    retry: { retries: 0 }
    operations:
      create: { method: POST, path: /clients, body: '{"ref": cifId}', externalId: id }
      update: { method: PUT, path: '/clients/{externalId}', body: '{"ref": cifId}' }
`
  )
  return file
}

const relative = (file: string) => file.slice(certificates.dir.length + 1)

/** Stores a new customer for a system configured with `tls`, lets a lane deliver it, and returns its attempts. */
async function deliverWith(tls: (name: string) => string) {
  const name = newEndSystem('ledger')
  const [system] = loadEndSystems(endSystemsFile(name, tls(name)))
  const cifId = newCifId()
  await storeVersions(database.db, cifId, [1], [name])
  const client = new EndSystemClient(system!)
  const telemetry = laneTelemetry(database.db, name, client)
  const lane = new DeliveryLane(
    system!,
    asSyncer(database.db),
    client,
    new AttemptRecorder(asSyncer(database.db)),
    createLogger('silent', 'test'),
    telemetry
  )
  try {
    lane.wake()
    const deadline = Date.now() + 15_000
    let [delivery] = await deliveriesOf(database.db, cifId)
    while (delivery && !['SUCCESS', 'FAILED'].includes(delivery.state) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      ;[delivery] = await deliveriesOf(database.db, cifId)
    }
    return { delivery: delivery!, attempts: await attemptsOf(database.db, delivery!.id), cifId }
  } finally {
    await lane.stop()
    await client.close()
  }
}

describe('TLS to an end system', () => {
  it('delivers with the client certificate and the authority of the end systems file', async () => {
    const { delivery, attempts } = await deliverWith(
      () =>
        `{ caFile: ${relative(authority.certFile)}, certFile: ${relative(syncerCertificate.certFile)}, keyFile: ${relative(syncerCertificate.keyFile)} }`
    )
    expect(delivery).toMatchObject({ state: 'SUCCESS', external_id: 'L-1' })
    expect(attempts).toEqual([expect.objectContaining({ status: 'SUCCESS', http_status: 201 })])
    expect(received).toContain('/clients')
  })

  it('records an attempt error saying the system wants a client certificate, when the syncer has none for it', async () => {
    const { delivery, attempts } = await deliverWith(() => `{ caFile: ${authority.certFile} }`)
    expect(delivery.state).toBe('FAILED')
    expect(attempts).toEqual([
      expect.objectContaining({
        status: 'ERROR',
        http_status: null,
        response_message: expect.stringMatching(/^ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: .*certificate required/),
        remarks: expect.stringContaining('wants a client certificate, and the syncer sent none')
      })
    ])
  })

  it('records an attempt error saying the system’s certificate is not trusted, with another authority', async () => {
    const { delivery, attempts } = await deliverWith(
      () =>
        `{ caFile: ${relative(otherAuthority.certFile)}, certFile: ${relative(syncerCertificate.certFile)}, keyFile: ${relative(syncerCertificate.keyFile)} }`
    )
    expect(delivery.state).toBe('FAILED')
    expect(attempts).toEqual([
      expect.objectContaining({
        status: 'ERROR',
        response_message: expect.stringMatching(/^SELF_SIGNED_CERT_IN_CHAIN: /),
        remarks: expect.stringContaining('presented a certificate the syncer does not trust')
      })
    ])
  })

  it('refuses at start a key that is not the certificate’s, naming the system and the line', () => {
    const name = newEndSystem('ledger')
    const file = endSystemsFile(
      name,
      `{ caFile: ${relative(authority.certFile)}, certFile: ${relative(syncerCertificate.certFile)}, keyFile: ${relative(authority.keyFile)} }`
    )
    expect(() => loadEndSystems(file)).toThrow(`${file}:4: end system "${name}" has a tls.keyFile that is not the key of its tls.certFile`)
  })
})
