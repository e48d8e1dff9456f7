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
