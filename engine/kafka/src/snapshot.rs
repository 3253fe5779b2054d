//! Reading snapshots back: a partition's states as of a point in its
//! `events`, in the compacted `snapshots` topic under the key
//! `<events topic>/<partition>`. JSON, like the embedded engine's
//! snapshots (states hold maps with string keys). The worker writes them
//! (`worker::SnapshotOut`); the worker and the edge both start from them.

use std::collections::BTreeMap;

use switchboard_domain::DomainState;

use crate::layout::TopicLayout;
use crate::Error;

/// The snapshot format this version reads and writes. 2: states hold the
/// closed conversations the retention will forget, which a state of
/// version 1 lacks (a fold from it would part from a full fold). 3:
/// conversations hold their thread of messages, which version 2 lacks.
pub(crate) const SNAPSHOT_VERSION: u32 = 3;

/// One partition's snapshot, as read.
#[derive(serde::Deserialize)]
pub(crate) struct Snapshot {
    /// Format version; a reader skips a snapshot of a version it does not know.
    pub version: u32,
    /// Kafka offset in `events` to read on from: at or before the first
    /// batch not folded in (batches before `next_offset` are passed over).
    pub resume_at: i64,
    /// Journal offset of the next event.
    pub next_offset: u64,
    /// Each domain's state and recent command ids.
    pub domains: BTreeMap<String, (DomainState, Vec<String>)>,
}

/// The key of `partition`'s snapshots.
pub(crate) fn snapshot_key(events: &str, partition: i32) -> String {
    format!("{events}/{partition}")
}

/// The newest readable snapshot of each of `partitions` of `topics.events`,
/// from one read of the snapshots topic. A partition whose newest snapshot
/// cannot be read, or is of another version, has none (a full fold).
pub(crate) fn latest_snapshots(
    brokers: &str,
    topics: &TopicLayout,
    partitions: &[i32],
) -> Result<BTreeMap<i32, Snapshot>, Error> {
    let keys: BTreeMap<Vec<u8>, i32> =
        partitions.iter().map(|&p| (snapshot_key(&topics.events, p).into_bytes(), p)).collect();
    let mut latest = BTreeMap::new();
    for record in crate::journal::read_records(brokers, &topics.snapshots, 0, 0)? {
        let (key, body) = record?;
        if let Some(&partition) = keys.get(&key) {
            latest.insert(partition, body);
        }
    }
    Ok(latest
        .into_iter()
        .filter_map(|(partition, body)| match serde_json::from_slice::<Snapshot>(&body) {
            Ok(snapshot) if snapshot.version == SNAPSHOT_VERSION => Some((partition, snapshot)),
            Ok(snapshot) => {
                tracing::warn!(
                    partition,
                    version = snapshot.version,
                    "snapshot of an unknown version; folding all events"
                );
                None
            }
            Err(error) => {
                tracing::warn!(partition, %error, "unreadable snapshot; folding all events");
                None
            }
        })
        .collect())
}
