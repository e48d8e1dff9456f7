import type { EndSystemConfig } from '../delivery/end-systems-config.ts'

/**
 * An end system's configuration as the console shows it: everything the syncer loaded except its secrets.
 * The authentication headers' values are tokens and passwords, so only their names are shown; a base URL's
 * user and password (an end system may take them there) are replaced.
 */
export interface EndSystemView {
  name: string
  baseUrl: string
  authentication: string
  tls: string
  concurrency: number
  createConflictMeansExists: boolean
  retry: EndSystemConfig['retry']
  circuitBreaker: EndSystemConfig['circuitBreaker']
  operations: { name: string; method: string; path: string; externalIdFromAnswer: boolean }[]
}

export const HIDDEN = '(hidden)'

function withoutCredentials(baseUrl: string): string {
  try {
    const url = new URL(baseUrl)
    if (!url.username && !url.password) return baseUrl
    url.username = url.username ? HIDDEN : ''
    url.password = url.password ? HIDDEN : ''
    return url.toString()
  } catch {
    // The file's check has refused what is no URL; should one get through, it is not shown in part.
    return HIDDEN
  }
}

export function endSystemView(system: EndSystemConfig): EndSystemView {
  const headers = Object.keys(system.authHeaders)
  const tls = system.tls
  return {
    name: system.name,
    baseUrl: withoutCredentials(system.baseUrl),
    authentication: headers.length ? `header ${headers.join(', ')}: value ${HIDDEN}` : 'none',
    tls: tls
      ? [
          tls.ca ? 'own certificate authorities' : 'the usual certificate authorities',
          tls.cert ? 'a client certificate' : 'no client certificate',
          ...(tls.servername ? [`server name ${tls.servername}`] : [])
        ].join(', ')
      : 'as the base URL says',
    concurrency: system.concurrency,
    createConflictMeansExists: system.createConflictMeansExists,
    retry: system.retry,
    circuitBreaker: system.circuitBreaker,
    operations: Object.entries(system.operations).map(([name, operation]) => ({
      name,
      method: operation.method,
      path: operation.path,
      externalIdFromAnswer: operation.externalId !== undefined
    }))
  }
}
