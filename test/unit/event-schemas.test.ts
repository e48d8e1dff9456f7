import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { customerEventSchema, customerEventTypes } from '../../src/contracts/customer-events.ts'

describe('event schemas in schemas/events/', () => {
  it.each(Object.values(customerEventTypes))('%s.json matches the code (run `npm run schemas` after a change)', (type) => {
    const committed = JSON.parse(readFileSync(new URL(`../../schemas/events/${type}.json`, import.meta.url), 'utf8'))
    expect(committed).toEqual(JSON.parse(JSON.stringify(customerEventSchema(type))))
  })
})
