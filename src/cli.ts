#!/usr/bin/env node
// One entry point, one process role per command.
import { userInfo } from 'node:os'
import { parseArgs } from 'node:util'
import { startCifService } from './cif/service.ts'
import type { CifDatabase } from './cif/tables.ts'
import { isValidCifId } from './contracts/cif-id.ts'
import { Refusal } from './contracts/problems.ts'
import { topicPartitions } from './contracts/topics.ts'
import { type Config, ConfigError, type Connections, configuredKafka, loadConfig } from './platform/config.ts'
import { migrateToLatest, openDatabase } from './platform/database/index.ts'
import { apiKeyHash } from './platform/http/api-key-auth.ts'
import { ensureTopics } from './platform/kafka.ts'
import { onShutdown } from './platform/lifecycle.ts'
import { LocalKafkaUnavailable } from './platform/local/kafka-broker.ts'
import { createLogger } from './platform/logger.ts'
import { reloadOnHangup } from './platform/reload.ts'
import { ErasureRequestError, eraseCustomerEverywhere } from './roles/erasure.ts'
import { runLocalStack } from './roles/local-stack.ts'
import { migrations } from './roles/migrations.ts'
import { backfillCommand, reconcileCommand, repairCommand } from './roles/reconcile.ts'
import { runSimulator } from './roles/simulator.ts'
import { tailTopic } from './roles/tail.ts'
import { startSyncer } from './syncer/service.ts'
import type { SyncerDatabase } from './syncer/tables.ts'

const usage = `Usage: cif-syncer <command>

  up                  run the whole local stack (PostgreSQL, Kafka, CIF service, syncer, simulator)
  cif-service         run the CIF service against DATABASE_URL and KAFKA_BROKERS
  syncer              run the syncer against DATABASE_URL and KAFKA_BROKERS
  simulator           run the simulated end systems
  migrate             apply database migrations to DATABASE_URL
  create-topics       create the Kafka topics missing on KAFKA_BROKERS (a principal that may create them)
  tail <topic> [--from-beginning]
                      print a topic's messages (KAFKA_BROKERS, default 127.0.0.1:9092)
  hash-key <key>      print the SHA-256 of an API key, for CIF_SOURCE_SYSTEMS
  erase-customer <cifId> --reason <why> [--by <who>]
                      erase one customer's personal data from the CIF service and the syncer
                      (DATABASE_URL), keeping the audit trail; --by defaults to the system user
  reconcile [--system X ...] [--customers <cifId>,...] [--since <instant>] [--repair]
                      read customers back from the end systems, classify what they hold, show the findings
                      (DATABASE_URL and the end systems file); --repair repairs them all (the syncers deliver)
  repair --run <id> | --finding <id> --reason <why>
                      repair a run's findings, or one finding, with a normal delivery of the latest version
  backfill --system X deliver each customer's latest version to a system that holds none yet, with progress

Kafka security (TLS, SASL) comes from KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_TLS_*: see the README.
`

const print = (line: string): void => {
  process.stdout.write(`${line}\n`)
}

