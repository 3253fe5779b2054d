//! Snapshots: a cache of each shard's domain states, so that start-up folds
//! only the journal's tail instead of its whole history.
//!
//! A snapshot file holds the domains of one shard (of a given shard count)
//! and the journal offset it *covers*: every event of those domains at an
//! offset below `covered` is folded in, and none at or above it.
//!
//! The snapshot thread keeps its own replica of each shard's domains, folded
//! from the shard's durable events: every writer hands over each group it
//! appended, with its first offset, once it is durable. To take a snapshot
//! the shard only hands a barrier job to its writer; the writer completes it
//! once everything decided before is durable and tells the covered offset
//! (see [`crate::writer::Done`]), the snapshot thread folds what it holds
//! below that offset into the replica and writes the replica. So a snapshot
//! never holds an event the journal does not, and the shard never stops to
//! copy its states (a copy of a large state took ~100 ms of the shard's
//! thread, a pause every caller of the shard waited out).
//!
//! Files live in `<data_dir>/snapshots/` (the journal ignores directories
//! and any name not ending in `.log`), are named
//! `shard-<i>-of-<n>-at-<covered>.snapshot` and are written atomically
//! (temporary file synced every MiB as it is written, fsync, rename, fsync
//! of the directory). Content: an 8-byte magic, the body's length (u64 LE)
//! and CRC-32 (u32 LE), then the body in postcard, serde's data model in a
//! compact binary form, its first field the format. The last [`KEEP`] files
//! of each shard are kept.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use actix::Addr;
use serde::{Deserialize, Serialize};
use switchboard_domain::{DomainState, Envelope};

use crate::error::SnapshotError;
use crate::shard::{DomainEntry, ShardActor, TakeSnapshot};
use crate::Published;

/// The subdirectory of the data directory that holds the snapshots.
pub(crate) const DIR: &str = "snapshots";
/// How long the thread pauses after each round of messages.
const GATHER: Duration = Duration::from_millis(10);
/// Snapshots kept per shard: the newest, and one to fall back on if it is damaged.
pub(crate) const KEEP: usize = 2;
const MAGIC: &[u8; 8] = b"SWBSNAP1";
const HEADER_LEN: usize = MAGIC.len() + 8 + 4;
/// Version of the body; a file of another version is skipped (a full fold is always possible).
/// 2: states hold the closed conversations the retention will forget; a
/// state of format 1 lacks them, so a fold from it would part from a full
/// fold (and from `replay`) once they are due. 3: conversations hold
/// their thread of messages, which a state of format 2 lacks. 4: the body
/// in postcard; formats 1 to 3 are JSON, read now only for their format.
const FORMAT: u32 = 4;
const SUFFIX: &str = ".snapshot";
const TEMP_SUFFIX: &str = ".snapshot.tmp";

/// When a snapshot is worth writing: once the log has grown by at least as
/// many bytes as the last snapshot held (on top of whatever count of events
/// the caller asks for).
///
/// A snapshot costs about its size to write, and what it buys is a
/// recovery that reads only the log written since. With a fixed count of
/// events between snapshots, each one cost more as the state grew (closed
/// conversations are kept for the retention, an hour by default) while it
/// spared the same log, until writing snapshots took the snapshot thread's
/// whole time. Under this rule, writing snapshots costs at most what
/// writing the log does however large the state grows, and a recovery
/// reads at most as much log past its snapshot as the snapshot itself.
#[derive(Debug, Clone, Default)]
pub struct SnapshotCadence {
    /// Bytes of log written since the last snapshot.
    grown: u64,
    /// The last snapshot's size in bytes (0 before the first).
    last: u64,
}

impl SnapshotCadence {
    /// Counts `bytes` of log just written.
    pub fn grew(&mut self, bytes: u64) {
        self.grown = self.grown.saturating_add(bytes);
    }

    /// Whether the log has grown enough since the last snapshot for another.
    pub fn allows(&self) -> bool {
        self.grown >= self.last
    }

    /// Records a snapshot of `bytes` just written.
    pub fn written(&mut self, bytes: u64) {
        self.grown = 0;
        self.last = bytes;
    }
}

/// A shard's domains, all durable up to `covered`: what a file holds.
pub(crate) struct Taken<'a> {
    pub(crate) shard: usize,
    pub(crate) covered: u64,
    pub(crate) taken_at_ms: i64,
    pub(crate) domains: Vec<&'a DomainEntry>,
}

/// What the snapshot thread is told.
pub(crate) enum ToSnapshots {
    /// A shard's group of events, durable at offsets `first..`; `bytes` is
    /// what their records hold.
    Durable { shard: usize, first: u64, events: Published, bytes: u64 },
    /// Write this shard's snapshot as of `covered` (unless a newer one is
    /// already written): every event below it was handed over before.
    Due { shard: usize, covered: u64, taken_at_ms: i64 },
    /// Write what is queued, then end.
    Finish,
}

/// A snapshot's body: written with borrowed domains ([`DomainOut`]), read
/// into owned ones ([`LoadedDomain`]). One type for both, because postcard
/// knows fields only by their order.
#[derive(Serialize, Deserialize)]
struct Body<D> {
    /// First, so that a body of another format is known before the rest is decoded.
    format: u32,
    shards: usize,
    shard: usize,
    covered: u64,
    taken_at_ms: i64,
    domains: Vec<D>,
}

