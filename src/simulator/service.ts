import { join } from 'node:path'
import { type TSchema, Type } from 'typebox'
import { httpProblems, Refusal } from '../contracts/problems.ts'
import { createHttpServer, type HttpServer } from '../platform/http/server.ts'
import type { Logger } from '../platform/logger.ts'
import { type Drift, type Fault, SimulatedEndSystem, simulatedSystems } from './end-system-simulator.ts'
import { RecordJournal } from './record-journal.ts'

export interface SimulatorOptions {
  host: string
  /** The control API's port; the systems listen on the next ports (0: every port is picked free). */
  port: number
  /** Authorization header value a system demands, by system name. */
  requiredAuthorization?: Record<string, string>
  /** The control API's successful requests at info (default) or debug (createHttpServer). */
  logEveryRequest?: boolean
  /** Where each system keeps its records across restarts (`<name>.jsonl`); unset, in memory only. */
  dataDir?: string
}

export interface Simulator {
  url: string
  app: HttpServer
  systems: Map<string, SimulatedEndSystem>
  close(): Promise<void>
}

const FaultBody = Type.Union([
  Type.Object({ mode: Type.Literal('none') }, { additionalProperties: false }),
  Type.Object({ mode: Type.Literal('down') }, { additionalProperties: false }),
  Type.Object(
    { mode: Type.Literal('status'), status: Type.Integer({ minimum: 400, maximum: 599 }), message: Type.Optional(Type.String({ maxLength: 500 })) },
    { additionalProperties: false }
  ),
  Type.Object({ mode: Type.Literal('slow'), delayMs: Type.Integer({ minimum: 1, maximum: 600_000 }) }, { additionalProperties: false }),
  Type.Object(
    {
      mode: Type.Literal('fail-next'),
      count: Type.Integer({ minimum: 1, maximum: 1000 }),
      status: Type.Integer({ minimum: 400, maximum: 599 }),
      message: Type.Optional(Type.String({ maxLength: 500 }))
    },
    { additionalProperties: false }
  ),
  ...misbehaviourBodies()
])

/** The misbehaviours (end-system-simulator.ts), each for the next `count` calls it concerns, or until cleared. */
function misbehaviourBodies() {
  const count = Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'For the next N calls it concerns, then none' }))
  const body = <P extends Record<string, TSchema>>(mode: string, properties: P) =>
    Type.Object({ mode: Type.Literal(mode), count, ...properties }, { additionalProperties: false })
  return [
    body('not-json', {}),
    body('no-record-id', {}),
    body('huge-body', {
      megabytes: Type.Integer({ minimum: 1, maximum: 1024 }),
      status: Type.Optional(
        Type.Integer({ minimum: 400, maximum: 599, description: 'Answered without doing the call; absent: done, its answer padded' })
      )
    }),
    body('redirect', {
      status: Type.Union([301, 302, 303, 307, 308].map((status) => Type.Literal(status))),
      location: Type.Optional(Type.String({ minLength: 1, maxLength: 2000 }))
    }),
    body('trickle', {}),
    body('cut-after-headers', {}),
    body('conflict-unknown', { recordId: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })) }),
    body('rate-limit', {
      retryAfterSeconds: Type.Integer({ minimum: 0, maximum: 86_400 }),
      as: Type.Union([Type.Literal('seconds'), Type.Literal('date')])
    })
  ]
}

const cifId = Type.String({ pattern: '^[0-9]{1,20}$' })
const fields = Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), {
  description: "Top-level fields of the system's own record, set as given"
})
const DriftBody = Type.Union([
  Type.Object({ kind: Type.Literal('delete'), cifId }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('alter'), cifId, fields }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('orphan'), cifId, fields: Type.Optional(fields) }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('lose-creates'), count: Type.Integer({ minimum: 0, maximum: 1_000_000 }) }, { additionalProperties: false })
])

