//! Snapshots: a partition's states as of a point in its `events`, in the
//! compacted `snapshots` topic. The body is postcard, the version first,
//! like the embedded engine's snapshots. It is written in pieces of at most
//! [`PIECE_BYTES`], one record each, because a partition's states grow with
//! the conversations it keeps (an hour's, by default) past what one record
//! may hold. The first piece has the key `<events topic>/<partition>`, the
//! others `<events topic>/<partition>/<index>`. The worker encodes them
//! (`worker::SnapshotOut`) and a [`SnapshotWriter`] sends them; the worker
//! and the edge both start from them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, Producer};
use switchboard_domain::DomainState;
use switchboard_live::SnapshotCadence;

use crate::layout::TopicLayout;
use crate::transaction::{client_error, deliver, send, transactional_producer, CALL_TIMEOUT};
use crate::Error;

/// The snapshot format this version reads and writes. 2: states hold the
/// closed conversations the retention will forget, which a state of
/// version 1 lacks (a fold from it would part from a full fold). 3:
/// conversations hold their thread of messages, which version 2 lacks. 4:
/// postcard instead of JSON (versions up to 3 are JSON).
pub(crate) const SNAPSHOT_VERSION: u32 = 4;

/// The format of a record holding one piece of a snapshot: a [`PieceHead`],
/// then the piece's bytes. Joined, the pieces are a body of
/// [`SNAPSHOT_VERSION`]. (A record of version 4 held a whole body; one
/// written before the pieces is still read.)
pub(crate) const PIECES_VERSION: u32 = 5;

/// The most bytes of a snapshot's body one record holds: half of what a
/// record may (`layout::MAX_RECORD_BYTES`), so a record never nears the limit.
pub(crate) const PIECE_BYTES: usize = crate::layout::MAX_RECORD_BYTES / 2;

/// What each piece of a snapshot says of itself, so a reader joins only the
/// pieces of one snapshot, all of them, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PieceHead {
    /// [`PIECES_VERSION`]; first, where every version of the record has it.
    version: u32,
    /// The snapshot's journal offset (its `next_offset`): which snapshot
    /// the piece belongs to. Each snapshot's pieces are written in one
    /// transaction, so the newest first piece and the pieces it counts are
    /// of one snapshot; this and the CRC catch any that are not.
    snapshot: u64,
    /// The piece's place, from 0.
    index: u32,
    /// How many pieces the snapshot has.
    count: u32,
    /// CRC-32 of the whole body, checked once the pieces are joined.
    crc: u32,
}

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

/// The key of piece `index` of `partition`'s snapshot; the first piece's is
/// the partition's key, `<events>/<partition>`, as a whole snapshot's was.
pub(crate) fn piece_key(events: &str, partition: i32, index: u32) -> String {
    match index {
        0 => format!("{events}/{partition}"),
        _ => format!("{events}/{partition}/{index}"),
    }
}

/// The partition and piece index that `key` names, if it is a key of
/// `events`' snapshots. (Topic names hold no `/`.)
fn parse_key(events: &str, key: &[u8]) -> Option<(i32, u32)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(events)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let partition = parts.next()?.parse().ok()?;
    let index = match parts.next() {
        None => 0,
        Some(index) => index.parse().ok().filter(|&index| index > 0)?,
    };
    parts.next().is_none().then_some((partition, index))
}

/// How many pieces of at most `piece_bytes` a body of `len` bytes takes
/// (one, if it is empty).
pub(crate) fn piece_count(len: usize, piece_bytes: usize) -> u32 {
    u32::try_from(len.div_ceil(piece_bytes.max(1)).max(1)).expect("a snapshot has fewer than 2^32 pieces")
}

/// The records of a snapshot `body` taken at journal offset `snapshot`, in
/// pieces of at most `piece_bytes`, the first piece first.
pub(crate) fn pieces(body: &[u8], snapshot: u64, piece_bytes: usize) -> Vec<Vec<u8>> {
    let piece_bytes = piece_bytes.max(1);
    let count = piece_count(body.len(), piece_bytes);
    let crc = crc32fast::hash(body);
    (0..count)
        .map(|index| {
            let start = (index as usize * piece_bytes).min(body.len());
            let chunk = &body[start..(start + piece_bytes).min(body.len())];
            let head = PieceHead { version: PIECES_VERSION, snapshot, index, count, crc };
            let mut record = postcard::to_allocvec(&head).expect("a piece's head always encodes");
            record.extend_from_slice(chunk);
            record
        })
        .collect()
}

