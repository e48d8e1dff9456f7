/**
 * One line that says what went wrong, for logs and remarks: the distinct innermost messages of an error
 * tree (Kafka clients nest AggregateErrors several levels deep, one per partition and retry).
 */
export function describeError(error: unknown, maxLength = 500): string {
  const leaves = new Set<string>()
  const visit = (e: unknown, depth: number): void => {
    if (depth > 5) return
    const nested = e instanceof AggregateError ? e.errors : e instanceof Error && e.cause ? [e.cause] : []
    if (nested.length === 0) leaves.add(e instanceof Error ? e.message : String(e))
    else for (const n of nested) visit(n, depth + 1)
  }
  visit(error, 0)
  const text = [...leaves].join('; ')
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text
}
