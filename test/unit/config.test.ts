import { describe, expect, it } from 'vitest'
import { ConfigError, devSourceSystem, loadConfig, parseApiKeys } from '../../src/platform/config.ts'
import { apiKeyHash } from '../../src/platform/http/api-key-auth.ts'

const hash = apiKeyHash('a-real-secret-key')

describe('configuration', () => {
  it('has working defaults for the local stack, with the dev source system', () => {
    const config = loadConfig({})
    expect(config.cif).toMatchObject({ host: '127.0.0.1', port: 8080, bodyLimitBytes: 65536 })
    expect(config.databaseUrl).toBeUndefined()
    expect(config.kafkaBrokers).toBeUndefined()
    expect(config.sourceSystemKeyHashes).toEqual(new Map([[devSourceSystem.name, apiKeyHash(devSourceSystem.apiKey)]]))
  })

  it('reads source systems as name=sha256 pairs and refuses anything else', () => {
    expect(parseApiKeys(`crm=${hash}, branch-portal=${hash}`, 'CIF_SOURCE_SYSTEMS')).toEqual(
      new Map([
        ['crm', hash],
        ['branch-portal', hash]
      ])
    )
    expect(() => parseApiKeys('crm=plain-text-key', 'CIF_SOURCE_SYSTEMS')).toThrow(ConfigError)
    expect(() => parseApiKeys(`crm=${hash},crm=${hash}`, 'CIF_SOURCE_SYSTEMS')).toThrow(/twice/)
  })

  it('refuses the public dev key and an empty key list in production', () => {
    const devHash = apiKeyHash(devSourceSystem.apiKey)
    expect(() => loadConfig({ NODE_ENV: 'production', CIF_SOURCE_SYSTEMS: `branch-portal=${devHash}` })).toThrow(/public development key/)
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/at least one/)
    expect(loadConfig({ NODE_ENV: 'production', CIF_SOURCE_SYSTEMS: `crm=${hash}` }).sourceSystemKeyHashes.size).toBe(1)
  })

  it('names the setting that is out of range', () => {
    expect(() => loadConfig({ CIF_PORT: '80x' })).toThrow('CIF_PORT must be a whole number from 0 to 65535, got "80x".')
    expect(loadConfig({ KAFKA_BROKERS: ' a:1, b:2 ,' }).kafkaBrokers).toEqual(['a:1', 'b:2'])
  })
})