/// `partition`'s snapshot joined from the records of its piece keys (by
/// index), or `None` (logged) if a piece is missing, belongs to another
/// snapshot or is damaged, or the body is of another version: the
/// partition is then folded from the start. A record of version 4 is a
/// whole body, as written before the pieces.
pub(crate) fn join(partition: i32, records: &BTreeMap<u32, Vec<u8>>) -> Option<Snapshot> {
    let first = records.get(&0)?;
    if switchboard_live::snapshot_format(first) != Some(PIECES_VERSION) {
        return decode(partition, first);
    }
    match join_pieces(records) {
        Ok(body) => decode(partition, &body),
        Err(why) => {
            tracing::warn!(partition, why, "incomplete snapshot; folding all events");
            None
        }
    }
}

/// The body that the pieces of one snapshot (by index) make up, or why they
/// do not.
fn join_pieces(records: &BTreeMap<u32, Vec<u8>>) -> Result<Vec<u8>, &'static str> {
    let first = records.get(&0).ok_or("the first piece is missing")?;
    let (head, _) = postcard::take_from_bytes::<PieceHead>(first).map_err(|_| "an unreadable piece")?;
    let mut body = Vec::new();
    for index in 0..head.count {
        let record = records.get(&index).ok_or("a piece is missing")?;
        let (piece, bytes) = postcard::take_from_bytes::<PieceHead>(record).map_err(|_| "an unreadable piece")?;
        if piece != (PieceHead { index, ..head }) {
            return Err("a piece of another snapshot");
        }
        body.extend_from_slice(bytes);
    }
    if crc32fast::hash(&body) != head.crc {
        return Err("the joined pieces fail their checksum");
    }
    Ok(body)
}

/// One partition's snapshot, encoded on the worker's thread for the
/// [`SnapshotWriter`] to cut into pieces and send.
pub(crate) struct Encoded {
    /// The partition of `events` it is of.
    pub partition: i32,
    /// Its journal offset: the partition's `snapshot_at` since it was taken.
    pub taken_at: u64,
    /// Its body ([`SnapshotRecord`] in postcard).
    pub body: Vec<u8>,
    /// The most bytes of the body a piece holds ([`pieces`]).
    pub piece_bytes: usize,
    /// The piece keys a larger snapshot before it left over, to be emptied
    /// (a tombstone each) so that compaction drops them.
    pub stale: Range<u32>,
    /// The partition's snapshot bookkeeping to put back if it is not written.
    pub before: Before,
}

/// A partition's snapshot bookkeeping: when the last was taken, whether the
/// next is due, and how many piece keys the topic may hold for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Before {
    /// Journal offset of the last snapshot taken.
    pub snapshot_at: u64,
    /// The cadence as it was.
    pub cadence: SnapshotCadence,
    /// Piece keys that may hold a record.
    pub keys: u32,
}

/// A snapshot that was not written, handed back to the worker.
#[derive(Debug)]
pub(crate) struct Unwritten {
    /// The partition it is of.
    pub partition: i32,
    /// Its journal offset ([`Encoded::taken_at`]).
    pub taken_at: u64,
    /// The bookkeeping to put back.
    pub before: Before,
}

/// The snapshots of one turn of the worker, and how long taking them held
/// its decisions up.
pub(crate) struct Batch {
    /// The snapshots.
    pub snapshots: Vec<Encoded>,
    /// Milliseconds the worker spent taking them.
    pub taken_ms: u128,
}