/// A domain as written: [`LoadedDomain`], borrowed.
#[derive(Serialize)]
struct DomainOut<'a> {
    state: &'a DomainState,
    recent: Vec<(&'a str, Vec<&'a Envelope>)>,
}

/// A domain read back from a snapshot file.
#[derive(Deserialize)]
pub(crate) struct LoadedDomain {
    pub(crate) state: DomainState,
    pub(crate) recent: Vec<(String, Vec<Envelope>)>,
}

/// What a snapshot's file name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Name {
    pub(crate) shards: usize,
    pub(crate) shard: usize,
    pub(crate) covered: u64,
}

impl Name {
    fn file_name(self) -> String {
        format!("shard-{:04}-of-{:04}-at-{:020}{SUFFIX}", self.shard, self.shards, self.covered)
    }

    fn parse(file_name: &str) -> Option<Name> {
        let rest = file_name.strip_prefix("shard-")?.strip_suffix(SUFFIX)?;
        let (shard, rest) = rest.split_once("-of-")?;
        let (shards, covered) = rest.split_once("-at-")?;
        let name = Name { shards: shards.parse().ok()?, shard: shard.parse().ok()?, covered: covered.parse().ok()? };
        (name.shard < name.shards).then_some(name)
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io { action, path: path.to_path_buf(), source }
}

/// What [`list`] finds in the snapshot directory.
#[derive(Default)]
struct Listing {
    snapshots: Vec<(Name, PathBuf)>,
    /// Temporary files a crash left behind.
    temps: Vec<PathBuf>,
}

/// The snapshots in `dir` (the snapshot directory), by name; a missing
/// directory holds none.
fn list(dir: &Path) -> Result<Listing, SnapshotError> {
    let mut listing = Listing::default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
        Err(e) => return Err(io_error("list", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if file_name.ends_with(TEMP_SUFFIX) {
            listing.temps.push(entry.path());
        } else if let Some(name) = Name::parse(&file_name) {
            listing.snapshots.push((name, entry.path()));
        }
    }
    Ok(listing)
}

/// Writes `taken` as shard `taken.shard` of `shards` into `dir` atomically
/// and returns its path and size in bytes. Serialization happens here, on
/// the snapshot thread, not on the shard's.
fn write(dir: &Path, shards: usize, taken: &Taken<'_>) -> Result<(PathBuf, u64), SnapshotError> {
    let name = Name { shards, shard: taken.shard, covered: taken.covered };
    let path = dir.join(name.file_name());
    let body = Body {
        format: FORMAT,
        shards,
        shard: taken.shard,
        covered: taken.covered,
        taken_at_ms: taken.taken_at_ms,
        domains: taken
            .domains
            .iter()
            .map(|d| DomainOut {
                state: &d.state,
                recent: d.recent.iter().map(|(id, events)| (id, events.iter().map(|e| &**e).collect())).collect(),
            })
            .collect(),
    };
    let temp = dir.join(format!("{}.tmp", name.file_name()));
    let mut file = File::create(&temp).map_err(io_error("create", &temp))?;
    // The body is serialized straight into the file behind a placeholder
    // header, then the header is written over it: building the body in
    // memory first cost a buffer as large as the snapshot (tens to hundreds
    // of MB at a high rate), the kernel's zeroing of its pages and a copy.
    file.write_all(&[0; HEADER_LEN]).map_err(io_error("write", &temp))?;
    let (mut file, len, crc) = encode_body(&body, file).map_err(|failure| match failure {
        EncodeFailure::Write(error) => io_error("write", &temp)(error),
        EncodeFailure::Encoding(source) => SnapshotError::Encoding { path: path.clone(), source },
    })?;
    file.seek(io::SeekFrom::Start(0)).map_err(io_error("seek", &temp))?;
    file.write_all(&header(len, crc)).map_err(io_error("write", &temp))?;
    // Durable content before the rename makes the name visible: a crash
    // leaves the old files, or the whole new one, never a name on torn bytes.
    file.sync_all().map_err(io_error("fsync", &temp))?;
    drop(file);
    fs::rename(&temp, &path).map_err(io_error("rename", &temp))?;
    sync_dir(dir)?;
    Ok((path, HEADER_LEN as u64 + len))
}

/// Why a body could not be encoded into its file.
#[derive(Debug)]
enum EncodeFailure {
    Write(io::Error),
    Encoding(postcard::Error),
}

/// Encodes `body` into `file` where it stands, synced in steps; returns the
/// file and the body's length and checksum.
fn encode_body(body: &impl Serialize, file: File) -> Result<(File, u64, u32), EncodeFailure> {
    // Buffered before it is summed, so the checksum runs over whole buffers,
    // not the few bytes at a time the encoder writes.
    let mut out = io::BufWriter::with_capacity(1 << 16, Summed::new(SyncedInSteps::new(file)));
    if let Err(source) = postcard::to_io(body, &mut out) {
        // postcard reports a failed write without its cause, which the
        // summing writer kept.
        return Err(match out.get_mut().failed.take() {
            Some(error) => EncodeFailure::Write(error),
            None => EncodeFailure::Encoding(source),
        });
    }
    let summed = out.into_inner().map_err(|error| EncodeFailure::Write(error.into_error()))?;
    Ok(summed.finish())
}

/// A writer that counts and checksums the bytes it passes on: the body's
/// length and CRC-32 for the header, known only once the body is written.
/// It also keeps the last write error, which the encoder drops.
struct Summed {
    inner: SyncedInSteps,
    len: u64,
    crc: crc32fast::Hasher,
    failed: Option<io::Error>,
}

impl Summed {
    fn new(inner: SyncedInSteps) -> Self {
        Summed { inner, len: 0, crc: crc32fast::Hasher::new(), failed: None }
    }

    /// The file with everything written to it, and the body's length and checksum.
    fn finish(self) -> (File, u64, u32) {
        (self.inner.file, self.len, self.crc.finalize())
    }
}

impl Write for Summed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.write(buf) {
            Ok(written) => {
                // An error retried past (`Interrupted`) is no cause of a later failure.
                self.failed = None;
                self.len += written as u64;
                self.crc.update(&buf[..written]);
                Ok(written)
            }
            Err(error) => {
                let kind = error.kind();
                self.failed = Some(error);
                Err(kind.into())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// How many bytes of a snapshot may be written before they are synced.
const SYNC_STEP: u64 = 1 << 20;

/// A snapshot file that syncs its data every [`SYNC_STEP`] bytes as it is
/// written, instead of all at once at the end.
///
/// The journal's fsyncs share the disk with the snapshot: synced in one go,
/// a snapshot of up to 19 MB filled the device's queue, and journal fsyncs
/// issued meanwhile waited behind it (9 to 24 ms at 3000 lifecycles/s,
/// every decision of those milliseconds with them; docs/performance.md,
/// "Twelfth round"). Synced in steps, a journal fsync waits behind at most
/// one step.
struct SyncedInSteps {
    file: File,
    unsynced: u64,
    /// Steps synced so far.
    synced_steps: u64,
}

impl SyncedInSteps {
    fn new(file: File) -> Self {
        SyncedInSteps { file, unsynced: 0, synced_steps: 0 }
    }
}

impl Write for SyncedInSteps {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A full step is synced before anything more is written, so that an
        // error means, as `Write` promises, that nothing was written.
        if self.unsynced >= SYNC_STEP {
            self.file.sync_data()?;
            self.unsynced = 0;
            self.synced_steps += 1;
        }
        // Never past the step's end, so that a large write is synced in
        // steps too.
        let room = usize::try_from(SYNC_STEP - self.unsynced).unwrap_or(usize::MAX);
        let written = self.file.write(&buf[..buf.len().min(room)])?;
        self.unsynced += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A snapshot file's header: magic, then the body's length and checksum.
fn header(len: u64, crc: u32) -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&len.to_le_bytes());
    header[16..].copy_from_slice(&crc.to_le_bytes());
    header
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("fsync", dir))
}

/// Reads and checks the snapshot at `path`, named `name`: magic, length,
/// checksum, format, that the body says what the name says, and that every
/// domain belongs to the shard (`shard_of`) exactly once.
pub(crate) fn load(
    path: &Path,
    name: Name,
    shard_of: fn(&str, usize) -> usize,
) -> Result<Vec<LoadedDomain>, SnapshotError> {
    let damaged = |reason: String| SnapshotError::Damaged { path: path.to_path_buf(), reason };
    let bytes = fs::read(path).map_err(io_error("read", path))?;
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(damaged("no snapshot header".into()));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let body = &bytes[HEADER_LEN..];
    if len != body.len() as u64 {
        return Err(damaged(format!("the header says {len} bytes of body, the file has {}", body.len())));
    }
    if crc32fast::hash(body) != crc {
        return Err(damaged("checksum mismatch".into()));
    }
    let format = body_format(body).ok_or_else(|| damaged("no format at the body's start".into()))?;
    if format != FORMAT {
        return Err(SnapshotError::OtherFormat { path: path.to_path_buf(), format, reads: FORMAT });
    }
    let body: Body<LoadedDomain> =
        postcard::from_bytes(body).map_err(|source| SnapshotError::Encoding { path: path.to_path_buf(), source })?;
    if (body.shards, body.shard, body.covered) != (name.shards, name.shard, name.covered) {
        return Err(damaged(format!(
            "the body says shard {} of {} at {}, unlike its name",
            body.shard, body.shards, body.covered
        )));
    }
    let mut seen = BTreeSet::new();
    for domain in &body.domains {
        let domain = &domain.state.domain;
        if shard_of(domain, name.shards) != name.shard || !seen.insert(domain.as_str()) {
            return Err(damaged(format!("domain {domain:?} is not this shard's, or appears twice")));
        }
    }
    Ok(body.domains)
}

/// Reads and checks the snapshot file at `path` (header, checksum, format,
/// that its body and its domains match its name): the domain states it
/// holds, for tools and tests that look into a data directory.
pub fn read_states(path: &Path) -> Result<Vec<DomainState>, SnapshotError> {
    let name =
        path.file_name().and_then(|name| name.to_str()).and_then(Name::parse).ok_or_else(|| {
            SnapshotError::Damaged { path: path.to_path_buf(), reason: "not a snapshot's name".into() }
        })?;
    let domains = load(path, name, crate::engine::shard_of)?;
    Ok(domains.into_iter().map(|domain| domain.state).collect())
}

/// The format a snapshot's body says it is in: its first field, in
/// postcard, or in JSON for the formats up to 3 (whose bodies open with
/// `{`, which as a postcard varint would be format 123). Kafka's snapshot
/// records are laid out the same way (their JSON called it `version`).
pub fn body_format(body: &[u8]) -> Option<u32> {
    #[derive(Deserialize)]
    struct Json {
        #[serde(alias = "version")]
        format: u32,
    }
    if body.first() == Some(&b'{') {
        return serde_json::from_slice::<Json>(body).ok().map(|json| json.format);
    }
    postcard::take_from_bytes::<u32>(body).ok().map(|(format, _)| format)
}

/// A set of snapshots to start from: one per shard of one shard count.
pub(crate) struct Chosen {
    /// The shard count the files were written with.
    pub(crate) shards: usize,
    /// Per shard index: the file, its covered offset and its domains.
    pub(crate) files: Vec<(PathBuf, u64, Vec<LoadedDomain>)>,
}

/// Picks the newest complete set of valid snapshots in `data_dir` whose
/// covered offsets the journal (ending at `journal_end`) holds: for each
/// shard count found, the newest valid file of every shard index, falling
/// back to older ones; the count whose set starts the fold latest wins.
/// `None` (a full fold) if no count has a valid file for every index.
/// Every file passed over is added to `rejected`, with why, and logged.
/// Also removes temporary files a crash left behind.
pub(crate) fn choose(
    data_dir: &Path,
    journal_end: u64,
    shard_of: fn(&str, usize) -> usize,
    rejected: &mut Vec<(PathBuf, SnapshotError)>,
) -> Option<Chosen> {
    let dir = data_dir.join(DIR);
    let Listing { snapshots: found, temps } = match list(&dir) {
        Ok(listing) => listing,
        Err(e) => {
            tracing::warn!(error = %e, "snapshots unreadable: folding the whole journal");
            rejected.push((dir, e));
            return None;
        }
    };
    for temp in temps {
        // Runs under the journal's lock, so no writer of ours is using it.
        let _ = fs::remove_file(temp);
    }
    let mut layouts: BTreeMap<usize, Vec<Vec<(Name, PathBuf)>>> = BTreeMap::new();
    for (name, path) in found {
        if name.covered > journal_end {
            let e = SnapshotError::BeyondJournal { path: path.clone(), covered: name.covered, journal_end };
            tracing::warn!(error = %e, "snapshot skipped");
            rejected.push((path, e));
            continue;
        }
        let layout = layouts.entry(name.shards).or_insert_with(|| vec![Vec::new(); name.shards]);
        layout[name.shard].push((name, path));
    }
    // The best case for each count first: its newest file of every index.
    let mut order: Vec<(u64, usize)> = layouts
        .iter_mut()
        .filter(|(_, per_shard)| per_shard.iter().all(|files| !files.is_empty()))
        .map(|(&shards, per_shard)| {
            for files in per_shard.iter_mut() {
                files.sort_unstable_by_key(|(name, _)| std::cmp::Reverse(name.covered));
            }
            (per_shard.iter().map(|files| files[0].0.covered).min().unwrap_or(0), shards)
        })
        .collect();
    order.sort_unstable_by(|a, b| b.cmp(a));
    'layouts: for (_, shards) in order {
        let mut files = Vec::new();
        for candidates in layouts.remove(&shards).unwrap_or_default() {
            let mut loaded = None;
            for (name, path) in candidates {
                match load(&path, name, shard_of) {
                    Ok(domains) => {
                        loaded = Some((path, name.covered, domains));
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "snapshot skipped: falling back to an older one");
                        rejected.push((path, e));
                    }
                }
            }
            match loaded {
                Some(file) => files.push(file),
                None => continue 'layouts,
            }
        }
        return Some(Chosen { shards, files });
    }
    None
}

