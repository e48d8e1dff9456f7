import { describe, expect, it } from 'vitest'
import { endSystemView, HIDDEN } from '../../src/syncer/console/end-systems-view.ts'
import { loadEndSystems } from '../../src/syncer/delivery/end-systems-config.ts'

const secrets = { CORE_BANKING_TOKEN: 'secret-core-banking-token-1234', CRM_URL: 'https://crm-user:crm-secret-password@crm.bank.example' }

describe('an end system as the console shows it', () => {
  const views = loadEndSystems('config/end-systems.yaml', {
    CORE_BANKING_URL: 'http://127.0.0.1:1',
    CARDS_URL: 'http://127.0.0.1:3',
    ...secrets
  }).map(endSystemView)

  it('never holds a secret: header values and a URL password are hidden', () => {
    const shown = JSON.stringify(views)
    expect(shown).not.toContain(secrets.CORE_BANKING_TOKEN)
    expect(shown).not.toContain('crm-secret-password')
    expect(shown).not.toContain('crm-user')
    expect(views.find((v) => v.name === 'crm')!.baseUrl).toBe(`https://${encodeURIComponent(HIDDEN)}:${encodeURIComponent(HIDDEN)}@crm.bank.example/`)
    expect(views.find((v) => v.name === 'core-banking')!.authentication).toBe(`header authorization: value ${HIDDEN}`)
  })

  it('shows the rest as loaded: operations, retry policy, breaker, concurrency', () => {
    const core = views.find((v) => v.name === 'core-banking')!
    expect(core.operations.map((o) => [o.name, o.method])).toEqual([
      ['create', 'POST'],
      ['update', 'PUT']
    ])
    expect(core.retry.retries).toBeGreaterThanOrEqual(0)
    expect(core.circuitBreaker.consecutiveFailures).toBeGreaterThan(0)
    expect(core.concurrency).toBeGreaterThan(0)
  })
})
