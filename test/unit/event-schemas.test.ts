import { readdirSync, readFileSync } from 'node:fs'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
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

  // What a consumer compiles: every keyword, format and pattern must be standard, or a strict validator
  // refuses the schema; the patterns need the u flag, which the schemas say.
  it.each(Object.keys(schemas))('%s.json compiles in a strict draft 2020-12 validator', (type) => {
    const ajv = new Ajv2020({ strict: true, unicodeRegExp: true })
    addFormats.default(ajv)
    const committed = JSON.parse(readFileSync(new URL(`${type}.json`, folder), 'utf8'))
    expect(() => ajv.compile(committed)).not.toThrow()
    expect(committed.$comment).toMatch(/ECMA-262 regular expressions with the u flag/)
  })
})
