/**
 * A value as JSON with no whitespace and the keys of every object sorted (by UTF-16 code units, as
 * RFC 8785 sorts them): the same value always gives the same text, whatever order its keys were written
 * in. A signature over this text therefore survives a store or a client that reorders keys (PostgreSQL's
 * jsonb does).
 *
 * It is RFC 8785 for what events hold: strings, integers, booleans, null, objects and arrays (strings and
 * numbers are written as JSON.stringify writes them, which is what RFC 8785 asks). Like JSON.stringify, it
 * leaves out object properties that are undefined and writes an undefined array element as null, so a
 * value and the value read back from its JSON give the same text. Anything JSON cannot carry (NaN, a
 * Date, a Map, a bigint) is refused rather than written in a way the other side would read differently.
 */
export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value)
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonical JSON has no ${value}`)
      return JSON.stringify(value)
    case 'object': {
      if (value === null) return 'null'
      if (Array.isArray(value)) return `[${value.map((item) => (item === undefined ? 'null' : canonicalJson(item))).join(',')}]`
      const prototype = Object.getPrototypeOf(value)
      if (prototype !== Object.prototype && prototype !== null) {
        throw new TypeError(`canonical JSON holds plain objects only, not a ${value.constructor?.name ?? 'class instance'}`)
      }
      const record = value as Record<string, unknown>
      const members = Object.keys(record)
        .filter((key) => record[key] !== undefined)
        .sort()
        .map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`)
      return `{${members.join(',')}}`
    }
    default:
      throw new TypeError(`canonical JSON cannot hold a ${typeof value}`)
  }
}
