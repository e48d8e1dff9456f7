import { readdirSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { eventSchemas } from '../../src/contracts/event-schemas.ts'

const schemas = eventSchemas()
const folder = new URL('../../schemas/events/', import.meta.url)

describe('event schemas in schemas/events/', () => {
  it.each(Object.keys(schemas))('%s.json matches the code (run `npm run schemas` after a change)', (type) => {
    const committed = JSON.parse(readFileSync(new URL(`${type}.json`, folder), 'utf8'))
    expect(committed).toEqual(JSON.parse(JSON.stringify(schemas[type])))
  })

  it('holds no schema of an event type the code no longer has', () => {
    expect(readdirSync(folder).sort()).toEqual(
      Object.keys(schemas)
        .map((type) => `${type}.json`)
        .sort()
    )
  })
})
