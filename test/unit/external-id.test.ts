import fc from 'fast-check'
import jsonata from 'jsonata'
import { describe, expect, it } from 'vitest'
import { readExternalId } from '../../src/syncer/delivery/lane.ts'

/** What JSONata alone makes of the answer: the reading a plain path must agree with. */
async function byJsonata(expression: string, body: string): Promise<string | null> {
  const value = await jsonata(expression).evaluate(JSON.parse(body))
  return typeof value === 'string' || typeof value === 'number' ? String(value) : null
}

const names = fc.constantFrom('id', 'customerId', 'contact', 'data', 'ref')
// Answers built from the same few names, so that paths find something often, with arrays and nulls on the way.
const answer = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    {
      arbitrary: fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null)),
      weight: 2
    },
    { arbitrary: fc.array(tie('value'), { maxLength: 3 }), weight: 2 },
    { arbitrary: fc.dictionary(names, tie('value'), { maxKeys: 5 }), weight: 4 }
  )
})).value

describe("a create's record id read from the answer", () => {
  it('reads a plain path (customerId, contact.id) as JSONata does, whatever the answer holds', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(names, { minLength: 1, maxLength: 3 }), answer, async (path, value) => {
        const expression = path.join('.')
        const body = JSON.stringify(value)
        expect(await readExternalId(jsonata(expression), body)).toEqual(await byJsonata(expression, body))
      }),
      { numRuns: 1000 }
    )
  })

  it('leaves anything more than a path of names to JSONata', async () => {
    const body = JSON.stringify({ items: [{ id: 'A' }, { id: 'B' }], contact: { id: 7 } })
    expect(await readExternalId(jsonata('items[1].id'), body)).toBe('B')
    expect(await readExternalId(jsonata('items[id = "A"].id'), body)).toBe('A')
    expect(await readExternalId(jsonata('"X-" & contact.id'), body)).toBe('X-7')
    expect(await readExternalId(jsonata('contact.id'), body)).toBe('7')
    expect(await readExternalId(jsonata('contact.id'), 'not JSON')).toBeNull()
  })
})
