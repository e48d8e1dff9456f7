export interface Periodic {
  /** Stops the rounds; resolves once a round under way has finished. */
  stop(): Promise<void>
}

/**
 * Runs `round` every `intervalMs`, never two at once: a round that takes longer than the interval delays
 * the next one instead of piling up. A round that fails is the round's own business: it must catch.
 */
export function startPeriodic(intervalMs: number, round: () => Promise<void>): Periodic {
  let running: Promise<void> | undefined
  let stopped = false
  const timer = setInterval(() => {
    if (running || stopped) return
    running = round()
      .catch(() => {})
      .finally(() => {
        running = undefined
      })
  }, intervalMs)
  timer.unref()
  return {
    stop: async () => {
      stopped = true
      clearInterval(timer)
      await running
    }
  }
}

/**
 * Runs `batch` (which does at most one batch of work and says how much it did) until a batch comes back
 * short of `batchSize`, or `maxBatches` have run. Each batch is its own short statement, so a large
 * backlog never holds many row locks or one long transaction, and a round ends in bounded time.
 * Returns how much was done in all.
 */
export async function inBatches(batch: () => Promise<number>, batchSize: number, maxBatches = 100): Promise<number> {
  let total = 0
  for (let round = 0; round < maxBatches; round++) {
    const done = await batch()
    total += done
    if (done < batchSize) break
  }
  return total
}
