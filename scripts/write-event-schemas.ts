// Writes schemas/events/*.json from the TypeBox definitions in src/contracts; a unit test fails when they drift.
import { writeFileSync } from 'node:fs'
import { eventSchemas } from '../src/contracts/event-schemas.ts'

for (const [type, schema] of Object.entries(eventSchemas())) {
  writeFileSync(new URL(`../schemas/events/${type}.json`, import.meta.url), `${JSON.stringify(schema, null, 2)}\n`)
}
