import { Ajv } from 'ajv'
import { describe, expect, it } from 'vitest'
import { describeError } from '../../src/platform/errors.ts'
import { fieldErrorsFromAjv } from '../../src/platform/http/problem.ts'

describe('field errors from JSON Schema validation', () => {
  const ajv = new Ajv({ allErrors: true })
  const validate = ajv.compile({
    type: 'object',
    required: ['name'],
    additionalProperties: false,
    properties: { name: { type: 'string', maxLength: 3 }, 'a/b': { anyOf: [{ type: 'string' }, { type: 'null' }] } }
  })

  it('points at each field once, escaping JSON Pointer characters', () => {
    validate({ extra: 1, 'a/b': 5 })
    expect(fieldErrorsFromAjv(validate.errors!, 'body')).toEqual([
      { pointer: '/name', detail: 'is required' },
      { pointer: '/extra', detail: 'is not a known field' },
      { pointer: '/a~1b', detail: 'must be string' }
    ])
  })

  it('names parameters and headers by name', () => {
    validate({ name: 'long' })
    expect(fieldErrorsFromAjv(validate.errors!, 'params')).toEqual([{ parameter: 'name', detail: 'must NOT have more than 3 characters' }])
    expect(fieldErrorsFromAjv(validate.errors!, 'headers')).toEqual([{ header: 'name', detail: 'must NOT have more than 3 characters' }])
  })
})

describe('describeError', () => {
  it('flattens nested aggregate errors to their distinct causes', () => {
    const refused = new Error('connect ECONNREFUSED 127.0.0.1:9092')
    const error = new AggregateError([new AggregateError([refused, refused]), new Error('outer', { cause: new Error('timeout') })], 'failed')
    expect(describeError(error)).toBe('connect ECONNREFUSED 127.0.0.1:9092; timeout')
    expect(describeError('x'.repeat(20), 10)).toBe('xxxxxxxxx…')
  })
})
