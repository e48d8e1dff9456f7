import { join } from 'node:path'
import type { Migration } from 'kysely/migration'
import { topicPartitions } from '../../contracts/topics.ts'
import { type Config, configuredKafka } from '../config.ts'
import { migrateToLatest, openDatabase } from '../database/index.ts'
import { ensureTopics, type KafkaCluster } from '../kafka.ts'
import type { Logger } from '../logger.ts'
import { type ExtraListener, type LocalKafka, startLocalKafka } from './kafka-broker.ts'
import { type LocalPostgres, startLocalPostgres } from './postgres.ts'

export interface Infrastructure {
  databaseUrl: string
  kafka: KafkaCluster
  /** Present when this process started them itself (fault tests stop and restart them). */
  localKafka: LocalKafka | undefined
  localPostgres: LocalPostgres | undefined
  stop(): Promise<void>
}

/**
 * Brings up what the services stand on: PostgreSQL and Kafka, each either the one configured
 * (DATABASE_URL, KAFKA_BROKERS) or a local one started here, then the schema (`migrations`) and the topics.
 * `local.kafkaListeners`: more named listeners on each local broker (see LocalKafkaOptions.extraListeners).
 */
export async function startInfrastructure(
  config: Config,
  log: Logger,
  migrations: Record<string, Migration>,
  local: { kafkaListeners?: ExtraListener[][] } = {}
): Promise<Infrastructure> {
  const [postgres, broker] = await Promise.allSettled([
    config.databaseUrl
      ? Promise.resolve<LocalPostgres | undefined>(undefined)
      : startLocalPostgres(join(config.dataDir, 'postgres'), config.localPostgresPort, log),
    config.kafkaBrokers
      ? Promise.resolve<LocalKafka | undefined>(undefined)
      : startLocalKafka(
          {
            dir: join(config.dataDir, 'kafka'),
            port: config.localKafkaPort,
            brokers: config.localKafkaBrokers,
            extraListeners: local.kafkaListeners
          },
          log
        )
  ])
  const localPostgres = postgres.status === 'fulfilled' ? postgres.value : undefined
  const localKafka = broker.status === 'fulfilled' ? broker.value : undefined
  const stop = async (): Promise<void> => {
    await Promise.all([localKafka?.stop(), localPostgres?.stop()])
  }
  if (postgres.status === 'rejected' || broker.status === 'rejected') {
    await stop()
    throw postgres.status === 'rejected' ? postgres.reason : (broker as PromiseRejectedResult).reason
  }

  const databaseUrl = config.databaseUrl ?? localPostgres!.url
  const kafka = configuredKafka(config) ?? localKafka!.cluster
  try {
    const database = openDatabase(databaseUrl, { maxConnections: 1 })
    try {
      const applied = await migrateToLatest(database.db, migrations)
      if (applied.length) log.info({ applied }, 'database migrations applied')
    } finally {
      await database.close()
    }
    const created = await ensureTopics(kafka, topicPartitions)
    if (created.length) log.info({ created }, 'Kafka topics created')
  } catch (error) {
    await stop()
    throw error
  }
  return { databaseUrl, kafka, localKafka, localPostgres, stop }
}
