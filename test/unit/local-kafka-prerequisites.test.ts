import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { LocalKafkaUnavailable, startLocalKafka } from '../../src/platform/local/kafka-broker.ts'
import { createLogger } from '../../src/platform/logger.ts'

describe('local Kafka prerequisites', () => {
  const path = process.env.PATH
  afterEach(() => {
    process.env.PATH = path
  })

  it('says in one sentence what is missing when there is no Java', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'no-java-'))
    process.env.PATH = dir // an empty folder: neither java nor mvn is found
    try {
      const started = startLocalKafka({ dir, port: 1 }, createLogger('silent', 'test'))
      await expect(started).rejects.toBeInstanceOf(LocalKafkaUnavailable)
      await expect(started).rejects.toThrow(/needs Java 17 or newer.*or set KAFKA_BROKERS=host:port/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
