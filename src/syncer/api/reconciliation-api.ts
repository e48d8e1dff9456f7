import { Type } from 'typebox'
import type { OperatorRole } from '../../contracts/access.ts'
import { isValidCifId } from '../../contracts/cif-id.ts'
import { Refusal } from '../../contracts/problems.ts'
import { type ApiKey, requireApiKey } from '../../platform/http/api-key-auth.ts'
import { apiKeySecurity, type HttpServer, problemResponses } from '../../platform/http/server.ts'
import type { EndSystemConfig } from '../delivery/end-systems-config.ts'
import { createRun, repairOnRequest } from '../reconciliation/run-store.ts'
import type { SyncerDb } from '../tables.ts'
import { requireOperatorRight } from './operator-rights.ts'
import { findFindings, findingById, findRuns, runById, toRun } from './reconciliation-read-model.ts'
import { BackfillRequest, Finding, FindingFilters, ReconcileRequest, RepairResult, Run, RunFilters } from './reconciliation-schemas.ts'
import { IdParams, NoQuery, Reason } from './schemas.ts'

const security = apiKeySecurity('operatorKey')
const RECONCILE_BODY_LIMIT_BYTES = 256 * 1024

export interface ReconciliationApiOptions {
  db: SyncerDb
  operatorKeyHashes: ReadonlyMap<string, readonly ApiKey[]>
  operatorRoles: ReadonlyMap<string, OperatorRole>
  endSystems: readonly EndSystemConfig[]
  /** Told when a run is asked for, so that a worker takes it at once. */
  onRunCreated: () => void
}

/**
 * Reconciliation and backfill on the admin API: start a run, watch it, read its findings, repair them. The
 * runs themselves are worked by the syncers (reconciliation/reconciler.ts), never by the request.
 */
export async function reconciliationApi(
  app: HttpServer,
  { db, operatorKeyHashes, operatorRoles, endSystems, onRunCreated }: ReconciliationApiOptions
): Promise<void> {
  requireApiKey(app, operatorKeyHashes)
  const requireAct = (caller: string, what: string): void => requireOperatorRight(operatorRoles, caller, 'act', what)
  const readable = endSystems.filter((system) => system.reconcile).map((system) => system.name)
  const configured = endSystems.map((system) => system.name)

  app.post(
    '/reconciliations',
    {
      // Room for the 10,000 CIF IDs the schema allows (about 14 bytes each); the API's default is 16 KB.
      bodyLimit: RECONCILE_BODY_LIMIT_BYTES,
      schema: {
        tags: ['reconciliation'],
        summary: 'Start a reconciliation run: read each customer back from the end systems and classify what they hold',
        security,
        body: ReconcileRequest,
        response: { 202: Run, ...problemResponses(400, 401, 403) }
      }
    },
    async (request, reply) => {
      requireAct(request.caller, 'start a reconciliation')
      const { endSystems: asked, cifIds, since, repair } = request.body
      const errors = [
        ...(asked ?? []).flatMap((name, i) =>
          readable.includes(name)
            ? []
            : [{ pointer: `/endSystems/${i}`, detail: `is not an end system that can be read back; these can: ${readable.join(', ') || 'none'}` }]
        ),
        ...(cifIds ?? []).flatMap((cifId, i) => (isValidCifId(cifId) ? [] : [{ pointer: `/cifIds/${i}`, detail: 'has a wrong check digit' }]))
      ]
      if (!asked && readable.length === 0)
        errors.push({ pointer: '/endSystems', detail: 'no end system can be read back (none has read and compare)' })
      if (errors.length) throw Refusal.invalid(errors)
      const chosen = asked ?? readable
      const run = await createRun(db, {
        kind: 'RECONCILE',
        endSystems: chosen,
        cifIds,
        since: since ? new Date(since) : undefined,
        repair: repair ?? [...new Set(endSystems.filter((s) => chosen.includes(s.name)).flatMap((s) => s.reconcile?.repair ?? []))],
        requestedBy: request.caller
      })
      onRunCreated()
      return reply.code(202).send(await toRun(db, run))
    }
  )

  app.post(
    '/backfills',
    {
      schema: {
        tags: ['reconciliation'],
        summary: "Start a backfill: each customer's latest version delivered to a system that holds no record of it yet",
        security,
        body: BackfillRequest,
        response: { 202: Run, ...problemResponses(400, 401, 403) }
      }
    },
    async (request, reply) => {
      requireAct(request.caller, 'start a backfill')
      const { endSystem } = request.body
      if (!configured.includes(endSystem)) {
        throw Refusal.invalid([{ pointer: '/endSystem', detail: `is not a configured end system; these are: ${configured.join(', ')}` }])
      }
      const run = await createRun(db, { kind: 'BACKFILL', endSystems: [endSystem], requestedBy: request.caller })
      onRunCreated()
      return reply.code(202).send(await toRun(db, run))
    }
  )

  app.get(
    '/runs',
    {
      schema: {
        tags: ['reconciliation'],
        summary: 'Reconciliation and backfill runs, newest first, with their counts and progress',
        security,
        querystring: RunFilters,
        response: { 200: Type.Object({ runs: Type.Array(Run) }), ...problemResponses(400, 401) }
      }
    },
    async (request) => ({ runs: await Promise.all((await findRuns(db, request.query)).map((row) => toRun(db, row))) })
  )

  app.get(
    '/runs/:id',
    {
      schema: {
        tags: ['reconciliation'],
        summary: 'One run: counts per situation, progress (done/total, rate, time left), its deliveries by state',
        security,
        params: IdParams,
        querystring: NoQuery,
        response: { 200: Run, ...problemResponses(400, 401, 404) }
      }
    },
    async (request) => toRun(db, await runById(db, request.params.id))
  )

  app.get(
    '/runs/:id/findings',
    {
      schema: {
        tags: ['reconciliation'],
        summary: "A run's findings, by situation: each pair not in sync, with the differing fields (masked)",
        security,
        params: IdParams,
        querystring: FindingFilters,
        response: { 200: Type.Object({ findings: Type.Array(Finding) }), ...problemResponses(400, 401, 404) }
      }
    },
    async (request) => ({ findings: await findFindings(db, request.params.id, request.query) })
  )

  app.post(
    '/runs/:id/repair',
    {
      schema: {
        tags: ['reconciliation'],
        summary: "Repair every finding of a run not yet repaired: a normal delivery of each customer's latest version (ORPHAN is reported only)",
        security,
        params: IdParams,
        body: Reason,
        response: { 200: RepairResult, ...problemResponses(400, 401, 403, 404) }
      }
    },
    async (request) => {
      requireAct(request.caller, 'repair findings')
      await runById(db, request.params.id)
      const deliveryIds = await repairOnRequest(db, { runId: request.params.id }, { operator: request.caller, reason: request.body.reason })
      if (deliveryIds.length) onRunCreated()
      return { deliveryIds }
    }
  )

  app.post(
    '/findings/:id/repair',
    {
      schema: {
        tags: ['reconciliation'],
        summary: 'Repair one finding (nothing for an ORPHAN, or one repaired already)',
        security,
        params: IdParams,
        body: Reason,
        response: { 200: RepairResult, ...problemResponses(400, 401, 403, 404) }
      }
    },
    async (request) => {
      requireAct(request.caller, 'repair findings')
      await findingById(db, request.params.id)
      const deliveryIds = await repairOnRequest(db, { findingIds: [request.params.id] }, { operator: request.caller, reason: request.body.reason })
      if (deliveryIds.length) onRunCreated()
      return { deliveryIds }
    }
  )
}
