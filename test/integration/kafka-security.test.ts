import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import {
  type Acl,
  AclOperations,
  type AclOperationValue,
  AclPermissionTypes,
  Admin,
  ResourcePatternTypes,
  ResourceTypes,
  type ResourceTypeValue
} from '@platformatic/kafka'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { topics } from '../../src/contracts/topics.ts'
import { configuredKafka, devSourceSystem, loadConfig } from '../../src/platform/config.ts'
import { migrateToLatest, openDatabase } from '../../src/platform/database/index.ts'
import { clientConnection, createConsumer, createIdempotentProducer, createProbe, type KafkaCluster } from '../../src/platform/kafka.ts'
import { type LocalKafka, startLocalKafka } from '../../src/platform/local/kafka-broker.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { migrations } from '../../src/roles/migrations.ts'
import type { TestDatabase } from '../support/database.ts'
import { ServiceProcess } from '../support/service-process.ts'
import { freePort } from './free-port.ts'
import { call, newPerson, TopicReader } from './helpers.ts'
import { CORE_BANKING_TOKEN, deliveriesOf, eventually, startTestSimulator } from './syncer-helpers.ts'

// The services against a broker such as a bank runs: TLS only, every client a SCRAM principal, and the
// authorizer allowing each only what its ACLs say. The ACLs are the ones docs/security.md lists.

const SYNCER_GROUP = 'cif-syncer'
const password = () => randomBytes(18).toString('hex')
const users = { admin: password(), cif: password(), syncer: password() }

