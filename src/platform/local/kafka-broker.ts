import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, existsSync } from 'node:fs'
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { createProbe, type KafkaCluster, kafkaAnswers } from '../kafka.ts'
import type { Logger } from '../logger.ts'
import { stopLeftover, terminate } from './processes.ts'

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const brokerPom = join(repoRoot, 'infra/kafka/pom.xml')
const brokerJarList = join(repoRoot, 'infra/kafka/broker-jars.txt')

export interface LocalKafkaOptions {
  /** Storage, configuration and log of this broker. */
  dir: string
  /** Where the broker jars are cached; shared by every local broker of this checkout. */
  libDir?: string
  port: number
  controllerPort?: number
  /**
   * A SASL_SSL listener (SCRAM-SHA-512) with the authorizer on, instead of PLAINTEXT: a broker like a
   * bank's, for the Kafka security test. `users` are created as the storage is formatted; the first is
   * the broker's own login and a super user; the others may do what ACLs allow them, nothing more.
   */
  secured?: {
    /** PEM: the broker's unencrypted private key (PKCS#8) followed by its certificate, for 127.0.0.1. */
    keyAndCertificateFile: string
    /** PEM: the CA that signed it, which clients (and the broker, calling itself) check it against. */
    caFile: string
    users: [SaslUser, ...SaslUser[]]
  }
  /**
   * More client listeners, each with a name of its own (e.g. `CIF`), listening on `port` and advertised at
   * `advertisedPort`: a client that reaches the broker through a proxy (the network fault tests' Toxiproxy)
   * must be told the proxy's address in the metadata, or it reconnects around the proxy to the broker itself.
   */
  extraListeners?: ExtraListener[]
}

export interface ExtraListener {
  name: string
  port: number
  advertisedPort: number
}

export interface SaslUser {
  name: string
  password: string
}

export interface LocalKafka {
  /** How to reach the broker; for a secured one, as its super user. */
  cluster: KafkaCluster
  /** The broker's process, while it runs. */
  pid(): number | undefined
  /**
   * Stops the broker (SIGTERM: a clean shutdown; SIGKILL: as if its machine died); its storage stays, so
   * `start()` brings the same topics and offsets back.
   */
  stop(signal?: NodeJS.Signals): Promise<void>
  start(): Promise<void>
}

/** The one sentence a developer needs when the local broker cannot be started. */
export class LocalKafkaUnavailable extends Error {
  override name = 'LocalKafkaUnavailable'
}

function commandWorks(command: string, args: string[]): { ok: boolean; output: string } {
  const result = spawnSync(command, args, { encoding: 'utf8' })
  return { ok: result.status === 0, output: `${result.stdout ?? ''}${result.stderr ?? ''}` }
}

function checkJava(): void {
  const java = commandWorks('java', ['-version'])
  const major = Number(/version "(\d+)/.exec(java.output)?.[1] ?? 0)
  if (!java.ok || major < 17) {
    throw new LocalKafkaUnavailable(
      'The local Kafka broker needs Java 17 or newer as `java` on the PATH' +
        (java.ok ? ` (found Java ${major})` : '') +
        '; install a JDK 17+, or set KAFKA_BROKERS=host:port to use an existing Kafka cluster.'
    )
  }
}

/** The broker's jars as Maven resolves the pom: `groupId:artifactId:version`, one a line (infra/kafka/broker-jars.txt). */
export function brokerJars(listText: string): { groupId: string; artifactId: string; version: string }[] {
  return listText
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const [groupId = '', artifactId = '', version = ''] = line.split(':')
      return { groupId, artifactId, version }
    })
}

/**
 * Copies the broker's jars from Maven's local repository when every one is there (a machine that built
 * Kafka's pom before), as Maven's copy would name them; false, copying nothing, when one is missing.
 * Starting Maven only to copy files it already has took 10 s.
 */
async function copyFromMavenRepository(libDir: string, listText: string): Promise<boolean> {
  const repository = join(homedir(), '.m2', 'repository')
  const jars = brokerJars(listText).map(({ groupId, artifactId, version }) => ({
    from: join(repository, ...groupId.split('.'), artifactId, version, `${artifactId}-${version}.jar`),
    name: `${artifactId}-${version}.jar`
  }))
  if (jars.length === 0 || !jars.every((jar) => existsSync(jar.from))) return false
  await rm(libDir, { recursive: true, force: true })
  await mkdir(libDir, { recursive: true })
  await Promise.all(jars.map((jar) => copyFile(jar.from, join(libDir, jar.name))))
  return true
}

/**
 * The official broker jars, once: from Maven's local repository if it holds them all, else fetched from
 * Maven Central with Maven; later starts reuse them (the marker says which pom and list they came from).
 */
