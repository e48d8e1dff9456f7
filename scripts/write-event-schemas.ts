// Writes schemas/events/*.json from the TypeBox definitions; a unit test fails when they drift.
import { writeFileSync } from 'node:fs'
import { customerEventSchema, customerEventTypes } from '../src/contracts/customer-events.ts'

for (const type of Object.values(customerEventTypes)) {
  writeFileSync(new URL(`../schemas/events/${type}.json`, import.meta.url), `${JSON.stringify(customerEventSchema(type), null, 2)}\n`)
}
