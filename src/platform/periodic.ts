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