/// Keeps the newest [`KEEP`] snapshots of shard `shard` of `shards`, and
/// once every shard of this count has one, removes those of other counts
/// (written before the shard count changed).
fn prune(dir: &Path, shards: usize, shard: usize) -> Result<(), SnapshotError> {
    let mut found = list(dir)?.snapshots;
    found.sort_unstable_by_key(|(name, _)| std::cmp::Reverse(name.covered));
    let complete = (0..shards).all(|i| found.iter().any(|(n, _)| n.shards == shards && n.shard == i));
    let mut kept = 0;
    for (name, path) in found {
        let obsolete = if name.shards == shards && name.shard == shard {
            kept += 1;
            kept > KEEP
        } else {
            name.shards != shards && complete
        };
        if obsolete {
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
        }
    }
    Ok(())
}

/// How the snapshot thread runs.
pub(crate) struct Settings {
    /// The data directory; snapshots go to its [`DIR`].
    pub(crate) data_dir: PathBuf,
    /// The engine's shard count.
    pub(crate) shards: usize,
    /// `EngineOptions::snapshot_every`.
    pub(crate) every: u64,
    /// Per shard, the covered offset of its newest snapshot of this shard
    /// count, if it has one.
    pub(crate) latest: Vec<Option<u64>>,
    /// The journal's durable end, kept by the writers.
    pub(crate) durable_end: Arc<AtomicU64>,
    /// Each shard's domains as recovered: where its replica starts.
    pub(crate) replicas: Vec<BTreeMap<String, DomainEntry>>,
    /// `EngineOptions::idempotency_window`, for the replicas' domains.
    pub(crate) window: usize,
}

