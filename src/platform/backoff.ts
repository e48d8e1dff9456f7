/** Exponential backoff without jitter: `initialMs`, doubling per failure, never above `maxMs`. */
export function backoffMs(failures: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(failures, 0), 30))
}
