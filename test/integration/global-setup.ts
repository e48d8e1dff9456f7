import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { loadConfig } from '../../src/platform/config.ts'
import type { KafkaCluster } from '../../src/platform/kafka.ts'
import { startInfrastructure } from '../../src/platform/local/infrastructure.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { migrations } from '../../src/roles/migrations.ts'
import { freePort, freePortRange } from './free-port.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string
    kafka: KafkaCluster
  }
}

/**
 * Starts the real stack once per run: the project's own local PostgreSQL and Kafka in a fresh folder
 * on free ports, or the servers named by DATABASE_URL / KAFKA_BROKERS.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dataDir = await mkdtemp(join(tmpdir(), 'cif-syncer-test-'))
  await chmod(dataDir, 0o755) // PostgreSQL runs as the postgres user when we are root
  const config = loadConfig({
    ...process.env,
    CIF_DATA_DIR: dataDir,
    LOCAL_POSTGRES_PORT: String(await freePort()),
    // The broker takes two ports: its own and its controller's, the next one.
    KAFKA_PORT: String(await freePortRange(2))
  })
  const infrastructure = await startInfrastructure(config, createLogger(process.env.LOG_LEVEL ?? 'warn', 'test-stack'), migrations)
  project.provide('databaseUrl', infrastructure.databaseUrl)
  project.provide('kafka', infrastructure.kafka)
  return async () => {
    await infrastructure.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}
