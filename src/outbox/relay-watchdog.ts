/**
 * Whether an outbox relay is getting its messages out, judged from the table and from Kafka. Pure, so
 * every rule is tested without a broker: the relay gathers an observation every few seconds.
 */
export interface RelayObservation {
  now: number
  /** When the oldest unsent message of the relay's topics was written; undefined when none waits. */
  oldestUnsentAt: number | undefined
  /** When this relay last published a batch. */
  lastPublishedAt: number | undefined
  /** When this relay last replaced its producer: a new one gets a full stall period to show what it can do. */
  lastRestartAt: number | undefined
  /**
   * Since when Kafka has answered without a break; undefined while it does not. The relay's own loop
   * retries with a backoff of a few seconds, so it gets the stall period after Kafka is back, too.
   */
  kafkaAnsweringSince: number | undefined
}

export type RelayVerdict =
  | { kind: 'caught-up' }
  /** Messages wait and nothing has gone out since `since`; within the stall period, or Kafka is away. */
  | { kind: 'waiting'; since: number }
  /** Kafka answers, yet nothing has gone out for the stall period: the producer is what is broken. */
  | { kind: 'stalled'; since: number; reason: string }

export function judgeRelay(observation: RelayObservation, stallMs: number): RelayVerdict {
  const { now, oldestUnsentAt, lastPublishedAt, lastRestartAt, kafkaAnsweringSince } = observation
  if (oldestUnsentAt === undefined) return { kind: 'caught-up' }
  // A relay publishing a long backlog has old messages waiting, yet is moving.
  const since = Math.max(oldestUnsentAt, lastPublishedAt ?? oldestUnsentAt)
  if (kafkaAnsweringSince === undefined) return { kind: 'waiting', since }
  const stalledFor = now - Math.max(since, lastRestartAt ?? since, kafkaAnsweringSince)
  if (stalledFor < stallMs) return { kind: 'waiting', since }
  return {
    kind: 'stalled',
    since,
    reason: `messages have waited ${Math.round((now - oldestUnsentAt) / 1000)} s and none went out for ${Math.round(stalledFor / 1000)} s while Kafka answers`
  }
}
