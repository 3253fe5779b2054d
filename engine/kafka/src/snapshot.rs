//! Reading snapshots back: a partition's states as of a point in its
//! `events`, in the compacted `snapshots` topic under the key
//! `<events topic>/<partition>`. In postcard, the version first, like the
//! embedded engine's snapshots. The worker writes them
//! (`worker::SnapshotOut`); the worker and the edge both start from them.

use std::collections::BTreeMap;

use switchboard_domain::DomainState;

use crate::layout::TopicLayout;
use crate::Error;

/// The snapshot format this version reads and writes. 2: states hold the
/// closed conversations the retention will forget, which a state of
/// version 1 lacks (a fold from it would part from a full fold). 3:
/// conversations hold their thread of messages, which version 2 lacks. 4:
/// postcard instead of JSON (versions up to 3 are JSON).
pub(crate) const SNAPSHOT_VERSION: u32 = 4;

/// One partition's snapshot record: read into owned domains ([`Snapshot`]),
/// written from borrowed ones (`worker::SnapshotOut`). One type for both,
/// because postcard knows fields only by their order.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct SnapshotRecord<D> {
    /// Format version; a reader skips a snapshot of a version it does not know.
    pub version: u32,
    /// Kafka offset in `events` to read on from: at or before the first
    /// batch not folded in (batches before `next_offset` are passed over).
    pub resume_at: i64,
    /// Journal offset of the next event.
    pub next_offset: u64,
    /// Each domain's state and recent command ids.
    pub domains: D,
}

/// One partition's snapshot, as read.
pub(crate) type Snapshot = SnapshotRecord<BTreeMap<String, (DomainState, Vec<String>)>>;

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
        .filter_map(|(partition, body)| decode(partition, &body).map(|snapshot| (partition, snapshot)))
        .collect())
}

/// `partition`'s snapshot record read back, or `None` (logged) if it is of
/// another version or unreadable: the partition is then folded from the start.
pub(crate) fn decode(partition: i32, body: &[u8]) -> Option<Snapshot> {
    match switchboard_live::snapshot_format(body) {
        Some(SNAPSHOT_VERSION) => match postcard::from_bytes::<Snapshot>(body) {
            // The sniffed version is this field; checked again all the same.
            Ok(snapshot) => (snapshot.version == SNAPSHOT_VERSION).then_some(snapshot),
            Err(error) => {
                tracing::warn!(partition, %error, "unreadable snapshot; folding all events");
                None
            }
        },
        Some(version) => {
            tracing::warn!(partition, version, "snapshot of an unknown version; folding all events");
            None
        }
        None => {
            tracing::warn!(partition, "unreadable snapshot (no version at its start); folding all events");
            None
        }
    }
}
