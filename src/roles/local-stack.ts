import { startCifService } from '../cif/service.ts'
import { devSourceSystem, type Config } from '../platform/config.ts'
import { onShutdown } from '../platform/lifecycle.ts'
import { startInfrastructure } from '../platform/local/infrastructure.ts'
import type { Logger } from '../platform/logger.ts'
import { topics } from '../platform/kafka.ts'

export const demoCustomer = {
  legalForm: 'PERSON',
  firstName: 'Ada',
  lastName: 'Lovelace',
  dateOfBirth: '1990-12-10',
  mobileNumber: '+6591234567',
  email: 'ada@example.com',
  identifiers: [{ type: 'NATIONAL_ID', value: 'S1234567D', issuingCountry: 'SG' }]
}

/** `cif-syncer up`: PostgreSQL, Kafka and the services, wired together on this machine. */
export async function runLocalStack(config: Config, log: Logger): Promise<void> {
  const started = Date.now()
  const infrastructure = await startInfrastructure(config, log)
  const cif = await startCifService(config, infrastructure, log.child({ service: 'cif-service' }))
  onShutdown(log, async () => {
    await cif.close()
    await infrastructure.stop()
  })
  const key = config.production ? '<your source system key>' : devSourceSystem.apiKey
  process.stdout.write(
    [
      '',
      `CIF Syncer local stack is up (${((Date.now() - started) / 1000).toFixed(1)} s). Ctrl-C stops it.`,
      `  CIF API       ${cif.url}   docs: ${cif.url}/docs   OpenAPI: ${cif.url}/openapi.json`,
      `  Kafka         ${infrastructure.kafkaBrokers.join(',')}   topic: ${topics.customerEvents}`,
      `  PostgreSQL    ${infrastructure.databaseUrl.replace(/:[^:@/]+@/, ':***@')}`,
      `  Demo API key  ${key}   (source system "${devSourceSystem.name}", for local use only)`,
      '',
      'Create a customer:',
      `  curl -s -X POST ${cif.url}/v1/customers -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' \\`,
      `    -d '${JSON.stringify(demoCustomer)}'`,
      '',
      'Watch the events: npm run tail:events',
      '',
      ''
    ].join('\n')
  )
}
