import type { Migration } from 'kysely/migration'
import * as syncer from './0002_syncer.ts'
import * as actionRequests from './0003_action_requests.ts'
import * as retentionAndErasure from './0005_syncer_retention_and_erasure.ts'
import * as attemptPartitions from './0006_attempt_partitions.ts'
import * as statusPublishedFromFeed from './0007_status_published_from_feed.ts'
import * as statusPositionedAtInsert from './0009_status_positioned_at_insert.ts'
import * as endSystemLifecycle from './0010_end_system_lifecycle.ts'
import * as reconciliation from './0011_reconciliation.ts'
import * as traceContext from './0012_trace_context.ts'
import * as settledDeliveryCounts from './0013_settled_delivery_counts.ts'
import * as oneEventPerVersion from './0014_one_event_per_version.ts'
import * as deliveryEventIndex from './0015_delivery_event_index.ts'
import * as deliveryOpenCounts from './0016_delivery_open_counts.ts'
import * as deliveryVacuumByChurn from './0017_delivery_vacuum_by_churn.ts'
import * as deliveryFillfactor from './0018_delivery_fillfactor.ts'
import * as deliveryEventTime from './0019_delivery_event_time.ts'
import * as deliveryDueInClaimOrder from './0020_delivery_due_in_claim_order.ts'
import * as deliveryStateIndexNarrowed from './0021_delivery_state_index_narrowed.ts'

/** The syncer's migrations. Names are versions: never rename or edit a released one, add a new one. */
export const syncerMigrations: Record<string, Migration> = {
  '0002_syncer': syncer,
  '0003_action_requests': actionRequests,
  '0005_syncer_retention_and_erasure': retentionAndErasure,
  '0006_attempt_partitions': attemptPartitions,
  '0007_status_published_from_feed': statusPublishedFromFeed,
  '0009_status_positioned_at_insert': statusPositionedAtInsert,
  '0010_end_system_lifecycle': endSystemLifecycle,
  '0011_reconciliation': reconciliation,
  '0012_trace_context': traceContext,
  '0013_settled_delivery_counts': settledDeliveryCounts,
  '0014_one_event_per_version': oneEventPerVersion,
  '0015_delivery_event_index': deliveryEventIndex,
  '0016_delivery_open_counts': deliveryOpenCounts,
  '0017_delivery_vacuum_by_churn': deliveryVacuumByChurn,
  '0018_delivery_fillfactor': deliveryFillfactor,
  '0019_delivery_event_time': deliveryEventTime,
  '0020_delivery_due_in_claim_order': deliveryDueInClaimOrder,
  '0021_delivery_state_index_narrowed': deliveryStateIndexNarrowed
}
