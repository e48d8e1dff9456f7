/** Reconciliation and backfill runs, as the database (migration 0011) and the admin API name them. */
export const runKinds = {
  RECONCILE: 'reads each customer back from the end systems and classifies what it finds',
  BACKFILL: "delivers each customer's latest version to a system that holds none of it yet"
} as const
export type RunKind = keyof typeof runKinds

export const runStates = ['RUNNING', 'DONE'] as const
export type RunState = (typeof runStates)[number]

/** Progress of a run as people read it: done of total, the rate so far and the time left at that rate. */
export interface Progress {
  done: number
  total: number | null
  perSecond: number
  secondsLeft: number | null
}

export function progress(done: number, total: number | null, startedAt: Date, now: Date): Progress {
  const seconds = Math.max(0.001, (now.getTime() - startedAt.getTime()) / 1000)
  const perSecond = done / seconds
  const left = total === null ? null : Math.max(0, total - done)
  return {
    done,
    total,
    perSecond: Math.round(perSecond * 10) / 10,
    secondsLeft: left === null ? null : left === 0 ? 0 : perSecond > 0 ? Math.ceil(left / perSecond) : null
  }
}
