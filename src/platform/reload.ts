import type { Server as HttpsServer } from 'node:https'
import { type Config, ConfigError, reloadAccess, tlsOptions } from './config.ts'
import type { HttpServer } from './http/server.ts'
import type { Logger } from './logger.ts'

type Env = Record<string, string | undefined>

/**
 * Reads the access settings (keys, certificates, grants, roles) and the APIs' TLS files again and puts them
 * in place for the next request; what cannot be read or is invalid is logged, and the old settings stay.
 * The log names the callers that changed, never a key. True when everything was reloaded.
 */
export function reloadSettings(config: Config, servers: readonly HttpServer[], log: Logger, env: Env = process.env): boolean {
  let reloaded = true
  try {
    const changes = reloadAccess(config, env)
    log.info({ changes }, 'access settings reloaded')
  } catch (error) {
    reloaded = false
    log.error({ reason: error instanceof ConfigError ? error.message : String(error) }, 'access settings not reloaded: the old ones stay')
  }
  if (config.tls) {
    try {
      const tls = tlsOptions(config)!
      for (const server of servers) (server.server as HttpsServer).setSecureContext(tls)
      log.info('TLS certificate reloaded')
    } catch (error) {
      reloaded = false
      log.error({ reason: (error as Error).message }, 'TLS certificate not reloaded: the old one stays')
    }
  }
  return reloaded
}

/** SIGHUP reloads (as daemons do): a key rotated or revoked needs no restart. */
export function reloadOnHangup(config: Config, servers: readonly HttpServer[], log: Logger): void {
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'reloading access settings')
    reloadSettings(config, servers, log)
  })
}