/// The writer's pause after a batch that failed, doubled after each further
/// one up to [`LONGEST_PAUSE`]; a batch written starts again from here. It
/// stays busy meanwhile, so a broker in trouble is not sent a snapshot each
/// turn and the worker does not encode them for nothing.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause after failures.
const LONGEST_PAUSE: Duration = Duration::from_secs(60);
/// How long aborting a failed snapshot's transaction may take.
const ABORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The thread that sends snapshots, each in a transaction of a producer of
/// its own, so that the worker decides on while the pieces are sent and
/// acknowledged: for a partition of 20 MB, ~200 ms in the worker's own
/// transaction, during which no decision was taken. A transaction keeps a
/// snapshot's pieces together: a reader sees all of them or none.
///
/// One batch at a time: while one is being sent, [`SnapshotWriter::busy`]
/// says so and the worker takes no other. A snapshot not written, and the
/// rest of its batch untried, is handed back
/// ([`SnapshotWriter::take_unwritten`]); the writer aborts its transaction,
/// pauses, and writes the next with a new producer. Dropping the writer
/// sends what was handed over (unless a write fails), then stops the thread.
pub(crate) struct SnapshotWriter {
    queue: Option<mpsc::SyncSender<Batch>>,
    busy: Arc<AtomicBool>,
    unwritten: Arc<Mutex<Vec<Unwritten>>>,
    thread: Option<JoinHandle<()>>,
}

impl SnapshotWriter {
    /// Starts the writer with the transactional id `transactional_id`
    /// (which fences any earlier writer of that id).
    pub(crate) fn start(brokers: &str, topics: &TopicLayout, transactional_id: &str) -> Result<Self, Error> {
        let mut sender = Sender {
            producer: None,
            brokers: brokers.to_owned(),
            topics: topics.clone(),
            id: transactional_id.to_owned(),
            unwritten: Arc::new(Mutex::new(Vec::new())),
        };
        // Made here, so that a writer that cannot start says so at once.
        sender.producer = Some(sender.new_producer()?);
        let unwritten = sender.unwritten.clone();
        let (queue, batches) = mpsc::sync_channel::<Batch>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let done = busy.clone();
        let thread = std::thread::Builder::new()
            .name("kafka-snapshots".into())
            .spawn(move || {
                let mut pause = Duration::ZERO;
                while let Ok(batch) = batches.recv() {
                    if sender.send(batch) {
                        pause = Duration::ZERO;
                    } else {
                        pause = if pause.is_zero() { FIRST_PAUSE } else { (pause * 2).min(LONGEST_PAUSE) };
                        // Nothing is handed over while busy, so this only
                        // waits, or ends at once when the writer is dropped.
                        if let Err(mpsc::RecvTimeoutError::Disconnected) = batches.recv_timeout(pause) {
                            break;
                        }
                    }
                    done.store(false, Ordering::SeqCst);
                }
            })
            .expect("spawn the snapshot writer thread");
        Ok(SnapshotWriter { queue: Some(queue), busy, unwritten, thread: Some(thread) })
    }

    /// Whether a batch is still being sent (or the writer pauses after a failure).
    pub(crate) fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    /// Hands `batch` over to be sent; call only when not [`busy`](Self::busy).
    pub(crate) fn hand_over(&self, batch: Batch) {
        self.busy.store(true, Ordering::SeqCst);
        if let Some(queue) = &self.queue {
            // Not busy, so the queue is empty and this does not wait.
            let _ = queue.send(batch);
        }
    }

