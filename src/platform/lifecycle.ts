import type { Logger } from './logger.ts'

/** Runs `shutdown` once on SIGINT or SIGTERM, then exits; a second signal exits at once. */
export function onShutdown(log: Logger, shutdown: () => Promise<void>): void {
  let stopping = false
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(1)
    stopping = true
    log.info({ signal }, 'shutting down')
    shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed')
        process.exit(1)
      }
    )
  }
  process.once('SIGINT', handler)
  process.once('SIGTERM', handler)
}

/**
 * Stops this process (as SIGTERM would, through onShutdown) once the process that started it is gone:
 * npm, told to stop, exits without stopping its script, which would otherwise run on as an orphan holding
 * every port of the local stack, and its servers with it.
 */
export function stopWithParent(log: Logger, everyMs = 500): void {
  const parent = process.ppid
  const watch = setInterval(() => {
    if (process.ppid === parent) return
    clearInterval(watch)
    log.warn({ parent }, 'the process that started this one is gone: stopping')
    process.kill(process.pid, 'SIGTERM')
  }, everyMs)
  watch.unref()
}
