import { describe, expect, it } from 'vitest'
import { ConfigError, devSourceSystem, loadConfig, parseSourceSystems } from '../../src/platform/config.ts'
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
    expect(parseSourceSystems(`crm=${hash}, branch-portal=${hash}`)).toEqual(new Map([['crm', hash], ['branch-portal', hash]]))
    expect(() => parseSourceSystems('crm=plain-text-key')).toThrow(ConfigError)
    expect(() => parseSourceSystems(`crm=${hash},crm=${hash}`)).toThrow(/twice/)
  })

  it('refuses the public dev key and an empty key list in production', () => {
    const devHash = apiKeyHash(devSourceSystem.apiKey)
    expect(() => loadConfig({ NODE_ENV: 'production', CIF_SOURCE_SYSTEMS: `branch-portal=${devHash}` })).toThrow(/development key/)
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/at least one/)
    expect(loadConfig({ NODE_ENV: 'production', CIF_SOURCE_SYSTEMS: `crm=${hash}` }).sourceSystemKeyHashes.size).toBe(1)
  })

  it('names the setting that is out of range', () => {
    expect(() => loadConfig({ CIF_PORT: '80x' })).toThrow('CIF_PORT must be a whole number from 0 to 65535, got "80x".')
    expect(loadConfig({ KAFKA_BROKERS: ' a:1, b:2 ,' }).kafkaBrokers).toEqual(['a:1', 'b:2'])
  })
})
