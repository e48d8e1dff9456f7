import { sql } from 'kysely'
import { Refusal, syncerProblems } from '../../contracts/problems.ts'
import { recordStatuses } from '../status/sync-status.ts'
import type { DeliveryRow, SyncerDb } from '../tables.ts'
import { supersessions } from './coalescing.ts'
import { deliveryStatus, dueDeliveries, nowInSync, remarkSql, stateList } from './delivery-store.ts'
import { endSystemActions, remark, settledStates, transitions, waitingStates } from './states.ts'

/**
 * What happens to an end system as a whole: an operator pauses and resumes it, a syncer started without it
 * retires its open deliveries, and a system that takes the full record has its queued versions coalesced.
 * Pauses are rows, not a lane's memory, so every syncer instance honours them and they outlast a restart.
 */

export interface EndSystemPause {
  endSystem: string
  pausedBy: string
  reason: string
  pausedAt: string
}

export interface EndSystemAction {
  endSystem: string
  operator: string
  reason: string
}

/**
 * Pauses an end system: its deliveries wait, unattempted, until it is resumed. Nothing is claimed for it, so
 * no retry is spent and its circuit breaker hears nothing; an attempt already under way finishes as usual.
 * The waiting deliveries say so in their remarks (new ones too, as the intake stores them).
 */
export async function pauseEndSystem(db: SyncerDb, { endSystem, operator, reason }: EndSystemAction): Promise<EndSystemPause> {
  return db.transaction().execute(async (trx) => {
    const paused = await trx
      .insertInto('end_system_pause')
      .values({ end_system: endSystem, paused_by: operator, reason })
      .onConflict((oc) => oc.column('end_system').doNothing())
      .returningAll()
      .executeTakeFirst()
    if (!paused) {
      const current = await trx.selectFrom('end_system_pause').selectAll().where('end_system', '=', endSystem).executeTakeFirstOrThrow()
      throw new Refusal(
        syncerProblems.endSystemStateConflict,
        `End system ${endSystem} is paused already, by ${current.paused_by} since ${current.paused_at.toISOString()}.`,
        { paused: true }
      )
    }
    await trx.insertInto('operator_action').values({ end_system: endSystem, action: endSystemActions.pause, operator, reason }).execute()
    await trx
      .updateTable('delivery')
      .set({ remarks: remark('paused', { operator, reason }), updated_at: sql`now()` })
      .where('end_system', '=', endSystem)
      .where(sql<boolean>`state in (${stateList(waitingStates)})`)
      .execute()
    return toPause(paused)
  })
}

/** Resumes a paused end system: its deliveries go again, in their order (the claim's), with their retry budgets as they were. */
export async function resumeEndSystem(db: SyncerDb, { endSystem, operator, reason }: EndSystemAction): Promise<EndSystemPause> {
  return db.transaction().execute(async (trx) => {
    const resumed = await trx.deleteFrom('end_system_pause').where('end_system', '=', endSystem).returningAll().executeTakeFirst()
    if (!resumed) {
      throw new Refusal(syncerProblems.endSystemStateConflict, `End system ${endSystem} is not paused.`, { paused: false })
    }
    await trx.insertInto('operator_action').values({ end_system: endSystem, action: endSystemActions.resume, operator, reason }).execute()
    // Only the remarks the pause wrote: a delivery waiting for another reason keeps saying so.
    await trx
      .updateTable('delivery')
      .set({ remarks: remark('resumed', { system: endSystem, operator, reason }), updated_at: sql`now()` })
      .where('end_system', '=', endSystem)
      .where(sql<boolean>`state in (${stateList(waitingStates)})`)
      .where('remarks', '=', remark('paused', { operator: resumed.paused_by, reason: resumed.reason }))
      .execute()
    return toPause(resumed)
  })
}

/** The end systems paused now, by name. */
export async function pausedEndSystems(db: SyncerDb): Promise<EndSystemPause[]> {
  return (await db.selectFrom('end_system_pause').selectAll().orderBy('end_system').execute()).map(toPause)
}

const toPause = (row: { end_system: string; paused_by: string; reason: string; paused_at: Date }): EndSystemPause => ({
  endSystem: row.end_system,
  pausedBy: row.paused_by,
  reason: row.reason,
  pausedAt: row.paused_at.toISOString()
})