/** Simulated end systems for the local stack, tests and benchmarks, with a control API to break them at will. */
export async function startSimulator(options: SimulatorOptions, log: Logger): Promise<Simulator> {
  const systems = new Map(
    simulatedSystems.map((shape, i) => [
      shape.name,
      new SimulatedEndSystem(
        shape,
        options.host,
        options.port === 0 ? 0 : options.port + i + 1,
        options.requiredAuthorization?.[shape.name],
        options.dataDir ? new RecordJournal(join(options.dataDir, `${shape.name}.jsonl`)) : undefined
      )
    ])
  )
  await Promise.all([...systems.values()].map((system) => system.start()))

  const app = await createHttpServer({
    logger: log,
    bodyLimitBytes: 16 * 1024,
    title: 'End system simulator',
    description: 'Simulated end systems (core banking, CRM, cards, lending) and the switches that make them fail or drift.',
    readinessChecks: {},
    logEveryRequest: options.logEveryRequest
  })
  const find = (name: string): SimulatedEndSystem => {
    const system = systems.get(name)
    if (!system) throw new Refusal(httpProblems.notFound, `No simulated system "${name}"; there are ${[...systems.keys()].join(', ')}.`)
    return system
  }
  const NameParams = Type.Object({ name: Type.String({ maxLength: 50 }) })
  const describe = (system: SimulatedEndSystem) => ({
    name: system.shape.name,
    url: system.url,
    fault: system.fault,
    records: system.records.size,
    received: system.received,
    repeated: system.repeated
  })

  app.get('/systems', { schema: { tags: ['simulator'], summary: 'Each system: its URL, fault and counts' } }, () =>
    [...systems.values()].map(describe)
  )
  app.put(
    '/systems/:name/fault',
    {
      schema: {
        tags: ['simulator'],
        summary: 'Make a system fail: down, a fixed status, slow, the next N calls, or misbehave (docs/reliability.md)',
        params: NameParams,
        body: FaultBody
      }
    },
    async (request) => {
      const system = find(request.params.name)
      await system.setFault(request.body as Fault)
      log.info({ system: system.shape.name, fault: request.body }, 'fault set')
      return describe(system)
    }
  )
  app.get(
    '/systems/:name/records',
    {
      schema: {
        tags: ['simulator'],
        summary: 'What a system holds (optionally for one CIF ID)',
        params: NameParams,
        querystring: Type.Object({ cifId: Type.Optional(Type.String({ maxLength: 20 })) }, { additionalProperties: false })
      }
    },
    (request) => {
      const system = find(request.params.name)
      const { cifId } = request.query
      if (cifId) return [system.recordForCif(cifId)].filter(Boolean)
      return [...system.records.values()]
    }
  )
  app.get(
    '/systems/:name/calls',
    {
      schema: {
        tags: ['simulator'],
        summary:
          "Every call a system answered, in order (its `seq`), a page at a time: `after` the last seq read. The log keeps a system's last 200,000 calls",
        params: NameParams,
        querystring: Type.Object(
          {
            after: Type.Optional(Type.String({ pattern: '^(0|[1-9][0-9]{0,14})$', description: 'The last seq read; 0 by default' })),
            limit: Type.Optional(Type.String({ pattern: '^([1-9][0-9]{0,3}|10000)$', description: '1-10000, default 1000' }))
          },
          { additionalProperties: false }
        )
      }
    },
    (request) => {
      const limit = Number(request.query.limit ?? 1000)
      const items = find(request.params.name).receiptsAfter(Number(request.query.after ?? 0), limit)
      return { items, next: items.length === limit ? items.at(-1)!.seq : null }
    }
  )
  app.post(
    '/systems/:name/drift',
    {
      schema: {
        tags: ['simulator'],
        summary: 'Make a system drift: delete a record, alter its fields, add one for an unknown CIF ID, or lose the next N creates (answered 201)',
        params: NameParams,
        body: DriftBody
      }
    },
    (request) => {
      const system = find(request.params.name)
      const drift = request.body as Drift
      const record = system.drift(drift)
      if (drift.kind !== 'lose-creates' && !record) {
        throw new Refusal(httpProblems.notFound, `${system.shape.name} holds no record for CIF ID ${drift.cifId}.`)
      }
      log.info({ system: system.shape.name, drift: drift.kind }, 'drift injected')
      return { ...describe(system), record: record ?? null }
    }
  )
  app.post(
    '/systems/:name/reset',
    { schema: { tags: ['simulator'], summary: 'Forget every record and count', params: NameParams } },
    async (request) => {
      const system = find(request.params.name)
      await system.reset()
      return describe(system)
    }
  )

  const url = await app.listen({ host: options.host, port: options.port })
  return {
    url,
    app,
    systems,
    close: async () => {
      await app.close()
      await Promise.all([...systems.values()].map(async (system) => Promise.all([system.stop(), system.closeJournal()])))
    }
  }
}
