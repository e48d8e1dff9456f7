import { TRACEPARENT } from '../platform/tracing.ts'
import type { NewOutboxMessage } from './tables.ts'

/** What the outbox publishes: a CloudEvents 1.0 envelope (structured JSON mode). */
export interface CloudEventEnvelope {
  specversion: '1.0'
  id: string
  type: string
  /** The message key: what must stay in order (a CIF ID), so its messages share a partition. */
  subject: string
}

/**
 * The CloudEvents Kafka binding's structured mode: the content type says so, and no `ce_` header is set
 * (SDKs that auto-detect the mode, Python's among them, read any `ce_` header as binary mode and then fail
 * on the message).
 */
export const structuredModeHeaders: Record<string, string> = { 'content-type': 'application/cloudevents+json; charset=utf-8' }

/**
 * The outbox row that publishes `event` to `topic`, keyed by its subject, in structured mode, with the
 * W3C `traceparent` of the change it tells of, if it was traced (the relay publishes it in a span of its own under it).
 */
export function outboxMessage(topic: string, event: CloudEventEnvelope, traceparent?: string): NewOutboxMessage {
  return {
    event_id: event.id,
    topic,
    message_key: event.subject,
    payload: JSON.stringify(event),
    headers: JSON.stringify(traceparent ? { ...structuredModeHeaders, [TRACEPARENT]: traceparent } : structuredModeHeaders)
  }
}