/** A CA and a certificate it signs for the broker on 127.0.0.1 (and localhost), made with openssl. */
async function makeCertificates(dir: string): Promise<{ caFile: string; keyAndCertificateFile: string }> {
  const openssl = (args: string) => execFileSync('openssl', args.split(' '), { cwd: dir, stdio: 'pipe' })
  openssl('req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=cif-syncer-test-ca')
  openssl('req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout broker.key -out broker.csr -subj /CN=localhost')
  await writeFile(join(dir, 'broker.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  openssl('x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile broker.ext -out broker.crt')
  // The broker's keystore: its key, then its certificate.
  await writeFile(join(dir, 'broker.pem'), (await readFile(join(dir, 'broker.key'), 'utf8')) + (await readFile(join(dir, 'broker.crt'), 'utf8')))
  return { caFile: join(dir, 'ca.pem'), keyAndCertificateFile: join(dir, 'broker.pem') }
}

const allow = (principal: string, resourceType: ResourceTypeValue, resourceName: string, operation: AclOperationValue): Acl => ({
  resourceType,
  resourceName,
  resourcePatternType: ResourcePatternTypes.LITERAL,
  principal: `User:${principal}`,
  host: '*',
  operation,
  permissionType: AclPermissionTypes.ALLOW
})

/** What each service's principal is allowed, and nothing else (docs/security.md, "Kafka"). */
const acls: Acl[] = [
  allow('cif', ResourceTypes.TOPIC, topics.customerEvents, AclOperations.WRITE),
  allow('syncer', ResourceTypes.TOPIC, topics.customerEvents, AclOperations.READ),
  allow('syncer', ResourceTypes.GROUP, SYNCER_GROUP, AclOperations.READ),
  allow('syncer', ResourceTypes.TOPIC, topics.syncStatus, AclOperations.WRITE)
]
/** Not one the CIF service needs: with it the test shows that the topic itself, not only the group, is closed to it. */
const CIF_SCRATCH_GROUP = 'cif-read-attempt'
const granted = [...acls, allow('cif', ResourceTypes.GROUP, CIF_SCRATCH_GROUP, AclOperations.READ)]

/** Every reason a client error gives, nested ones (AggregateError, cause) included: Kafka's error names and the messages. */
function reasons(error: unknown): string[] {
  if (!(error instanceof Error)) return []
  const own = [error.message, ...('apiId' in error ? [String(error.apiId)] : []), ...('code' in error ? [String(error.code)] : [])]
  const nested = [...('errors' in error && Array.isArray(error.errors) ? error.errors : []), ...(error.cause ? [error.cause] : [])]
  return [...own, ...nested.flatMap(reasons)]
}

describe('Kafka with TLS, SCRAM and ACLs', () => {
  let dir: string
  let kafka: LocalKafka
  let caFile: string
  /** The environment a service process would have, for `user`. */
  let envFor: (user: keyof typeof users, passwordOverride?: string) => Record<string, string>
  /** The cluster as `user` reaches it, from that environment, as a service's config makes it. */
  let clusterFor: (user: keyof typeof users, passwordOverride?: string) => KafkaCluster

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cif-syncer-kafka-security-'))
    await chmod(dir, 0o755)
    const certificates = await makeCertificates(dir)
    caFile = certificates.caFile
    kafka = await startLocalKafka(
      {
        dir: join(dir, 'kafka'),
        port: await freePort(),
        controllerPort: await freePort(),
        secured: {
          ...certificates,
          users: [
            { name: 'admin', password: users.admin },
            { name: 'cif', password: users.cif },
            { name: 'syncer', password: users.syncer }
          ]
        }
      },
      createLogger(process.env.LOG_LEVEL ?? 'warn', 'secured-broker')
    )
    envFor = (user, passwordOverride) => ({
      KAFKA_BROKERS: kafka.cluster.brokers.join(','),
      KAFKA_SECURITY_PROTOCOL: 'SASL_SSL',
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
      KAFKA_SASL_USERNAME: user,
      KAFKA_SASL_PASSWORD: passwordOverride ?? users[user],
      KAFKA_TLS_CA_FILE: caFile
    })
    clusterFor = (user, passwordOverride) => configuredKafka(loadConfig(envFor(user, passwordOverride)))!

    // The step a deployment runs once, as an operations principal, then the grants.
    execFileSync(process.execPath, [fileURLToPath(new URL('../../src/cli.ts', import.meta.url)), 'create-topics'], {
      env: { ...process.env, LOG_LEVEL: 'warn', ...envFor('admin') },
      stdio: 'pipe'
    })
    const admin = new Admin({ clientId: 'kafka-security-test', ...clientConnection(clusterFor('admin')) })
    try {
      await admin.createAcls({ creations: granted })
      // The broker applies them once they are in its metadata; until then its answers would not be the ACLs'.
      const any = { resourceType: ResourceTypes.ANY, resourceName: null, resourcePatternType: ResourcePatternTypes.ANY, principal: null, host: null }
      const filter = { ...any, operation: AclOperations.ANY, permissionType: AclPermissionTypes.ANY }
      while ((await admin.describeAcls({ filter })).flatMap((resource) => resource.acls).length < granted.length) await sleep(100)
    } finally {
      await admin.close()
    }
  })

  afterAll(async () => {
    await kafka?.stop()
    // KEEP_STACK_DIR, as for the process stack: the broker's and the services' logs stay to read.
    if (dir && !process.env.KEEP_STACK_DIR) await rm(dir, { recursive: true, force: true })
  })

  /** Sends one message to `topic` as `cluster`'s principal: the reasons it was refused, or [] when it was taken. */
  const refusalOf = async (cluster: KafkaCluster, topic: string): Promise<string[]> => {
    const producer = createIdempotentProducer(cluster, 'kafka-security-test')
    try {
      await producer.send({ messages: [{ topic, key: '10000000009', value: JSON.stringify({ test: 'kafka-security' }) }] })
      return []
    } catch (error) {
      return reasons(error)
    } finally {
      await producer.close()
    }
  }

  /** Reads `topic` as `cluster`'s principal in `groupId`: the first message's value, or the reasons it was refused. */
  const readFirst = async (cluster: KafkaCluster, groupId: string, topic: string): Promise<{ value?: string; refused?: string[] }> => {
    const consumer = createConsumer(cluster, groupId, 'kafka-security-test')
    try {
      const stream = await consumer.consume({ topics: [topic], mode: 'earliest' })
      try {
        const failed = new Promise<never>((_, reject) => stream.once('error', reject))
        const first = (async () => {
          for await (const message of stream) return { value: message.value }
          return {}
        })()
        return await Promise.race([first, failed])
      } finally {
        await stream.close()
      }
    } catch (error) {
      return { refused: reasons(error) }
    } finally {
      await consumer.close(true)
    }
  }

  it('lets the CIF service publish customer events, and nothing else', async () => {
    expect(await refusalOf(clusterFor('cif'), topics.customerEvents)).toEqual([])
    expect(await refusalOf(clusterFor('cif'), topics.syncStatus)).toContain('TOPIC_AUTHORIZATION_FAILED')
    expect((await readFirst(clusterFor('cif'), SYNCER_GROUP, topics.customerEvents)).refused).toContain('GROUP_AUTHORIZATION_FAILED')
    // Even in a group it may use, the topic itself is closed to it.
    expect((await readFirst(clusterFor('cif'), CIF_SCRATCH_GROUP, topics.customerEvents)).refused).toContain('TOPIC_AUTHORIZATION_FAILED')
  })

  it('lets the syncer read customer events in its group and publish status, and nothing else', async () => {
    expect(await refusalOf(clusterFor('cif'), topics.customerEvents)).toEqual([])
    expect(await readFirst(clusterFor('syncer'), SYNCER_GROUP, topics.customerEvents)).toEqual({ value: JSON.stringify({ test: 'kafka-security' }) })
    expect((await readFirst(clusterFor('syncer'), 'another-group', topics.customerEvents)).refused).toContain('GROUP_AUTHORIZATION_FAILED')
    expect(await refusalOf(clusterFor('syncer'), topics.syncStatus)).toEqual([])
    expect(await refusalOf(clusterFor('syncer'), topics.customerEvents)).toContain('TOPIC_AUTHORIZATION_FAILED')
  })

  it('refuses a wrong password, a client without TLS, and a broker certificate the client does not trust', async () => {
    const refusal = async (cluster: KafkaCluster): Promise<string[]> => {
      const probe = createProbe(cluster, 5000)
      try {
        await probe.metadata({ topics: [], forceUpdate: true })
        return []
      } catch (error) {
        return reasons(error)
      } finally {
        await probe.close()
      }
    }
    const syncer = clusterFor('syncer')
    expect(await refusal(syncer)).toEqual([])
    expect(await refusal(clusterFor('syncer', 'not-the-password'))).toContain('SASL_AUTHENTICATION_FAILED')
    expect(await refusal({ brokers: syncer.brokers, security: {} })).toContain('Broker requires TLS.')
    expect(await refusal({ brokers: syncer.brokers, security: { ...syncer.security, tls: {} } })).toContain('UNABLE_TO_VERIFY_LEAF_SIGNATURE')
  })

  it('runs the CIF service and the syncer each as its own principal: a customer is created and delivered everywhere', async () => {
    // A database of this test's own on the shared server, so that neither service meets other files' rows.
    const serverUrl = new URL(inject('databaseUrl'))
    const name = `cif_syncer_kafka_security_${randomBytes(6).toString('hex')}`
    const server = openDatabase<unknown>(new URL('/postgres', serverUrl).href, { maxConnections: 1 })
    await sql.raw(`create database ${name}`).execute(server.db)
    const databaseUrl = new URL(`/${name}`, serverUrl).href
    const migrator = openDatabase<unknown>(databaseUrl, { maxConnections: 1 })
    await migrateToLatest(migrator.db, migrations)
    await migrator.close()
    const database = openDatabase<TestDatabase>(databaseUrl, { maxConnections: 2 })
    const simulator = await startTestSimulator()
    const status = await TopicReader.open(clusterFor('admin'), topics.syncStatus)
    // The syncer's password from a file, as a secret mounted into its container would be.
    const syncerPasswordFile = join(dir, 'syncer-password')
    await writeFile(syncerPasswordFile, `${users.syncer}\n`, { mode: 0o600 })
    const { KAFKA_SASL_PASSWORD: _, ...syncerKafka } = envFor('syncer')
    const [cifPort, syncerPort] = [await freePort(), await freePort()]
    const common = { NODE_ENV: 'development', LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', DATABASE_URL: databaseUrl, OUTBOX_POLL_INTERVAL_MS: '200' }
    const cif = new ServiceProcess(
      'cif-service',
      `http://127.0.0.1:${cifPort}/health/ready`,
      { ...common, ...envFor('cif'), CIF_PORT: String(cifPort) },
      join(dir, 'cif-service.log')
    )
    const url = (system: string) => simulator.systems.get(system)!.url
    const syncer = new ServiceProcess(
      'syncer',
      `http://127.0.0.1:${syncerPort}/health/ready`,
      {
        ...common,
        ...syncerKafka,
        KAFKA_SASL_PASSWORD_FILE: syncerPasswordFile,
        SYNCER_PORT: String(syncerPort),
        SYNCER_GROUP_ID: SYNCER_GROUP,
        CORE_BANKING_URL: url('core-banking'),
        CRM_URL: url('crm'),
        CARDS_URL: url('cards'),
        CORE_BANKING_TOKEN
      },
      join(dir, 'syncer.log')
    )
    try {
      // Ready: each one's probe authenticated and the syncer's intake joined its group. The customer then
      // takes both relays' producers (its event, and the syncer's status on it).
      await Promise.all([cif.start(), syncer.start()])
      const created = await call(`http://127.0.0.1:${cifPort}`, 'POST', '/v1/customers', { body: newPerson(), key: devSourceSystem.apiKey })
      expect(created.status).toBe(201)
      const { cifId } = created.body
      const deliveries = await eventually(
        () => deliveriesOf(database, cifId),
        (rows) => rows.length === 3 && rows.every((row) => row.state === 'SUCCESS'),
        30_000
      )
      expect(deliveries.map((row) => row.end_system).sort()).toEqual(['cards', 'core-banking', 'crm'])
      await status.waitFor(() => status.forKey(cifId).some((message) => message.value.type === 'cif.sync.customer.in-sync'), 20_000)
      // Committing offsets and measuring the lag (the group's offsets, the topic's ends) take no more ACLs.
      await eventually(
        async () => (await call(`http://127.0.0.1:${syncerPort}`, 'GET', '/health/ready', { key: null })).body?.details?.intake,
        (intake) => intake?.lag === 0,
        20_000
      )
    } finally {
      await Promise.all([cif.stop(), syncer.stop()])
      await status.close()
      await simulator.close()
      await database.close()
      await sql.raw(`drop database if exists ${name} with (force)`).execute(server.db)
      await server.close()
    }
  })
})
