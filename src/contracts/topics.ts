/**
 * The Kafka topics the services share, and their partition counts. Keys are CIF IDs on both, so one
 * customer's messages stay in order within their partition.
 */
export const topics = {
  /** The CIF service publishes every created or changed customer here (contracts/customer-events.ts). */
  customerEvents: 'cif.customer.events',
  /** The syncer tells source systems how each delivery went here (contracts/sync-status-events.ts). */
  syncStatus: 'cif.sync.status'
} as const
export type Topic = (typeof topics)[keyof typeof topics]

export const topicPartitions: Record<Topic, number> = {
  [topics.customerEvents]: 12,
  [topics.syncStatus]: 12
}
