import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { cifProblems, httpProblems, type ProblemType, syncerProblems } from '../../src/contracts/problems.ts'

const catalogue: ProblemType[] = [...new Set([...Object.values(httpProblems), ...Object.values(cifProblems), ...Object.values(syncerProblems)])]

describe('the problem catalogue', () => {
  it('gives each problem type its own code', () => {
    const codes = catalogue.map((type) => type.code)
    expect(new Set(codes).size).toBe(codes.length)
    for (const code of codes) expect(code).toMatch(/^[a-z]+(-[a-z]+)*$/)
  })

  it('is the table in the README, code for code and status for status', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
    const rows = [...readme.matchAll(/^\| `([a-z-]+)` \| (\d{3}) \|/gm)].map(([, code, status]) => `${code} ${status}`)
    expect(rows.sort()).toEqual(catalogue.map((type) => `${type.code} ${type.status}`).sort())
  })
})
