import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, existsSync } from 'node:fs'
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { createProbe, type KafkaCluster } from '../kafka.ts'
import type { Logger } from '../logger.ts'
import { stopLeftover, terminate } from './processes.ts'

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const brokerPom = join(repoRoot, 'infra/kafka/pom.xml')
const brokerJarList = join(repoRoot, 'infra/kafka/broker-jars.txt')
const execFileAsync = promisify(execFile)

export interface LocalKafkaOptions {
  /** Storage, configuration and log of this broker. */
  dir: string
  /** Where the broker jars are cached; shared by every local broker of this checkout. */
  libDir?: string
  /** The first broker's client port; with `brokers` above 1, broker i (from 0) listens on `port + 2i`. */
  port: number
  /** A single broker's controller port (`port + 1` unless given); in a cluster, broker i's is `port + 2i + 1`. */
  controllerPort?: number
  /**
   * How many brokers: 1 (the default), or a KRaft cluster on this machine, each node broker and controller
   * with one vote in the quorum, each with its own storage, ports and log (`<dir>/broker-<node id>/`).
   */
  brokers?: number
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
   * More client listeners for each broker, in node order (one list per broker), each with a name of its own
   * (e.g. `CIF`), listening on `port` and advertised at `advertisedPort`: a client that reaches the brokers
   * through proxies (the network fault tests' Toxiproxy, one proxy per broker) must be told the proxies'
   * addresses in the metadata, or it reconnects around them to the brokers themselves.
   */
  extraListeners?: ExtraListener[][]
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

/** One broker process of the local cluster. */
export interface LocalKafkaBroker {
  /** Its `node.id`, as the cluster's metadata names it (partition leaders, replicas). */
  nodeId: number
  /** Its process, while it runs. */
  pid(): number | undefined
  /**
   * Stops it (SIGTERM: a clean shutdown; SIGKILL: as if its machine died); its storage stays, so `start()`
   * brings the same topics and offsets back.
   */
  stop(signal?: NodeJS.Signals): Promise<void>
  /** Starts it again and waits until the cluster's metadata lists it. */
  start(): Promise<void>
}

export interface LocalKafka {
  /** How to reach the brokers (every one's address); for a secured one, as its super user. */
  cluster: KafkaCluster
  /** Each broker of the cluster, to stop, freeze or start one at a time. */
  brokers: LocalKafkaBroker[]
  /** The first broker's process, while it runs (the only one, unless `brokers` was above 1). */
  pid(): number | undefined
  /** Stops every broker (see LocalKafkaBroker.stop). */
  stop(signal?: NodeJS.Signals): Promise<void>
  /** Starts every broker at once (a quorum needs a majority of its voters up) and waits for all. */
  start(): Promise<void>
}

/**
 * How many copies of each partition a cluster of `brokers` keeps, and how many must have a write before it
 * is acknowledged (acks=all): a cluster of three keeps three and needs two, so one broker may be down, or
 * restarting, while nothing acknowledged can be lost with a second. The broker defaults are set from this,
 * so the project's topics and Kafka's own (group offsets, transaction state) get it alike.
 */
export function replicationFor(brokers: number): { replicationFactor: number; minInsyncReplicas: number } {
  const replicationFactor = Math.min(brokers, 3)
  return { replicationFactor, minInsyncReplicas: Math.max(1, replicationFactor - 1) }
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

interface NodeLayout {
  nodeId: number
  port: number
  controllerPort: number
  /** Its storage, configuration, log and pid file. */
  dir: string
}

function serverProperties(node: NodeLayout, nodes: NodeLayout[], secured: LocalKafkaOptions['secured'], extraListeners?: ExtraListener[]): string {
  const { replicationFactor, minInsyncReplicas } = replicationFor(nodes.length)
  return [
    'process.roles=broker,controller',
    `node.id=${node.nodeId}`,
    `controller.quorum.voters=${nodes.map((n) => `${n.nodeId}@127.0.0.1:${n.controllerPort}`).join(',')}`,
    ...listenerProperties(node.port, node.controllerPort, secured, extraListeners),
    `log.dirs=${join(node.dir, 'data')}`,
    // Topics are created by the project with explicit partition counts, never by a typo.
    'auto.create.topics.enable=false',
    'num.partitions=12',
    `default.replication.factor=${replicationFactor}`,
    `min.insync.replicas=${minInsyncReplicas}`,
    `offsets.topic.replication.factor=${replicationFactor}`,
    'offsets.topic.num.partitions=12',
    `transaction.state.log.replication.factor=${replicationFactor}`,
    `transaction.state.log.min.isr=${minInsyncReplicas}`,
    `share.coordinator.state.topic.replication.factor=${replicationFactor}`,
    `share.coordinator.state.topic.min.isr=${minInsyncReplicas}`,
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

/**
 * Whether the broker at `address` answers, itself, and lists itself among the cluster's live brokers: it
 * is then registered and unfenced, and takes its share of partitions. A probe of its own, so that no other
 * broker answers for it (the others still list a broker killed moments ago, until its session runs out).
 */
async function listsItself(cluster: KafkaCluster, address: string, nodeId: number): Promise<boolean> {
  const probe = createProbe({ ...cluster, brokers: [address] }, 2000)
  try {
    return (await probe.metadata({ topics: [], forceUpdate: true })).brokers.has(nodeId)
  } catch {
    return false
  } finally {
    await probe.close().catch(() => {})
  }
}

/** Waits until each of `nodes` answers and lists itself; throws, with the log's last lines, if one exits or the time runs out. */
async function waitUntilListed(
  cluster: KafkaCluster,
  nodes: { nodeId: number; child: ChildProcess; logFile: string; port: number }[],
  timeoutMs: number
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  const exited = () => nodes.filter(({ child }) => child.exitCode !== null || child.signalCode !== null)
  const waiting = new Set(nodes)
  while (Date.now() < deadline && exited().length === 0) {
    for (const node of waiting) if (await listsItself(cluster, `127.0.0.1:${node.port}`, node.nodeId)) waiting.delete(node)
    if (waiting.size === 0) return
    await sleep(250)
  }
  const failed = exited()[0] ?? nodes[0]!
  const tail = (await readFile(failed.logFile, 'utf8').catch(() => '')).split('\n').slice(-30).join('\n')
  throw new LocalKafkaUnavailable(
    `The local Kafka broker ${failed.child.exitCode !== null || failed.child.signalCode !== null ? 'exited' : `was not ready after ${timeoutMs / 1000} s`} ` +
      `(log: ${failed.logFile}). Is port ${failed.port} taken? Last lines:\n${tail}`
  )
}

/** The cluster id the formatted nodes share, if any is formatted: a node formatted later must join the same cluster. */
async function existingClusterId(nodes: NodeLayout[]): Promise<string | undefined> {
  for (const node of nodes) {
    const meta = await readFile(join(node.dir, 'data', 'meta.properties'), 'utf8').catch(() => '')
    const id = /^cluster\.id=(.+)$/m.exec(meta)?.[1]
    if (id) return id.trim()
  }
  return undefined
}

/**
 * Runs Apache Kafka 4 (KRaft, broker and controller in one JVM per node) from the official jars: one
 * node, or a cluster of `options.brokers` on this machine, formatting each node's storage on first use.
 * The brokers are children of this process.
 */
export async function startLocalKafka(options: LocalKafkaOptions, log: Logger): Promise<LocalKafka> {
  const { dir, port, secured } = options
  const count = options.brokers ?? 1
  const libDir = options.libDir ?? join(repoRoot, '.local/kafka-lib')
  // A single broker keeps its files in `dir` itself, where they always were.
  const nodes: NodeLayout[] = Array.from({ length: count }, (_, i) => ({
    nodeId: i + 1,
    port: port + 2 * i,
    controllerPort: count === 1 ? (options.controllerPort ?? port + 1) : port + 2 * i + 1,
    dir: count === 1 ? dir : join(dir, `broker-${i + 1}`)
  }))
  const cluster: KafkaCluster = {
    brokers: nodes.map((node) => `127.0.0.1:${node.port}`),
    security: secured
      ? {
          tls: { ca: await readFile(secured.caFile, 'utf8') },
          sasl: { mechanism: 'SCRAM-SHA-512', username: secured.users[0].name, password: secured.users[0].password }
        }
      : {}
  }
  // They go into a JAAS line and the format tool's `[name=...,password=...]` unescaped.
  if (secured?.users.some((user) => !/^[\w.-]+$/.test(user.name + user.password))) {
    throw new LocalKafkaUnavailable('SCRAM user names and passwords of the local broker must be letters, digits, ".", "_" or "-".')
  }
  // A listener's port is one broker's: a cluster behind proxies needs a list for each broker.
  if (options.extraListeners && options.extraListeners.length !== count) {
    throw new LocalKafkaUnavailable(
      `Extra listeners must be given for each of the ${count} local brokers, got ${options.extraListeners.length} lists.`
    )
  }
  checkJava()
  await ensureBrokerJars(libDir, log)
  for (const node of nodes) {
    await mkdir(node.dir, { recursive: true })
    await writeFile(join(node.dir, 'server.properties'), serverProperties(node, nodes, secured, options.extraListeners?.[node.nodeId - 1]))
    await writeFile(join(node.dir, 'log4j2.properties'), log4jProperties)
    if (await stopLeftover(join(node.dir, 'broker.pid'), 'SIGTERM', 'kafka.Kafka')) {
      log.warn({ dir: node.dir }, 'stopped a Kafka broker left running by an earlier run')
    }
  }

  // `=`: a base64url id may start with "-", which the tool would read as an option.
  const clusterId = (await existingClusterId(nodes)) ?? randomBytes(16).toString('base64url')
  // SCRAM credentials live in the cluster's metadata: written at format time, before any broker can check them.
  const scram = (secured?.users ?? []).map(({ name, password }) => `--add-scram=SCRAM-SHA-512=[name=${name},password=${password}]`)
  // At once: each format is a JVM start of several seconds.
  await Promise.all(
    nodes
      .filter((node) => !existsSync(join(node.dir, 'data', 'meta.properties')))
      .map(async (node) => {
        const [cmd, args] = java(
          libDir,
          node.dir,
          'kafka.tools.StorageTool',
          ['format', `--cluster-id=${clusterId}`, `--config=${join(node.dir, 'server.properties')}`, ...scram],
          256
        )
        try {
          await execFileAsync(cmd, args, { encoding: 'utf8' })
        } catch (error) {
          const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string }
          throw new LocalKafkaUnavailable(`Formatting the Kafka storage in ${node.dir} failed:\n${stdout}${stderr}`)
        }
      })
  )

  // Three JVMs share the machine with everything else: each gets a small heap.
  const heapMb = count === 1 ? 768 : 256
  const children = new Map<number, ChildProcess>()
  const spawnNode = async (node: NodeLayout) => {
    const logFile = join(node.dir, 'broker.log')
    const out = createWriteStream(logFile, { flags: 'a' })
    await new Promise((resolveOpen) => out.once('open', resolveOpen))
    const [cmd, args] = java(libDir, node.dir, 'kafka.Kafka', [join(node.dir, 'server.properties')], heapMb)
    // A session of its own: a terminal's Ctrl-C reaches this process alone, which stops the broker after its clients.
    const child = spawn(cmd, args, { stdio: ['ignore', out, out], detached: true })
    children.set(node.nodeId, child)
    await writeFile(join(node.dir, 'broker.pid'), `${child.pid}\n`)
    child.once('exit', () => out.end())
    return { nodeId: node.nodeId, child, logFile, port: node.port }
  }
  const stopNode = async (node: NodeLayout, signal: NodeJS.Signals): Promise<void> => {
    const pid = children.get(node.nodeId)?.pid
    children.delete(node.nodeId)
    if (pid) await terminate(pid, signal, 30_000)
    await rm(join(node.dir, 'broker.pid'), { force: true })
  }
  const startNodes = async (starting: NodeLayout[]): Promise<void> => {
    const spawned = await Promise.all(starting.map(spawnNode))
    try {
      await waitUntilListed(cluster, spawned, 120_000)
    } catch (error) {
      await Promise.all(spawned.map(({ child }) => child.pid && terminate(child.pid, 'SIGKILL', 0)))
      throw error
    }
  }
  const brokers: LocalKafkaBroker[] = nodes.map((node) => ({
    nodeId: node.nodeId,
    pid: () => children.get(node.nodeId)?.pid,
    stop: (signal = 'SIGTERM') => stopNode(node, signal),
    start: () => startNodes([node])
  }))
  const start = () => startNodes(nodes)
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    await Promise.all(nodes.map((node) => stopNode(node, signal)))
  }
  await start()
  return { cluster, brokers, start, stop, pid: () => brokers[0]!.pid() }
}
