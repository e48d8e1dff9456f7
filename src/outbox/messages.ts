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
 * The outbox row that publishes `event` to `topic`, keyed by its subject, with the CloudEvents Kafka
 * binding's headers (a consumer can route on `ce_type` without parsing the body).
 */
export function outboxMessage(topic: string, event: CloudEventEnvelope): NewOutboxMessage {
  return {
    event_id: event.id,
    topic,
    message_key: event.subject,
    payload: JSON.stringify(event),
    headers: JSON.stringify({ 'content-type': 'application/cloudevents+json; charset=utf-8', ce_type: event.type, ce_id: event.id })
  }
}