/// The snapshot thread's copy of one shard's domains.
struct Replica {
    domains: BTreeMap<String, DomainEntry>,
    /// Durable events not yet folded in, by journal offset.
    pending: VecDeque<(u64, Arc<Envelope>)>,
    /// Set when an event would not apply: no more snapshots of this shard
    /// until a restart (the journal stays the record).
    broken: bool,
}

impl Replica {
    /// Folds in the pending events below `covered`.
    fn catch_up(&mut self, covered: u64, window: usize) {
        while self.pending.front().is_some_and(|(at, _)| *at < covered) {
            let (at, envelope) = self.pending.pop_front().expect("checked above");
            if self.broken {
                continue;
            }
            if let Err(violation) = DomainEntry::fold_logged(&mut self.domains, envelope, window) {
                tracing::error!(offset = at, %violation, "snapshot replica broken: no more snapshots of this shard until a restart");
                self.broken = true;
            }
        }
    }
}

/// Starts the thread that writes the snapshots the shards hand over.
///
/// A shard hands one over every `every` events it decides; the thread
/// writes it only if the journal has grown by as many bytes as that
/// shard's last snapshot held ([`SnapshotCadence`]), and otherwise only
/// folds its replica up to it. The last one a shard hands over before the
/// engine stops is written in any case.
///
/// Besides writing, it keeps the fold start bounded when a shard is idle:
/// recovery reads from the oldest covered offset among the shards, and a
/// shard that decides nothing never reaches `every` events. So whenever a
/// shard's newest snapshot lags the journal's end by `every × shards`
/// records (or it has none), and its cadence allows one, the thread asks
/// it for one ([`TakeSnapshot`]); the writer gives an idle shard's snapshot
/// the journal's current end.
pub(crate) fn spawn(
    settings: Settings,
    receiver: mpsc::Receiver<ToSnapshots>,
    shards: Vec<Addr<ShardActor>>,
) -> JoinHandle<()> {
    thread::Builder::new()
        .name("snapshots".into())
        .spawn(move || {
            lower_priority();
            snapshot_loop(settings, &receiver, &shards)
        })
        .expect("the OS refused to start the snapshot thread")
}

