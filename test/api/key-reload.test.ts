import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cifIdFromNumber } from '../../src/contracts/cif-id.ts'
import { loadConfig } from '../../src/platform/config.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import { reloadSettings } from '../../src/platform/reload.ts'
import { freePort } from '../integration/free-port.ts'
import { type CertificateFiles, TestCertificates } from '../support/certificates.ts'
import { type OwnDatabase, ownDatabase } from '../support/own-database.ts'
import { ServiceProcess } from '../support/service-process.ts'
import { call, operatorKey, syncerApp } from './helpers.ts'

// Keys rotated and revoked without a restart: the key files are read again on a reload (SIGHUP).
let database: OwnDatabase
const dir = mkdtempSync(join(tmpdir(), 'cif-syncer-keys-'))
const files = {
  CIF_SOURCE_SYSTEMS_FILE: join(dir, 'source-systems'),
  SYNCER_OPERATORS_FILE: join(dir, 'operators'),
  SYNCER_OPERATOR_ROLES_FILE: join(dir, 'operator-roles')
}
const write = (file: string, lines: string[]) => writeFileSync(file, `${lines.join('\n')}\n`)
const unknownCifId = cifIdFromNumber(9_999_999_999)
const sourceSystemKeys = { old: 'test-branch-portal-old-key', new: 'test-branch-portal-new-key', onboarding: 'test-onboarding-app-key' }

beforeAll(async () => {
  database = await ownDatabase()
})
afterAll(async () => {
  await database?.close()
  rmSync(dir, { recursive: true, force: true })
})

/** A log whose lines the test reads. */
function capturedLog() {
  const lines: Record<string, any>[] = []
  const sink = new Writable({
    write: (chunk, _encoding, done) => {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line))
      done()
    }
  })
  return { lines, log: pino({ level: 'info' }, sink) }
}