export async function ensureBrokerJars(libDir: string, log: Logger): Promise<void> {
  const marker = join(libDir, '.resolved-from')
  const resolvedFrom = (await readFile(brokerPom, 'utf8')) + (await readFile(brokerJarList, 'utf8'))
  if ((await readFile(marker, 'utf8').catch(() => '')) === resolvedFrom) return
  if (await copyFromMavenRepository(libDir, await readFile(brokerJarList, 'utf8'))) {
    log.info("Apache Kafka broker jars copied from Maven's local repository (first start only)")
    await writeFile(marker, resolvedFrom)
    return
  }
  if (!commandWorks('mvn', ['-v']).ok) {
    throw new LocalKafkaUnavailable(
      'The local Kafka broker is fetched once from Maven Central with Maven (`mvn` on the PATH), which is ' +
        'missing; install Maven, or set KAFKA_BROKERS=host:port to use an existing Kafka cluster.'
    )
  }
  log.info('fetching the Apache Kafka broker jars from Maven Central (first start only)')
  await rm(libDir, { recursive: true, force: true })
  const mvn = spawnSync(
    'mvn',
    ['-B', '-q', '-f', brokerPom, 'dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${libDir}`],
    { encoding: 'utf8' }
  )
  if (mvn.status !== 0) {
    throw new LocalKafkaUnavailable(`Maven could not fetch the Kafka broker jars (${brokerPom}):\n${(mvn.stdout + mvn.stderr).slice(-2000)}`)
  }
  await writeFile(marker, resolvedFrom)
}

/** The client listener: PLAINTEXT, or SASL_SSL with SCRAM and ACLs (see LocalKafkaOptions.secured). */
function listenerProperties(port: number, controllerPort: number, secured: LocalKafkaOptions['secured'], extra: ExtraListener[] = []): string[] {
  const listener = secured ? 'SASL_SSL' : 'PLAINTEXT'
  const listed = (address: (l: ExtraListener) => string) => extra.map((l) => `,${l.name}://${address(l)}`).join('')
  const common = [
    `listeners=${listener}://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}${listed((l) => `127.0.0.1:${l.port}`)}`,
    `advertised.listeners=${listener}://127.0.0.1:${port}${listed((l) => `127.0.0.1:${l.advertisedPort}`)}`,
    'controller.listener.names=CONTROLLER',
    `listener.security.protocol.map=CONTROLLER:PLAINTEXT,${listener}:${listener}${extra.map((l) => `,${l.name}:${listener}`).join('')}`,
    `inter.broker.listener.name=${listener}`
  ]
  if (!secured) return common
  const [broker] = secured.users
  return [
    ...common,
    'sasl.enabled.mechanisms=SCRAM-SHA-512',
    'sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512',
    `listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${broker.name}" password="${broker.password}";`,
    'ssl.keystore.type=PEM',
    `ssl.keystore.location=${secured.keyAndCertificateFile}`,
    'ssl.truststore.type=PEM',
    `ssl.truststore.location=${secured.caFile}`,
    'authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer',
    // The broker's own requests reach the controller as ANONYMOUS, on its PLAINTEXT listener: anyone on this
    // machine could do the same there, which is fine for a test broker and is not how a bank's is set up.
    `super.users=User:${broker.name};User:ANONYMOUS`
  ]
}

function serverProperties(
  dir: string,
  port: number,
  controllerPort: number,
  secured: LocalKafkaOptions['secured'],
  extraListeners?: ExtraListener[]
): string {
  return [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    ...listenerProperties(port, controllerPort, secured, extraListeners),
    `log.dirs=${join(dir, 'data')}`,
    // Topics are created by the project with explicit partition counts, never by a typo.
    'auto.create.topics.enable=false',
    'num.partitions=12',
    'default.replication.factor=1',
    'min.insync.replicas=1',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=12',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    ''
  ].join('\n')
}

const log4jProperties = [
  'rootLogger.level=INFO',
  'rootLogger.appenderRef.stdout.ref=STDOUT',
  'appender.stdout.type=Console',
  'appender.stdout.name=STDOUT',
  'appender.stdout.layout.type=PatternLayout',
  'appender.stdout.layout.pattern=[%d] %p %m (%c)%n',
  'logger.kafka.name=kafka',
  'logger.kafka.level=WARN',
  'logger.state.name=state.change.logger',
  'logger.state.level=WARN',
  ''
].join('\n')

function java(libDir: string, dir: string, mainClass: string, args: string[], heapMb: number): [string, string[]] {
  return [
    'java',
    [
      `-Xms${heapMb}m`,
      `-Xmx${heapMb}m`,
      '-XX:+UseG1GC',
      '-XX:MaxGCPauseMillis=20',
      '-Djava.awt.headless=true',
      `-Dlog4j2.configurationFile=${join(dir, 'log4j2.properties')}`,
      `-Dkafka.logs.dir=${dir}`,
      '-cp',
      `${libDir}/*`,
      mainClass,
      ...args
    ]
  ]
}

async function waitUntilReady(cluster: KafkaCluster, child: ChildProcess, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let exited = false
  child.once('exit', () => {
    exited = true
  })
  const probe = createProbe(cluster, 2000)
  try {
    while (Date.now() < deadline && !exited) {
      if (await kafkaAnswers(probe)) return
      await sleep(250)
    }
  } finally {
    await probe.close().catch(() => {})
  }
  const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-30).join('\n')
  throw new LocalKafkaUnavailable(
    `The local Kafka broker ${exited ? 'exited' : `was not ready after ${timeoutMs / 1000} s`} ` +
      `(log: ${logFile}). Is port ${cluster.brokers[0]} taken? Last lines:\n${tail}`
  )
}

