import { type TObject, type TProperties, Type } from 'typebox'
import { CIF_ID_PATTERN } from './cif-id.ts'

/**
 * The CloudEvents 1.0 attributes every event of the project carries (structured JSON mode), keyed and
 * subjected by CIF ID, as JSON Schema; `fields` are the event's own, after them.
 */
export function cloudEventSchema<T extends TProperties>(
  source: string,
  type: string,
  fields: T,
  options: { $id: string; description?: string }
): TObject {
  return Type.Object(
    {
      specversion: Type.Literal('1.0'),
      id: Type.String({ format: 'uuid' }),
      source: Type.Literal(source),
      type: Type.Literal(type),
      subject: Type.String({ pattern: CIF_ID_PATTERN, description: 'The CIF ID' }),
      time: Type.String({ format: 'date-time' }),
      datacontenttype: Type.Literal('application/json'),
      ...fields
    },
    {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      $id: options.$id,
      title: `${type} (CloudEvents 1.0, structured JSON)`,
      ...(options.description ? { description: options.description } : {}),
      additionalProperties: false
    }
  )
}
