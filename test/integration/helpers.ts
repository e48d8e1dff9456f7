import { randomUUID } from 'node:crypto'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { type CloudEvent, Kafka, type KafkaMessage } from 'cloudevents'
import { inject } from 'vitest'
import { type CifService, startCifService } from '../../src/cif/service.ts'
import { type ProblemType, problemTypeUri } from '../../src/contracts/problems.ts'
import { topicPartitions, topics } from '../../src/contracts/topics.ts'
import type { Connections } from '../../src/platform/config.ts'
import { loadConfig } from '../../src/platform/config.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'
import { ensureTopics } from '../../src/platform/kafka.ts'
import { type LocalKafka, startLocalKafka } from '../../src/platform/local/kafka-broker.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { freePort } from './free-port.ts'

export const keys = { branchPortal: 'test-branch-portal-key', onboardingApp: 'test-onboarding-app-key' }
export const operatorKey = 'test-operator-key'
/** A second operator, with the role approver: the other person that a skip or a bulk redrive needs. */
export const approverKey = 'test-approver-key'
export const withApprover = {
  SYNCER_OPERATORS: `test-operator=${apiKeyHash(operatorKey)},test-approver=${apiKeyHash(approverKey)}`,
  SYNCER_OPERATOR_ROLES: 'test-approver:approver'
}

export function connections(): Connections {
  return { databaseUrl: inject('databaseUrl'), kafka: inject('kafka') }
}

/** A CIF service on a free port with two source systems, against the shared test stack unless told otherwise. */
export async function startTestCifService(overrides: Partial<Connections> = {}, env: Record<string, string> = {}): Promise<CifService> {
  const config = loadConfig({
    CIF_PORT: '0',
    CIF_SOURCE_SYSTEMS: `branch-portal=${apiKeyHash(keys.branchPortal)},onboarding-app=${apiKeyHash(keys.onboardingApp)}`,
    OUTBOX_POLL_INTERVAL_MS: '200',
    ...env
  })
  return startCifService(config, { ...connections(), ...overrides }, createLogger(process.env.LOG_LEVEL ?? 'warn', 'cif-test'))
}

/**
 * A broker of the test's own, with the project's topics (`partitions` each, 12 unless told), so that
 * stopping it leaves the shared one alone.
 */
export async function startOwnBroker(partitions?: number): Promise<{ kafka: LocalKafka; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'cif-syncer-own-broker-'))
  await chmod(dir, 0o755)
  const kafka = await startLocalKafka(
    { dir, port: await freePort(), controllerPort: await freePort() },
    createLogger(process.env.LOG_LEVEL ?? 'warn', 'own-broker')
  )
  await ensureTopics(kafka.cluster, partitions ? Object.fromEntries(Object.values(topics).map((topic) => [topic, partitions])) : topicPartitions)
  return {
    kafka,
    remove: async () => {
      await kafka.stop()
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/** The `type` a problem of this kind is answered with. */
export const problemType = (kind: ProblemType): string => problemTypeUri(kind.code)

export interface ApiResponse {
  status: number
  headers: Headers
  body: any
}

export async function call(
  baseUrl: string,
  method: string,
  path: string,
  options: { body?: unknown; raw?: string; key?: string | null; headers?: Record<string, string> } = {}
): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...options.headers }
  const key = options.key === undefined ? keys.branchPortal : options.key
  if (key !== null) headers.authorization = `Bearer ${key}`
  let body: string | undefined = options.raw
  if (options.body !== undefined) {
    body = JSON.stringify(options.body)
    headers['content-type'] ??= 'application/json'
  }
  const response = await fetch(`${baseUrl}${path}`, { method, headers, body })
  const text = await response.text()
  let parsed: unknown = text
  try {
    parsed = text ? JSON.parse(text) : undefined
  } catch {
    // leave it as text
  }
  return { status: response.status, headers: response.headers, body: parsed }
}

let serial = 0
/** A valid PERSON with identifiers and an externalId no other test uses. */
export function newPerson(overrides: Record<string, unknown> = {}): Record<string, any> {
  const unique = `${Date.now().toString(36)}${(serial++).toString(36)}${randomUUID().slice(0, 6)}`.toUpperCase()
  return {
    legalForm: 'PERSON',
    firstName: 'Ada',
    middleName: 'King',
    lastName: 'Lovelace',
    dateOfBirth: '1985-12-10',
    mobileNumber: '+6591234567',
    email: 'ada@example.com',
    identifiers: [{ type: 'PASSPORT', value: `P${unique}`.slice(0, 40), issuingCountry: 'GB' }],
    addresses: [{ type: 'HOME', line1: '12 St James’s Square', city: 'London', postalCode: 'SW1Y 4JH', country: 'GB' }],
    branchCode: 'LDN01',
    externalId: `bp-${unique}`,
    ...overrides
  }
}

import type { TopicMessage } from '../support/topic-reader.ts'

export { type TopicMessage, TopicReader } from '../support/topic-reader.ts'

/**
 * A message as a consumer on the CloudEvents JavaScript SDK reads it, the SDK working out the binding's
 * mode from the headers itself; and whether a `ce_` header would make other SDKs (Python's) take it for
 * binary mode. The SDK maps the message key to `partitionkey`.
 */
export function readWithCloudEventsSdk(message: TopicMessage): { event: Record<string, unknown>; ceHeaders: string[] } {
  const event = Kafka.toEvent({
    key: message.key,
    headers: message.headers,
    value: message.raw,
    body: message.raw
  } as KafkaMessage<string>) as CloudEvent
  return { event: event.toJSON(), ceHeaders: Object.keys(message.headers).filter((name) => name.toLowerCase().startsWith('ce_')) }
}

const ajv = new Ajv2020({ allErrors: true, strict: false })
addFormats.default(ajv)
/** Validates an event against the committed JSON Schema of its type (schemas/events/). */
export async function eventSchemaErrors(event: { type: string }): Promise<string[]> {
  const { default: schema } = await import(`../../schemas/events/${event.type}.json`, { with: { type: 'json' } })
  const validate = ajv.getSchema(schema.$id) ?? ajv.compile(schema)
  return validate(event) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`)
}