/**
 * Runs a single-node Apache Kafka 4 (KRaft, broker and controller in one JVM) from the official jars,
 * formatting its storage on first use. The broker is a child of this process.
 */
export async function startLocalKafka(options: LocalKafkaOptions, log: Logger): Promise<LocalKafka> {
  const { dir, port, secured } = options
  const controllerPort = options.controllerPort ?? port + 1
  const libDir = options.libDir ?? join(repoRoot, '.local/kafka-lib')
  const cluster: KafkaCluster = {
    brokers: [`127.0.0.1:${port}`],
    security: secured
      ? {
          tls: { ca: await readFile(secured.caFile, 'utf8') },
          sasl: { mechanism: 'SCRAM-SHA-512', username: secured.users[0].name, password: secured.users[0].password }
        }
      : {}
  }
  const logFile = join(dir, 'broker.log')
  const pidFile = join(dir, 'broker.pid')
  // They go into a JAAS line and the format tool's `[name=...,password=...]` unescaped.
  if (secured?.users.some((user) => !/^[\w.-]+$/.test(user.name + user.password))) {
    throw new LocalKafkaUnavailable('SCRAM user names and passwords of the local broker must be letters, digits, ".", "_" or "-".')
  }
  checkJava()
  await ensureBrokerJars(libDir, log)
  await mkdir(dir, { recursive: true })
  const propertiesFile = join(dir, 'server.properties')
  await writeFile(propertiesFile, serverProperties(dir, port, controllerPort, secured, options.extraListeners))
  await writeFile(join(dir, 'log4j2.properties'), log4jProperties)
  if (await stopLeftover(pidFile, 'SIGTERM', 'kafka.Kafka')) log.warn({ dir }, 'stopped a Kafka broker left running by an earlier run')

  if (!existsSync(join(dir, 'data', 'meta.properties'))) {
    // `=`: a base64url id may start with "-", which the tool would read as an option.
    const clusterId = randomBytes(16).toString('base64url')
    // SCRAM credentials live in the cluster's metadata: written at format time, before any broker can check them.
    const scram = (secured?.users ?? []).map(({ name, password }) => `--add-scram=SCRAM-SHA-512=[name=${name},password=${password}]`)
    const [cmd, args] = java(
      libDir,
      dir,
      'kafka.tools.StorageTool',
      ['format', `--cluster-id=${clusterId}`, `--config=${propertiesFile}`, ...scram],
      256
    )
    const format = spawnSync(cmd, args, { encoding: 'utf8' })
    if (format.status !== 0) {
      throw new LocalKafkaUnavailable(`Formatting the Kafka storage in ${dir} failed:\n${format.stdout}${format.stderr}`)
    }
  }

  let child: ChildProcess | undefined
  const start = async (): Promise<void> => {
    const out = createWriteStream(logFile, { flags: 'a' })
    await new Promise((resolveOpen) => out.once('open', resolveOpen))
    const [cmd, args] = java(libDir, dir, 'kafka.Kafka', [propertiesFile], 768)
    // A session of its own: a terminal's Ctrl-C reaches this process alone, which stops the broker after its clients.
    const started = spawn(cmd, args, { stdio: ['ignore', out, out], detached: true })
    child = started
    await writeFile(pidFile, `${started.pid}\n`)
    started.once('exit', () => out.end())
    try {
      await waitUntilReady(cluster, started, logFile, 120_000)
    } catch (error) {
      if (started.pid) await terminate(started.pid, 'SIGKILL', 0)
      throw error
    }
  }
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const pid = child?.pid
    child = undefined
    if (pid) await terminate(pid, signal, 30_000)
    await rm(pidFile, { force: true })
  }
  await start()
  return { cluster, start, stop, pid: () => child?.pid }
}
