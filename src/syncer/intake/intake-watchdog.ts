/**
 * Whether the intake's consumer is making progress, judged from what it can see of itself and of Kafka.
 * Pure, so that every rule can be tested without a broker: the intake gathers an observation every few
 * seconds and starts its consumer over when the verdict is `stalled`.
 */
export interface IntakeObservation {
  now: number
  /** When the current consumer joined its group and was given its partitions. */
  joinedAt: number
  /** When the consumer's stream last had a fetch answered (with messages or without). */
  lastFetchAt: number | undefined
  /** When a batch was last stored: the stream fetches nothing while its batch is stored and committed. */
  lastStoredAt: number | undefined
  /** Partitions of the topic assigned to this consumer. */
  assignedPartitions: number
  /** Since when a batch has been waiting to be stored: the database is the bottleneck, not Kafka. */
  storingSince: number | undefined
  /**
   * Events on this consumer's partitions beyond the group's committed offsets, and when those committed
   * offsets last moved; undefined when Kafka could not say (a broker away is not the consumer's fault).
   */
  lag: { waiting: number; committedMovedAt: number } | undefined
  /**
   * Since when Kafka has answered the watchdog's own probe without a break; undefined while it does not.
   * A broker that is away or frozen is waited out, not blamed on the consumer: a new one could do no better.
   */
  kafkaAnsweringSince: number | undefined
}

export type IntakeVerdict = { kind: 'progressing' } | { kind: 'stalled'; reason: string; stalledSince: number }

const seconds = (ms: number): string => `${Math.round(ms / 1000)} s`

export function judgeIntake(observation: IntakeObservation, stallMs: number): IntakeVerdict {
  const { now, joinedAt, lastFetchAt, lastStoredAt, assignedPartitions, storingSince, lag, kafkaAnsweringSince } = observation
  // Waiting on PostgreSQL: starting the consumer over cannot help, and readiness reports the database.
  if (storingSince !== undefined || kafkaAnsweringSince === undefined) return { kind: 'progressing' }
  // With partitions to read, the stream fetches several times a second even when there is nothing new.
  const fetchedAt = Math.max(joinedAt, lastFetchAt ?? joinedAt, lastStoredAt ?? joinedAt)
  if (assignedPartitions > 0 && now - Math.max(fetchedAt, kafkaAnsweringSince) >= stallMs) {
    return {
      kind: 'stalled',
      stalledSince: fetchedAt,
      reason: `no fetch answered for ${seconds(now - fetchedAt)} on ${assignedPartitions} partitions`
    }
  }
  // Fetches answered, yet what waits on the topic is never taken: the stream is alive but not delivering.
  if (lag && lag.waiting > 0) {
    const movedAt = Math.max(joinedAt, lag.committedMovedAt)
    if (now - Math.max(movedAt, kafkaAnsweringSince) >= stallMs) {
      return {
        kind: 'stalled',
        stalledSince: movedAt,
        reason: `${lag.waiting} events wait on its partitions and the committed offsets have not moved for ${seconds(now - movedAt)}`
      }
    }
  }
  return { kind: 'progressing' }
}