/// The snapshot thread's nice value, the lowest priority. Its work can
/// wait (it folds its replica behind the shards and now and then encodes
/// and writes a snapshot); the HTTP workers', the shards' and their
/// writers' cannot. At the default priority, on two cores, a snapshot's
/// tens of milliseconds of encoding took a core from them, and the offers'
/// latency rose with it (docs/performance.md, "Eighteenth round").
#[cfg(target_os = "linux")]
const NICE: i32 = 19;

/// Lowers the calling thread's priority to `NICE` (on Linux, which keeps a
/// nice value per thread, so no other thread of the engine is affected).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE) {
        tracing::warn!(error = %e, "the snapshot thread keeps the default priority");
    }
}

/// A snapshot a shard handed over: its covered offset and when it was taken.
#[derive(Clone, Copy)]
struct Handed {
    covered: u64,
    taken_at_ms: i64,
}

fn snapshot_loop(mut settings: Settings, receiver: &mpsc::Receiver<ToSnapshots>, shards: &[Addr<ShardActor>]) {
    let dir = settings.data_dir.join(DIR);
    let mut dir_ready = false;
    let mut asked = vec![false; settings.shards];
    let mut cadences = vec![SnapshotCadence::default(); settings.shards];
    // Per shard, the newest snapshot handed over and not written (its
    // replica stands at it), written when the engine stops.
    let mut deferred: Vec<Option<Handed>> = vec![None; settings.shards];
    let lag_limit = settings.every.saturating_mul(settings.shards as u64);
    let mut replicas: Vec<Replica> = std::mem::take(&mut settings.replicas)
        .into_iter()
        .map(|domains| Replica { domains, pending: VecDeque::new(), broken: false })
        .collect();
    while let Ok(first) = receiver.recv() {
        // Only the newest of each shard is worth writing: the older ones
        // queued behind a slow disk would be deleted right after.
        let mut newest: BTreeMap<usize, Handed> = BTreeMap::new();
        // Per shard, the log's growth after its newest Due of this round:
        // appended after that snapshot, so growth towards the next one,
        // which writing this one would otherwise wipe.
        let mut after_newest = vec![0_u64; settings.shards];
        let mut finish = false;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                ToSnapshots::Finish => finish = true,
                ToSnapshots::Durable { shard, first, events, bytes } => {
                    replicas[shard].pending.extend((first..).zip(events.iter().cloned()));
                    // A recovery folds every shard's records past the oldest snapshot.
                    cadences.iter_mut().for_each(|cadence| cadence.grew(bytes));
                    after_newest.iter_mut().for_each(|after| *after += bytes);
                }
                ToSnapshots::Due { shard, covered, taken_at_ms } => {
                    asked[shard] = false;
                    if newest.get(&shard).is_none_or(|newer| newer.covered < covered) {
                        newest.insert(shard, Handed { covered, taken_at_ms });
                        after_newest[shard] = 0;
                    }
                }
            }
            next = receiver.try_recv().ok();
        }
        if finish {
            for (shard, handed) in deferred.iter_mut().enumerate() {
                if let Some(handed) = handed.take() {
                    newest.entry(shard).or_insert(handed);
                }
            }
        }
        for (shard, Handed { covered, taken_at_ms }) in newest {
            if settings.latest[shard].is_some_and(|latest| latest >= covered) {
                continue; // Nothing new since the last one.
            }
            let replica = &mut replicas[shard];
            replica.catch_up(covered, settings.window);
            if replica.broken {
                continue;
            }
            if !finish && !cadences[shard].allows() {
                deferred[shard] = Some(Handed { covered, taken_at_ms });
                continue;
            }
            deferred[shard] = None;
            let taken = Taken { shard, covered, taken_at_ms, domains: replica.domains.values().collect() };
            if !dir_ready {
                match ensure_dir(&settings.data_dir, &dir) {
                    Ok(()) => dir_ready = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "snapshot not written; the journal alone stays the record");
                        continue;
                    }
                }
            }
            let started = Instant::now();
            match write(&dir, settings.shards, &taken).and_then(|written| {
                prune(&dir, settings.shards, shard)?;
                Ok(written)
            }) {
                Ok((path, bytes)) => {
                    settings.latest[shard] = Some(taken.covered);
                    cadences[shard].written(bytes);
                    cadences[shard].grew(after_newest[shard]);
                    tracing::info!(path = %path.display(), covered = taken.covered, domains = taken.domains.len(),
                        bytes, elapsed_ms = started.elapsed().as_millis() as u64, "snapshot written");
                }
                // A cache that could not be written: the journal still holds everything.
                Err(e) => tracing::warn!(error = %e, "snapshot not written; the journal alone stays the record"),
            }
        }
        if finish {
            return;
        }
        let end = settings.durable_end.load(Ordering::SeqCst);
        for (shard, addr) in shards.iter().enumerate() {
            let lagging = settings.latest[shard].is_none_or(|covered| end.saturating_sub(covered) >= lag_limit);
            if lagging && !asked[shard] && cadences[shard].allows() {
                asked[shard] = true;
                // do_send ignores the mailbox's bound: this thread never waits on a busy shard.
                addr.do_send(TakeSnapshot);
            }
        }
        // Nothing above is urgent: between snapshots the replica only queues
        // the durable events. Pausing lets the next round take the appends of
        // that time in one wake-up instead of one each (~1,000 a second at
        // 2000 lifecycles/s, each also a futex call of the writer's).
        thread::sleep(GATHER);
    }
}

