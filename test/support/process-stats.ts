import { existsSync, readdirSync, readFileSync } from 'node:fs'

const TICKS_PER_SECOND = 100 // Linux USER_HZ

function children(pid: number): number[] {
  try {
    const tasks = readdirSync(`/proc/${pid}/task`)
    return tasks.flatMap((tid) => readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number))
  } catch {
    return []
  }
}

/** A process and all its descendants (PostgreSQL runs a process per connection). */
function tree(pid: number): number[] {
  const all = [pid]
  for (let i = 0; i < all.length; i++) all.push(...children(all[i]!))
  return all
}

/**
 * Memory is PSS (proportional set size): shared pages are split between the processes sharing them, so
 * PostgreSQL's shared buffers are not counted once per backend. For a single process it equals its RSS
 * less what it shares. Undefined when the process (the tree's root) is gone: an ended process has no
 * figures left to read.
 */
function sample(pids: number[], withReaped: boolean): { rssBytes: number; cpuTicks: number } | undefined {
  if (!existsSync(`/proc/${pids[0]}/stat`)) return undefined
  let rssBytes = 0
  let cpuTicks = 0
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      cpuTicks += Number(fields[11]) + Number(fields[12]) // utime + stime
      // A backend that exits takes its time out of the tree and into its parent's cutime + cstime.
      if (withReaped && pid === pids[0]) cpuTicks += Number(fields[13]) + Number(fields[14])
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
      rssBytes += Number(/Pss:\s+(\d+) kB/.exec(rollup)?.[1] ?? 0) * 1024
    } catch {
      // the process ended between listing and reading
    }
  }
  return { rssBytes, cpuTicks }
}

export interface ProcessUsage {
  name: string
  /** Peak proportional set size (RSS with shared pages split among their sharers). */
  peakRssMb: number
  /** Average CPU over the window, in cores (1.0 = one core fully busy). */
  cpuCores: number
  /** CPU time over the window (user + system), in milliseconds. */
  cpuMs: number
}

/** Samples peak RSS and CPU time of named process trees until stopped. */
export class ProcessMonitor {
  readonly #targets: Map<string, () => number | undefined>
  readonly #peak = new Map<string, number>()
  readonly #firstTicks = new Map<string, number>()
  readonly #lastTicks = new Map<string, number>()
  #timer: NodeJS.Timeout | undefined
  #startedAt = 0

  readonly #withChildren: Set<string>

  /**
   * `withChildren`: the targets whose descendants count too (PostgreSQL's backends), those that exited
   * during the window included (the root's reaped children's time); others count alone.
   */
  constructor(targets: Record<string, () => number | undefined>, withChildren: string[] = []) {
    this.#targets = new Map(Object.entries(targets))
    this.#withChildren = new Set(withChildren)
  }

  start(intervalMs = 250): void {
    this.#startedAt = Date.now()
    this.#sample(true)
    this.#timer = setInterval(() => this.#sample(), intervalMs)
  }

  stop(): ProcessUsage[] {
    clearInterval(this.#timer)
    this.#sample()
    const seconds = (Date.now() - this.#startedAt) / 1000
    return [...this.#targets.keys()].map((name) => {
      const cpuSeconds = ((this.#lastTicks.get(name) ?? 0) - (this.#firstTicks.get(name) ?? 0)) / TICKS_PER_SECOND
      return {
        name,
        peakRssMb: Math.round((this.#peak.get(name) ?? 0) / 1024 / 1024),
        cpuCores: Number((cpuSeconds / seconds).toFixed(2)),
        cpuMs: Math.round(cpuSeconds * 1000)
      }
    })
  }

  #sample(initial = false): void {
    for (const [name, pid] of this.#targets) {
      const root = pid()
      if (!root) continue
      const withChildren = this.#withChildren.has(name)
      const figures = sample(withChildren ? tree(root) : [root], withChildren)
      if (!figures) continue
      this.#peak.set(name, Math.max(this.#peak.get(name) ?? 0, figures.rssBytes))
      // A process started after the window opened counts whole: its time so far was all spent in the window.
      if (!this.#firstTicks.has(name)) this.#firstTicks.set(name, initial ? figures.cpuTicks : 0)
      this.#lastTicks.set(name, figures.cpuTicks)
    }
  }
}
