import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { brokerJars, ensureBrokerJars, LocalKafkaUnavailable, replicationFor, startLocalKafka } from '../../src/platform/local/kafka-broker.ts'
import { createLogger } from '../../src/platform/logger.ts'

describe('local Kafka replication', () => {
  it('keeps three copies on a cluster of three or more, needing all but one for a write, and one copy on a single broker', () => {
    expect([1, 2, 3, 5].map(replicationFor)).toEqual([
      { replicationFactor: 1, minInsyncReplicas: 1 },
      { replicationFactor: 2, minInsyncReplicas: 1 },
      { replicationFactor: 3, minInsyncReplicas: 2 },
      { replicationFactor: 3, minInsyncReplicas: 2 }
    ])
  })
})

describe('local Kafka prerequisites', () => {
  const { PATH: path, HOME: home } = process.env
  afterEach(() => {
    process.env.PATH = path
    process.env.HOME = home
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

  it('lists every dependency of the broker pom at its version among the jars copied without Maven', async () => {
    const pom = await readFile('infra/kafka/pom.xml', 'utf8')
    const properties = Object.fromEntries([...pom.matchAll(/<([\w.]+)>([^<]+)<\/\1>/g)].map((m) => [m[1], m[2]]))
    const declared = [...pom.matchAll(/<dependency>\s*<groupId>(.+?)<\/groupId>\s*<artifactId>(.+?)<\/artifactId>\s*<version>(.+?)<\/version>/g)].map(
      ([, groupId, artifactId, version]) => `${groupId}:${artifactId}:${version!.replace(/\$\{(.+?)\}/, (_, name: string) => properties[name]!)}`
    )
    expect(declared.length).toBeGreaterThan(3)
    const listed = brokerJars(await readFile('infra/kafka/broker-jars.txt', 'utf8')).map((j) => `${j.groupId}:${j.artifactId}:${j.version}`)
    expect(listed).toEqual(expect.arrayContaining(declared))
  })

  it("copies the broker jars from Maven's local repository without running Maven when it holds them all", async () => {
    const home = await mkdtemp(join(tmpdir(), 'm2-home-'))
    try {
      const jars = brokerJars(await readFile('infra/kafka/broker-jars.txt', 'utf8'))
      for (const { groupId, artifactId, version } of jars) {
        const dir = join(home, '.m2', 'repository', ...groupId.split('.'), artifactId, version)
        await mkdir(dir, { recursive: true })
        await writeFile(join(dir, `${artifactId}-${version}.jar`), artifactId)
      }
      process.env.HOME = home
      process.env.PATH = home // no mvn to be found: it must not be needed
      const libDir = join(home, 'lib')
      await ensureBrokerJars(libDir, createLogger('silent', 'test'))
      expect((await readdir(libDir)).filter((name) => name.endsWith('.jar')).sort()).toEqual(
        jars.map(({ artifactId, version }) => `${artifactId}-${version}.jar`).sort()
      )
      // One missing: Maven is needed after all, and says so.
      await rm(join(home, '.m2', 'repository', 'org', 'slf4j'), { recursive: true })
      await rm(libDir, { recursive: true })
      await expect(ensureBrokerJars(libDir, createLogger('silent', 'test'))).rejects.toThrow(/fetched once from Maven Central with Maven/)
    } finally {
      await rm(home, { recursive: true, force: true })
    }
  })
})