/// Creates the snapshot directory, durably: its entry in the data directory
/// is fsync'd, or a crash could lose the directory with files renamed into it.
fn ensure_dir(data_dir: &Path, dir: &Path) -> Result<(), SnapshotError> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(io_error("create", dir))?;
        sync_dir(data_dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_in_zero(_: &str, _: usize) -> usize {
        0
    }

    fn entries(domains: &[&str]) -> Vec<DomainEntry> {
        domains
            .iter()
            .map(|d| {
                let mut entry = DomainEntry::new(d, 10);
                entry.state.last_sequence = 3;
                let envelope = Arc::new(Envelope {
                    domain: (*d).into(),
                    sequence: 3,
                    command_id: "c".into(),
                    ..Default::default()
                });
                entry.recent.insert("c".into(), vec![envelope]);
                entry
            })
            .collect()
    }

    fn taken(covered: u64, domains: &[DomainEntry]) -> Taken<'_> {
        Taken { shard: 0, covered, taken_at_ms: 1, domains: domains.iter().collect() }
    }

    #[test]
    fn names_round_trip_and_strays_are_ignored() {
        let name = Name { shards: 2, shard: 1, covered: 42 };
        assert_eq!(name.file_name(), "shard-0001-of-0002-at-00000000000000000042.snapshot");
        assert_eq!(Name::parse(&name.file_name()), Some(name));
        for stray in
            ["LOCK", "shard-2-of-2-at-1.snapshot", "shard-0-of-1-at-x.snapshot", "shard-0-of-1-at-1.snapshot.tmp"]
        {
            assert_eq!(Name::parse(stray), None, "{stray}");
        }
    }

    #[test]
    fn a_snapshot_file_is_synced_every_step_as_it_is_written_and_keeps_every_byte() {
        // given a file written through the stepped writer, in the buffer's chunks
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stepped");
        let mut out = io::BufWriter::with_capacity(1 << 16, SyncedInSteps::new(File::create(&path).unwrap()));
        let body: Vec<u8> = (0..SYNC_STEP * 5 / 2).map(|i| (i % 251) as u8).collect();

        // when two and a half steps' worth is written, in small writes and in one large one
        out.write_all(&body[..1000]).unwrap();
        out.write_all(&body[1000..]).unwrap();
        let stepped = out.into_inner().map_err(io::IntoInnerError::into_error).unwrap();

        // then the two full steps were synced as they were written, and the file holds the body whole
        assert_eq!((stepped.synced_steps, stepped.unsynced), (2, SYNC_STEP / 2));
        assert_eq!(fs::read(&path).unwrap(), body);
    }

    #[test]
    fn a_bodys_format_is_read_from_postcard_and_from_the_json_of_earlier_formats() {
        assert_eq!(body_format(&postcard::to_allocvec(&(FORMAT, "rest")).unwrap()), Some(FORMAT));
        assert_eq!(body_format(br#"{"format":3,"shards":1}"#), Some(3));
        assert_eq!(body_format(br#"{"version":3,"resume_at":0}"#), Some(3), "Kafka's records said version");
        assert_eq!(body_format(b""), None);
        assert_eq!(body_format(b"{damaged"), None);
    }

    #[test]
    fn a_failed_write_is_reported_with_its_cause() {
        // given a device that is always full
        let full = File::options().write(true).open("/dev/full").unwrap();

        // when a body larger than the write buffer is encoded into it
        let body = vec![7u8; 1 << 17];
        let failure = encode_body(&body, full).unwrap_err();

        // then the failure is the disk's own error (ENOSPC), not the encoder's, nor only its kind
        const ENOSPC: i32 = 28;
        assert!(matches!(&failure, EncodeFailure::Write(e) if e.raw_os_error() == Some(ENOSPC)), "{failure:?}");
    }

    #[test]
    fn a_snapshot_larger_than_a_sync_step_reads_back_whole() {
        // given a domain whose idempotency window holds a few MiB of events
        let mut domain = DomainEntry::new("big", 3_000);
        let event = Arc::new(Envelope { domain: "big".into(), command_id: "x".repeat(1000), ..Default::default() });
        for i in 0..3_000 {
            domain.recent.insert(format!("command-{i}"), vec![event.clone()]);
        }
        let domains = [domain];

        // when it is written
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = write(dir.path(), 1, &taken(7, &domains)).unwrap();

        // then it spans several steps, and reads back with every event
        assert!(size > 2 * SYNC_STEP, "{size} bytes");
        let loaded = load(&path, Name { shards: 1, shard: 0, covered: 7 }, all_in_zero).unwrap();
        assert_eq!(loaded[0].recent.len(), 3_000);
        assert!(loaded[0].recent.iter().all(|(_, events)| events[0].command_id.len() == 1000));
    }

    #[test]
    fn a_written_snapshot_reads_back_and_any_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (path, size) = write(dir.path(), 1, &taken(7, &entries(&["a", "b"]))).unwrap();
        assert_eq!(size, fs::metadata(&path).unwrap().len(), "the size told is the file's");
        let name = Name { shards: 1, shard: 0, covered: 7 };
        let loaded = load(&path, name, all_in_zero).unwrap();
        assert_eq!(loaded.iter().map(|d| d.state.domain.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(loaded[0].recent[0].1[0].sequence, 3);
        // and the states read back for tools too, from a file named as a snapshot only
        let states = read_states(&path).unwrap();
        assert_eq!(states.iter().map(|s| s.domain.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let renamed = dir.path().join("copy");
        fs::copy(&path, &renamed).unwrap();
        assert!(read_states(&renamed).unwrap_err().to_string().contains("not a snapshot's name"));

        let bytes = fs::read(&path).unwrap();
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        for (damage, expected) in [
            (bytes[..bytes.len() - 1].to_vec(), "bytes of body"),
            (flipped, "checksum"),
            (b"not a snapshot".to_vec(), "header"),
        ] {
            fs::write(&path, damage).unwrap();
            let error = load(&path, name, all_in_zero).err().unwrap().to_string();
            assert!(error.contains(expected), "{error}");
        }
        // and a file whose body disagrees with its name is refused too
        let (other, _) = write(dir.path(), 1, &taken(8, &entries(&["a"]))).unwrap();
        let error = load(&other, name, all_in_zero).err().unwrap().to_string();
        assert!(error.contains("unlike its name"), "{error}");
    }

    #[test]
    fn a_sound_snapshot_of_another_format_is_passed_over_as_such_not_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write(dir.path(), 1, &taken(7, &entries(&["a"]))).unwrap();
        let rewrite = |body: &[u8]| {
            fs::write(&path, [&header(body.len() as u64, crc32fast::hash(body))[..], body].concat()).unwrap();
        };
        let refused_for = |format: u32| {
            let error = load(&path, Name { shards: 1, shard: 0, covered: 7 }, all_in_zero).err().unwrap();
            assert!(
                matches!(error, SnapshotError::OtherFormat { format: f, reads: FORMAT, .. } if f == format),
                "{error}"
            );
            assert!(error.to_string().contains(&format!("format {format}, this engine reads {FORMAT}")), "{error}");
        };

        // given a snapshot, checksum and all, as an engine of the previous format wrote it (JSON),
        // when it is loaded, then it is refused for its format, which the message names
        rewrite(br#"{"format":3,"shards":1,"shard":0,"covered":7,"taken_at_ms":0,"domains":[]}"#);
        refused_for(3);

        // and so is a body of a later format
        let later = Body::<DomainOut<'_>> {
            format: FORMAT + 1,
            shards: 1,
            shard: 0,
            covered: 7,
            taken_at_ms: 0,
            domains: vec![],
        };
        rewrite(&postcard::to_allocvec(&later).unwrap());
        refused_for(FORMAT + 1);

        // while a body that is neither is damaged
        rewrite(b"{not json");
        let error = load(&path, Name { shards: 1, shard: 0, covered: 7 }, all_in_zero).err().unwrap();
        assert!(matches!(error, SnapshotError::Damaged { .. }), "{error}");
    }

    #[test]
    fn only_the_newest_two_of_a_shard_are_kept_and_other_counts_go_once_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = taken(5, &[]);
        write(dir.path(), 3, &old).unwrap();
        for covered in [10, 20, 30] {
            write(dir.path(), 1, &taken(covered, &[])).unwrap();
            prune(dir.path(), 1, 0).unwrap();
        }
        let mut names = list(dir.path()).unwrap().snapshots;
        names.sort();
        assert_eq!(names.iter().map(|(n, _)| (n.shards, n.covered)).collect::<Vec<_>>(), [(1, 20), (1, 30)]);
        // while a count is incomplete, the files of the other count stay
        old.covered = 40;
        write(dir.path(), 2, &old).unwrap();
        prune(dir.path(), 2, 0).unwrap();
        assert_eq!(list(dir.path()).unwrap().snapshots.len(), 3);
    }

    #[test]
    fn the_cadence_allows_a_snapshot_once_the_log_grew_by_the_last_ones_size() {
        let mut cadence = SnapshotCadence::default();
        assert!(cadence.allows(), "the first snapshot needs no growth");
        cadence.written(1_000);
        assert!(!cadence.allows());
        cadence.grew(600);
        assert!(!cadence.allows());
        cadence.grew(400);
        assert!(cadence.allows());
        cadence.written(5_000);
        cadence.grew(4_999);
        assert!(!cadence.allows(), "growth before a snapshot does not count toward the next");
    }

    /// The covered offsets of the snapshot files in `dir`.
    fn covered_on_disk(dir: &Path) -> Vec<u64> {
        let mut covered: Vec<u64> = list(dir).unwrap().snapshots.iter().map(|(name, _)| name.covered).collect();
        covered.sort_unstable();
        covered
    }

    /// Waits up to 10 s for a snapshot covering `covered` in `dir`.
    fn wait_for_on_disk(dir: &Path, covered: u64) {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while !covered_on_disk(dir).contains(&covered) {
            assert!(Instant::now() < deadline, "no snapshot at {covered}: {:?}", covered_on_disk(dir));
            thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// The snapshot thread's settings for one shard of two domains in `data_dir`.
    fn one_shard(data_dir: &Path) -> Settings {
        Settings {
            data_dir: data_dir.to_path_buf(),
            shards: 1,
            every: 1,
            latest: vec![None],
            durable_end: Arc::new(AtomicU64::new(0)),
            replicas: vec![entries(&["a", "b"]).into_iter().map(|e| (e.state.domain.clone(), e)).collect()],
            window: 10,
        }
    }

    #[test]
    fn a_handed_snapshot_is_written_only_once_the_log_grew_by_the_last_ones_size_and_the_last_one_at_the_end() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(DIR);
        let settings = one_shard(data.path());
        let (sender, receiver) = mpsc::channel();
        let thread = thread::spawn(move || snapshot_loop(settings, &receiver, &[]));
        let due = |covered| ToSnapshots::Due { shard: 0, covered, taken_at_ms: 1 };
        let grew = |bytes| ToSnapshots::Durable { shard: 0, first: 0, events: Published::from([]), bytes };
        let wait_for = |covered: u64| wait_for_on_disk(&dir, covered);

        sender.send(due(1)).unwrap();
        wait_for(1);
        let size = fs::metadata(&list(&dir).unwrap().snapshots[0].1).unwrap().len();
        sender.send(grew(size - 1)).unwrap();
        sender.send(due(2)).unwrap();
        sender.send(grew(1)).unwrap();
        sender.send(due(3)).unwrap();
        wait_for(3);
        assert_eq!(covered_on_disk(&dir), [1, 3], "the one at 2 came before the log had grown by {size} bytes");

        // Too little growth: folded, not written, until the engine stops.
        sender.send(due(4)).unwrap();
        thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(covered_on_disk(&dir), [1, 3]);
        sender.send(ToSnapshots::Finish).unwrap();
        thread.join().unwrap();
        assert_eq!(covered_on_disk(&dir), [3, 4]);
    }

    /// The nice value of every thread of this process named `name`.
    #[cfg(target_os = "linux")]
    fn nice_of_threads_named(name: &str) -> Vec<i32> {
        fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| {
                let task = task.ok()?.path();
                (fs::read_to_string(task.join("comm")).ok()?.trim_end() == name).then_some(())?;
                let tid = task.file_name()?.to_str()?.parse().ok()?;
                rustix::process::getpriority_process(rustix::process::Pid::from_raw(tid)).ok()
            })
            .collect()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_snapshot_thread_runs_at_the_lowest_priority_and_leaves_the_others_alone() {
        let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let before = own();
        assert_ne!(before, NICE, "run at a higher priority than the snapshot thread's, or this test proves nothing");
        let data = tempfile::tempdir().unwrap();
        let (sender, receiver) = mpsc::channel();

        // when the snapshot thread starts
        let thread = spawn(one_shard(data.path()), receiver, Vec::new());

        // then it lowers its priority (other tests' snapshot threads may not have yet)
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while !nice_of_threads_named("snapshots").contains(&NICE) {
            assert!(
                Instant::now() < deadline,
                "snapshot threads' nice values: {:?}",
                nice_of_threads_named("snapshots")
            );
            thread::sleep(std::time::Duration::from_millis(5));
        }
        // and only its own: the thread that started it keeps its priority
        assert_eq!(own(), before);
        sender.send(ToSnapshots::Finish).unwrap();
        thread.join().unwrap();
    }

    #[test]
    fn the_log_handed_over_after_a_snapshot_in_the_same_round_counts_towards_the_next() {
        // given a snapshot at 1 handed over, and behind it, before the thread looks, a large append
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(DIR);
        let settings = one_shard(data.path());
        let (sender, receiver) = mpsc::channel();
        sender.send(ToSnapshots::Due { shard: 0, covered: 1, taken_at_ms: 1 }).unwrap();
        sender.send(ToSnapshots::Durable { shard: 0, first: 1, events: Published::from([]), bytes: 1 << 20 }).unwrap();
        let thread = thread::spawn(move || snapshot_loop(settings, &receiver, &[]));
        wait_for_on_disk(&dir, 1);

        // when the next one is handed over
        sender.send(ToSnapshots::Due { shard: 0, covered: 2, taken_at_ms: 2 }).unwrap();

        // then it is written at once: the log grew by far more than the first one's size after it
        wait_for_on_disk(&dir, 2);
        sender.send(ToSnapshots::Finish).unwrap();
        thread.join().unwrap();
    }
}