function required(config: Config): Connections {
  const kafka = configuredKafka(config)
  if (!config.databaseUrl || !kafka) {
    throw new ConfigError('Set DATABASE_URL and KAFKA_BROKERS, or run `cif-syncer up` for the local stack.')
  }
  return { databaseUrl: config.databaseUrl, kafka }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv
  const loaded = loadConfig()
  // A person watches the local stack; a process role's log goes to machines.
  const config: Config = { ...loaded, logFormat: loaded.logFormat ?? (command === 'up' ? 'pretty' : 'json') }
  const log = createLogger(config.logLevel, command ?? 'cif-syncer', config.logFormat)
  switch (command) {
    case 'up':
      return runLocalStack(config, log)
    case 'cif-service': {
      const service = await startCifService(config, required(config), log)
      onShutdown(log, service.close)
      reloadOnHangup(config, [service.app], log)
      return
    }
    case 'syncer': {
      const syncer = await startSyncer(config, required(config), log)
      onShutdown(log, syncer.close)
      reloadOnHangup(config, [syncer.app], log)
      return
    }
    case 'simulator':
      return runSimulator(config, log)
    case 'migrate': {
      const database = openDatabase(required(config).databaseUrl, { maxConnections: 1 })
      try {
        log.info({ applied: await migrateToLatest(database.db, migrations) }, 'database is up to date')
      } finally {
        await database.close()
      }
      return
    }
    case 'create-topics': {
      const kafka = configuredKafka(config)
      if (!kafka) throw new ConfigError("Set KAFKA_BROKERS: `cif-syncer up` creates the local broker's topics itself.")
      log.info({ created: await ensureTopics(kafka, topicPartitions) }, 'Kafka topics are in place')
      return
    }
    case 'tail':
      if (!args[0]) break
      return tailTopic(
        configuredKafka(config) ?? { brokers: [`127.0.0.1:${config.localKafkaPort}`], security: {} },
        args[0],
        args.includes('--from-beginning')
      )
    case 'erase-customer': {
      const { positionals, values } = parseArgs({
        args,
        allowPositionals: true,
        options: { reason: { type: 'string' }, by: { type: 'string', default: userInfo().username } }
      })
      if (positionals.length !== 1 || values.reason === undefined) break
      if (!config.databaseUrl) throw new ConfigError('Set DATABASE_URL to the database of the CIF service and the syncer.')
      const database = openDatabase<CifDatabase & SyncerDatabase>(config.databaseUrl, { maxConnections: 1 })
      try {
        const erased = await eraseCustomerEverywhere(database.db, { cifId: positionals[0]!, by: values.by, reason: values.reason })
        process.stdout.write(`${JSON.stringify({ cifId: positionals[0], erasedBy: values.by, ...erased }, null, 2)}\n`)
      } catch (error) {
        if (!(error instanceof ErasureRequestError || error instanceof Refusal)) throw error
        process.stderr.write(`${error.message}\n`)
        process.exitCode = 1
      } finally {
        await database.close()
      }
      return
    }
    case 'reconcile': {
      const { values } = parseArgs({
        args,
        options: {
          system: { type: 'string', multiple: true, default: [] },
          customers: { type: 'string', default: '' },
          since: { type: 'string' },
          repair: { type: 'boolean', default: false },
          by: { type: 'string', default: userInfo().username }
        }
      })
      const since = values.since === undefined ? undefined : new Date(values.since)
      if (since && Number.isNaN(since.getTime())) throw new ConfigError(`--since ${values.since} is not an instant (e.g. 2026-11-27T00:00:00Z).`)
      const cifIds = values.customers
        .split(',')
        .map((id) => id.trim())
        .filter(Boolean)
      const invalid = cifIds.filter((id) => !isValidCifId(id))
      if (invalid.length) throw new ConfigError(`--customers: ${invalid.join(', ')} ${invalid.length === 1 ? 'is not a CIF ID' : 'are not CIF IDs'}.`)
      return reconcileCommand(config, log, { systems: values.system, cifIds, since, repair: values.repair, by: values.by }, print)
    }
    case 'repair': {
      const { values } = parseArgs({
        args,
        options: {
          run: { type: 'string' },
          finding: { type: 'string' },
          reason: { type: 'string' },
          by: { type: 'string', default: userInfo().username }
        }
      })
      if ((values.run === undefined) === (values.finding === undefined) || values.reason === undefined) break
      if (!/^[1-9][0-9]{0,17}$/.test(values.run ?? values.finding!))
        throw new ConfigError('--run and --finding take the id the run or finding was given.')
      const which = values.run !== undefined ? { runId: values.run } : { findingIds: [values.finding!] }
      return repairCommand(config, which, values.by, values.reason, print)
    }
    case 'backfill': {
      const { values } = parseArgs({ args, options: { system: { type: 'string' }, by: { type: 'string', default: userInfo().username } } })
      if (values.system === undefined) break
      return backfillCommand(config, log, values.system, values.by, print)
    }
    case 'hash-key':
      if (!args[0]) break
      process.stdout.write(`${apiKeyHash(args[0])}\n`)
      return
  }
  process.stderr.write(usage)
  process.exitCode = 2
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof ConfigError || error instanceof LocalKafkaUnavailable) {
    process.stderr.write(`${error.message}\n`)
  } else {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
  }
  process.exit(1)
})