/**
 * Open deliveries of end systems no longer in the configuration (`configured`) are RETIRED, each once (row
 * locks; several syncers may start together), told to their owners as any terminal move is, in batches of
 * `batchSize`. Returns how many each removed system had. A system put back in the configuration gets the
 * deliveries of new events again.
 */
export async function retireRemovedEndSystems(db: SyncerDb, configured: readonly string[], batchSize = 1000): Promise<Map<string, number>> {
  const retired = new Map<string, number>()
  const { retire } = transitions
  for (;;) {
    const moved = await db.transaction().execute(async (trx) => {
      // The open states, written as the index's predicate (settledStates), so that the partial index serves.
      const { rows } = await sql<DeliveryRow & { owner: string }>`
        with chosen as (
          select d.id from delivery d
          where d.state not in (${stateList(settledStates)}) and d.end_system <> all(${[...configured]}::text[])
          order by d.id
          limit ${batchSize}
          for update skip locked)
        update delivery d
        set state = ${retire.to}, remarks = ${remarkSql('retired', { system: sql.ref('d.end_system') })}, lease_until = null,
            completed_at = now(), updated_at = now()
        from chosen where d.id = chosen.id
        returning d.*, (select e.owner_source_system from sync_event e where e.event_id = d.event_id) as owner`.execute(trx)
      await recordStatuses(trx, [
        ...rows.map(({ owner, ...row }) => deliveryStatus('RETIRED', owner, row)),
        // An event whose other systems all hold it is now in sync.
        ...(await nowInSync(
          trx,
          rows.map((row) => row.event_id)
        ))
      ])
      return rows
    })
    for (const row of moved) retired.set(row.end_system, (retired.get(row.end_system) ?? 0) + 1)
    if (moved.length < batchSize) return retired
  }
}

/**
 * For an end system that takes the full record (coalesce): of the customers whose next delivery is due (up to
 * `limit`, as the claim would take them), the queued versions before the newest are SUPERSEDED by it, creates
 * excepted (coalescing.ts decides), and their owners told. The claim that follows then takes the create, or
 * the newest. Every row it decides on is locked for the decision, so a claim elsewhere takes none of them
 * meanwhile; one it cannot lock it leaves out of the queue, which at worst sends a version more. Returns how
 * many were superseded.
 */
export async function supersedeQueued(db: SyncerDb, endSystem: string, limit: number): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const { rows: queued } = await sql<{ id: string; cif_id: string; customer_version: number; operation: DeliveryRow['operation'] }>`
      with heads as (${dueDeliveries(endSystem, limit)})
      select d.id, d.cif_id, d.customer_version, d.operation from delivery d
      where d.end_system = ${endSystem} and d.state in (${stateList(transitions.supersede.from)})
        and d.cif_id in (select h.cif_id from delivery h where h.id in (select id from heads))
      order by d.cif_id, d.customer_version, d.id
      for update of d skip locked`.execute(trx)
    const decided = [...Map.groupBy(queued, (d) => d.cif_id).values()].flatMap((queue) =>
      supersessions(queue.map((d) => ({ deliveryId: d.id, version: d.customer_version, operation: d.operation })))
    )
    if (decided.length === 0) return 0
    const { supersede } = transitions
    const { rows } = await sql<DeliveryRow & { owner: string }>`
      update delivery d
      set state = ${supersede.to}, completed_at = now(), updated_at = now(),
          remarks = ${remarkSql('superseded', { version: sql`v.version`, delivery: sql`v.by`, system: sql`d.end_system` })}
      from unnest(${decided.map((s) => s.deliveryId)}::bigint[], ${decided.map((s) => s.by.deliveryId)}::bigint[],
          ${decided.map((s) => s.by.version)}::integer[]) as v(id, by, version)
      where d.id = v.id and d.state in (${stateList(supersede.from)})
      returning d.*, (select e.owner_source_system from sync_event e where e.event_id = d.event_id) as owner`.execute(trx)
    await recordStatuses(
      trx,
      rows.map(({ owner, ...row }) => deliveryStatus('SUPERSEDED', owner, row))
    )
    return rows.length
  })
}
