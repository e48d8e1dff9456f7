import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const src = resolve(import.meta.dirname, '../../src')
/** From the top down: a module may import its own part and the parts below it, never one above or beside it. */
const layers = [['cli.ts'], ['roles'], ['cif', 'syncer', 'simulator'], ['outbox'], ['platform'], ['contracts']]
const partOf = (file: string) => relative(src, file).split('/')[0]!
const layerOf = (file: string) => layers.findIndex((parts) => parts.includes(partOf(file)))

const files = readdirSync(src, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.ts'))
  .map((f) => join(src, f))
const imports = new Map(
  files.map((file) => [
    file,
    [...readFileSync(file, 'utf8').matchAll(/^(?:import|export)\b[^'"]*?from '(\.[^']+)'/gm)].map((m) => resolve(dirname(file), m[1]!))
  ])
)

describe('the layers of src/', () => {
  it('puts every module in a layer', () => {
    expect(files.filter((file) => layerOf(file) < 0).map((file) => relative(src, file))).toEqual([])
  })

  it('imports only downwards or within its own part: services share contracts, never each other’s code', () => {
    const upward = [...imports].flatMap(([file, targets]) =>
      targets
        .filter((target) => partOf(target) !== partOf(file) && layerOf(target) <= layerOf(file))
        .map((target) => `${relative(src, file)} -> ${relative(src, target)}`)
    )
    expect(upward).toEqual([])
  })

  it('has no import cycles', () => {
    const cycles: string[] = []
    const state = new Map<string, 'visiting' | 'done'>()
    const visit = (file: string, path: string[]): void => {
      if (state.get(file) === 'done') return
      if (state.get(file) === 'visiting') {
        cycles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(src, f)).join(' -> '))
        return
      }
      state.set(file, 'visiting')
      for (const target of imports.get(file) ?? []) visit(target, [...path, file])
      state.set(file, 'done')
    }
    for (const file of files) visit(file, [])
    expect(cycles).toEqual([])
  })
})