describe('reloading keys', () => {
  it('takes a new key, drops a removed one and applies a changed role, and logs the callers that changed, never a key', async () => {
    write(files.CIF_SOURCE_SYSTEMS_FILE, ['# source systems', `branch-portal=${apiKeyHash(sourceSystemKeys.old)}`])
    write(files.SYNCER_OPERATORS_FILE, [`test-operator=${apiKeyHash(operatorKey)}`])
    write(files.SYNCER_OPERATOR_ROLES_FILE, [])
    const config = loadConfig(files)
    const app = await syncerApp(database, config)
    const { lines, log } = capturedLog()
    const status = async (key: string, path = `/v1/sync/customers/${unknownCifId}`) => (await call(app, 'GET', path, { key })).status
    try {
      expect(await status(sourceSystemKeys.old)).toBe(404)
      expect(await status(sourceSystemKeys.new)).toBe(401)

      write(files.CIF_SOURCE_SYSTEMS_FILE, [
        `branch-portal=${apiKeyHash(sourceSystemKeys.new)}  # rotated`,
        `onboarding-app=${apiKeyHash(sourceSystemKeys.onboarding)}`
      ])
      write(files.SYNCER_OPERATOR_ROLES_FILE, ['test-operator:viewer'])
      expect(reloadSettings(config, [app], log, files)).toBe(true)

      expect(await status(sourceSystemKeys.new)).toBe(404)
      expect(await status(sourceSystemKeys.onboarding)).toBe(404)
      const removed = await call(app, 'GET', `/v1/sync/customers/${unknownCifId}`, { key: sourceSystemKeys.old })
      expect(removed.status).toBe(401)
      expect(removed.body.detail).toBe('The API key is not known.')
      // The operator's key is unchanged; its role now is viewer.
      expect(await status(operatorKey, '/v1/admin/summary')).toBe(200)
      expect((await call(app, 'POST', '/v1/admin/deliveries/1/redrive', { key: operatorKey, body: { reason: 'test' } })).status).toBe(403)

      const reloaded = lines.find((line) => line.msg === 'access settings reloaded')
      expect(reloaded?.changes).toEqual({
        sourceSystems: { added: ['onboarding-app'], removed: [], credentialsChanged: ['branch-portal'] },
        operators: { added: [], removed: [], credentialsChanged: [] },
        grants: [],
        roles: ['test-operator']
      })
      const logged = JSON.stringify(lines)
      for (const key of [...Object.values(sourceSystemKeys), operatorKey]) {
        expect(logged).not.toContain(key)
        expect(logged).not.toContain(apiKeyHash(key))
      }
    } finally {
      await app.close()
    }
  })

  it('keeps the old keys, and logs why, when the new file is invalid or would lock every operator out', async () => {
    const writeGood = () => {
      write(files.CIF_SOURCE_SYSTEMS_FILE, [`branch-portal=${apiKeyHash(sourceSystemKeys.old)}`])
      write(files.SYNCER_OPERATORS_FILE, [`test-operator=${apiKeyHash(operatorKey)}`])
      write(files.SYNCER_OPERATOR_ROLES_FILE, [])
    }
    writeGood()
    // In production an empty operators file is valid at start, but a reload to it would lock every operator out.
    const env = { ...files, NODE_ENV: 'production' }
    const config = loadConfig(env)
    const app = await syncerApp(database, config)
    const { lines, log } = capturedLog()
    try {
      for (const [file, content, reason] of [
        [
          files.CIF_SOURCE_SYSTEMS_FILE,
          ['branch-portal=not-a-hash'],
          /CIF_SOURCE_SYSTEMS_FILE \(.*\) entry "branch-portal=not-a-hash" must look like/
        ],
        [files.SYNCER_OPERATORS_FILE, ['# nobody'], /name no operator, which would lock every operator out/]
      ] as const) {
        writeGood()
        write(file, [...content])
        expect(reloadSettings(config, [app], log, env)).toBe(false)
        expect(lines.at(-1)).toMatchObject({ msg: 'access settings not reloaded: the old ones stay', reason: expect.stringMatching(reason) })
        expect(await call(app, 'GET', `/v1/sync/customers/${unknownCifId}`, { key: sourceSystemKeys.old })).toMatchObject({ status: 404 })
        expect(await call(app, 'GET', '/v1/admin/summary', { key: operatorKey })).toMatchObject({ status: 200 })
      }
      rmSync(files.SYNCER_OPERATORS_FILE)
      expect(reloadSettings(config, [app], log, env)).toBe(false)
      expect(lines.at(-1)?.reason).toMatch(/Cannot read SYNCER_OPERATORS_FILE: ENOENT/)
      expect(await call(app, 'GET', '/v1/admin/summary', { key: operatorKey })).toMatchObject({ status: 200 })
    } finally {
      await app.close()
    }
  })

  it('serves a renewed TLS certificate from the same files after a reload', async () => {
    const certificates = new TestCertificates()
    const [before, after] = [certificates.authority('ca-2026'), certificates.authority('ca-2027')]
    const served = certificates.issue(before, 'syncer')
    const renew = (from: CertificateFiles) => {
      copyFileSync(from.certFile, served.certFile)
      copyFileSync(from.keyFile, served.keyFile)
    }
    write(files.CIF_SOURCE_SYSTEMS_FILE, [`branch-portal=${apiKeyHash(sourceSystemKeys.old)}`])
    const env = { CIF_SOURCE_SYSTEMS_FILE: files.CIF_SOURCE_SYSTEMS_FILE, TLS_CERT_FILE: served.certFile, TLS_KEY_FILE: served.keyFile }
    const config = loadConfig(env)
    const app = await syncerApp(database, config)
    const { log } = capturedLog()
    // A new agent per request: a new connection, a new handshake.
    const trusting = async (authority: CertificateFiles, address: string) => {
      const agent = new Agent({ connect: { ca: certificates.read(authority.certFile) } })
      try {
        return (await request(`${address}/health/live`, { dispatcher: agent })).statusCode
      } catch (error) {
        return (error as { code?: string }).code
      } finally {
        await agent.close()
      }
    }
    try {
      const address = await app.listen({ host: '127.0.0.1', port: 0 })
      expect(await trusting(before, address)).toBe(200)
      renew(certificates.issue(after, 'syncer'))
      expect(reloadSettings(config, [app], log, env)).toBe(true)
      expect(await trusting(after, address)).toBe(200)
      expect(await trusting(before, address)).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE')
      // A broken file is not taken: the renewed certificate stays.
      writeFileSync(served.keyFile, 'not a key')
      expect(reloadSettings(config, [app], log, env)).toBe(false)
      expect(await trusting(after, address)).toBe(200)
    } finally {
      await app.close()
      certificates.remove()
    }
  })

  it('reloads in a running CIF service on SIGHUP', async () => {
    write(files.CIF_SOURCE_SYSTEMS_FILE, [`branch-portal=${apiKeyHash(sourceSystemKeys.old)}`])
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    // No Kafka: the API answers without it (its relay waits for a broker that never comes).
    const service = new ServiceProcess(
      'cif-service',
      `${url}/health/live`,
      {
        DATABASE_URL: database.url,
        KAFKA_BROKERS: `127.0.0.1:${await freePort()}`,
        CIF_PORT: String(port),
        CIF_SOURCE_SYSTEMS: '',
        CIF_SOURCE_SYSTEMS_FILE: files.CIF_SOURCE_SYSTEMS_FILE,
        LOG_LEVEL: 'info'
      },
      join(dir, 'cif-service.log')
    )
    const status = async (key: string) => (await fetch(`${url}/v1/customers/${unknownCifId}`, { headers: { authorization: `Bearer ${key}` } })).status
    try {
      await service.start()
      expect(await status(sourceSystemKeys.old)).toBe(404)
      write(files.CIF_SOURCE_SYSTEMS_FILE, [`branch-portal=${apiKeyHash(sourceSystemKeys.new)}`])
      process.kill(service.pid!, 'SIGHUP')
      await expect.poll(() => status(sourceSystemKeys.new), { timeout: 10_000 }).toBe(404)
      expect(await status(sourceSystemKeys.old)).toBe(401)
      expect(service.pid).toBeDefined()
    } finally {
      await service.stop()
    }
  })
})