    /// The snapshots not written since the last call. Complete once the
    /// writer is no longer [`busy`](Self::busy).
    pub(crate) fn take_unwritten(&self) -> Vec<Unwritten> {
        std::mem::take(&mut *self.unwritten.lock().unwrap())
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread's side: its producer (made anew after a failure) and
/// where it hands back what it did not write.
struct Sender {
    producer: Option<BaseProducer>,
    brokers: String,
    topics: TopicLayout,
    id: String,
    unwritten: Arc<Mutex<Vec<Unwritten>>>,
}

impl Sender {
    /// Sends each snapshot of `batch` in a transaction of its own. After a
    /// failure the rest are handed back untried: a broker that failed one
    /// is likely to fail the next, and each try may wait for its timeouts.
    /// Returns whether all were written.
    fn send(&mut self, batch: Batch) -> bool {
        let started = Instant::now();
        let mut written = Vec::new();
        let mut snapshots = batch.snapshots.into_iter();
        let mut failed = None;
        for snapshot in snapshots.by_ref() {
            match self.write(&snapshot) {
                Ok(()) => written.push((snapshot.partition, snapshot.body.len())),
                Err(error) => {
                    let partition = snapshot.partition;
                    tracing::warn!(partition, %error, "writing a snapshot failed; handed back with the rest of its batch");
                    failed = Some(snapshot);
                    break;
                }
            }
        }
        if !written.is_empty() {
            let (taken_ms, sent_ms) = (batch.taken_ms, started.elapsed().as_millis());
            tracing::info!(?written, taken_ms, sent_ms, "snapshots written (partition, bytes)");
        }
        let all_written = failed.is_none();
        let unwritten = failed
            .into_iter()
            .chain(snapshots)
            .map(|Encoded { partition, taken_at, before, .. }| Unwritten { partition, taken_at, before });
        self.unwritten.lock().unwrap().extend(unwritten);
        all_written
    }

    /// A transactional producer of the writer's id, fencing any before it.
    fn new_producer(&self) -> Result<BaseProducer, Error> {
        transactional_producer(&self.brokers, &self.id, 5)
    }

    /// Sends `snapshot` with the producer, or a new one after a failure.
    fn write(&mut self, snapshot: &Encoded) -> Result<(), Error> {
        let producer = match self.producer.take() {
            Some(producer) => producer,
            None => self.new_producer()?,
        };
        match write(&producer, &self.topics, snapshot) {
            Ok(()) => {
                self.producer = Some(producer);
                Ok(())
            }
            Err(error) => {
                // Aborted, so that its open transaction does not hide what
                // is written after it from every reader until it times out;
                // the new producer's start fences it whatever state it is in.
                let _ = producer.abort_transaction(ABORT_TIMEOUT);
                Err(error)
            }
        }
    }
}

/// Sends `snapshot`, cut into pieces here rather than on the worker's
/// thread, in one transaction of `producer`.
fn write(producer: &BaseProducer, topics: &TopicLayout, snapshot: &Encoded) -> Result<(), Error> {
    let records = pieces(&snapshot.body, snapshot.taken_at, snapshot.piece_bytes);
    producer.begin_transaction().map_err(client_error("begin a snapshot transaction"))?;
    for (index, record) in (0..).zip(&records) {
        let key = piece_key(&topics.events, snapshot.partition, index);
        send(producer, &topics.snapshots, 0, key.as_bytes(), Some(record))?;
    }
    for index in snapshot.stale.clone() {
        let key = piece_key(&topics.events, snapshot.partition, index);
        send(producer, &topics.snapshots, 0, key.as_bytes(), None)?;
    }
    deliver(producer)?;
    producer.commit_transaction(CALL_TIMEOUT).map_err(client_error("commit a snapshot"))
}

/// What the snapshots topic holds for one partition.
pub(crate) struct Stored {
    /// Its newest snapshot, if one can be read.
    pub snapshot: Option<Snapshot>,
    /// One past the highest piece index whose key holds a record: the keys
    /// a smaller snapshot written next leaves over, to be emptied.
    pub keys: u32,
}

/// What the snapshots topic holds for each of `partitions` of
/// `topics.events` that has any, from one read of the topic. A partition
/// whose newest snapshot cannot be read, or is of another version, has none
/// (a full fold).
pub(crate) fn latest_snapshots(
    brokers: &str,
    topics: &TopicLayout,
    partitions: &[i32],
) -> Result<BTreeMap<i32, Stored>, Error> {
    let mut latest: BTreeMap<i32, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    for record in crate::journal::read_records(brokers, &topics.snapshots, 0, 0)? {
        let (key, value) = record?;
        let Some((partition, index)) = parse_key(&topics.events, &key) else { continue };
        if !partitions.contains(&partition) {
            continue;
        }
        let pieces = latest.entry(partition).or_default();
        // An empty value is a tombstone: the key no longer holds a piece.
        if value.is_empty() {
            pieces.remove(&index);
        } else {
            pieces.insert(index, value);
        }
    }
    Ok(latest
        .into_iter()
        .filter(|(_, pieces)| !pieces.is_empty())
        .map(|(partition, pieces)| {
            let keys = pieces.keys().next_back().map_or(0, |&last| last + 1);
            (partition, Stored { snapshot: join(partition, &pieces), keys })
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn by_index(records: Vec<Vec<u8>>) -> BTreeMap<u32, Vec<u8>> {
        (0..).zip(records).collect()
    }

    proptest! {
        #[test]
        fn a_body_cut_into_pieces_joins_back_whole(
            body in proptest::collection::vec(any::<u8>(), 0..2_000),
            piece_bytes in 1usize..300,
            snapshot in any::<u64>(),
        ) {
            let records = pieces(&body, snapshot, piece_bytes);
            prop_assert_eq!(records.len(), body.len().div_ceil(piece_bytes).max(1));
            for record in &records {
                prop_assert_eq!(switchboard_live::snapshot_format(record), Some(PIECES_VERSION));
                let (_, bytes) = postcard::take_from_bytes::<PieceHead>(record).unwrap();
                prop_assert!(bytes.len() <= piece_bytes);
            }
            prop_assert_eq!(join_pieces(&by_index(records)), Ok(body));
        }
    }

    #[test]
    fn pieces_missing_mixed_or_damaged_are_not_joined() {
        let body: Vec<u8> = (0..=255).collect();
        let whole = by_index(pieces(&body, 7, 100));
        assert_eq!(whole.len(), 3);

        let mut missing = whole.clone();
        missing.remove(&1);
        assert_eq!(join_pieces(&missing), Err("a piece is missing"));

        // The last piece of a later snapshot of the same size, over this one's.
        let mut mixed = whole.clone();
        mixed.insert(2, by_index(pieces(&body, 8, 100)).remove(&2).unwrap());
        assert_eq!(join_pieces(&mixed), Err("a piece of another snapshot"));

        let mut damaged = whole.clone();
        *damaged.get_mut(&1).unwrap().last_mut().unwrap() ^= 1;
        assert_eq!(join_pieces(&damaged), Err("the joined pieces fail their checksum"));

        let mut cut = whole;
        cut.get_mut(&2).unwrap().truncate(2);
        assert_eq!(join_pieces(&cut), Err("an unreadable piece"));
    }

    #[test]
    fn pieces_left_over_by_a_larger_snapshot_are_not_joined() {
        let larger: Vec<u8> = (0..=255).collect();
        let mut keys = by_index(pieces(&larger, 7, 100));
        let smaller = by_index(pieces(&larger[..150], 9, 100));
        keys.extend(smaller);
        assert_eq!(keys.len(), 3, "the third key still holds the larger one's piece");
        assert_eq!(join_pieces(&keys), Ok(larger[..150].to_vec()));
    }

    #[test]
    fn a_key_names_its_partition_and_piece_only_under_its_events_topic() {
        assert_eq!(piece_key("events", 3, 0), "events/3");
        assert_eq!(piece_key("events", 3, 2), "events/3/2");
        for index in [0, 1, 17] {
            assert_eq!(parse_key("events", piece_key("events", 3, index).as_bytes()), Some((3, index)));
        }
        for other in ["events2/3", "events/x", "events/3/0", "events/3/1/1", "events/3/", "events", "other/3/1"] {
            assert_eq!(parse_key("events", other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn a_whole_record_written_before_the_pieces_is_read() {
        let record = SnapshotRecord::<BTreeMap<String, (DomainState, Vec<String>)>> {
            version: SNAPSHOT_VERSION,
            resume_at: 5,
            next_offset: 9,
            domains: BTreeMap::from([("acme".to_owned(), (DomainState::default(), vec!["c-1".to_owned()]))]),
        };
        let body = postcard::to_allocvec(&record).unwrap();
        let read = join(0, &BTreeMap::from([(0, body.clone())])).expect("a whole version 4 record");
        assert_eq!((read.resume_at, read.next_offset), (5, 9));
        assert_eq!(read.domains["acme"].1, ["c-1"]);

        // and the same body in pieces reads the same
        let joined = join(0, &by_index(pieces(&body, 9, 10))).expect("joined");
        assert_eq!((joined.resume_at, joined.next_offset, joined.domains.len()), (5, 9, 1));
    }
}
