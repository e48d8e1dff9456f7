import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'

// prometheus/alerts.yml: valid for Prometheus (promtool, from Debian's `prometheus` package; .ci/run installs
// it and sets REQUIRE_PROMTOOL, so CI never skips), and naming only metrics the services declare.

const root = resolve(import.meta.dirname, '../..')
const rulesFile = join(root, 'prometheus/alerts.yml')
const promtool = (() => {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()

/** Every metric name declared in src/ (`name: '...'` of a prom-client metric). */
function declaredMetrics(): Set<string> {
  const src = join(root, 'src')
  const names = readdirSync(src, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .flatMap((file) => [...readFileSync(join(src, file), 'utf8').matchAll(/\bname: '([a-z_]+)'/g)].map((m) => m[1]!))
  return new Set(names)
}

describe('prometheus/alerts.yml', () => {
  const check = (): void => {
    const output = execFileSync('promtool', ['check', 'rules', rulesFile], { encoding: 'utf8' })
    expect(output).toMatch(/SUCCESS: \d+ rules found/)
  }
  if (promtool || process.env.REQUIRE_PROMTOOL) it('passes `promtool check rules`', check)
  else it.skip('passes `promtool check rules`: SKIPPED, promtool is not installed here (apt-get install prometheus); CI installs it', check)

  it('alerts on metrics the services declare', () => {
    const { groups } = parse(readFileSync(rulesFile, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] }
    const declared = declaredMetrics()
    const rules = groups.flatMap((group) => group.rules)
    const unknown = rules.flatMap((rule) =>
      [...rule.expr.matchAll(/\b((?:syncer|outbox|cif)_[a-z_]+)\b/g)]
        .map((m) => m[1]!)
        .filter((name) => !declared.has(name))
        .map((name) => `${rule.alert}: ${name}`)
    )
    expect(rules.length).toBeGreaterThanOrEqual(5)
    expect(unknown).toEqual([])
  })
})
