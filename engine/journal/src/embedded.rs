//! The embedded journal: fsync'd segment files in one directory.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::format::{
    check_segment_header, classify, encode_frame, find_valid_frame, segment_header, segment_path, temp_segment_path,
    EntryKind, FrameHeader, FRAME_HEADER_LEN, LOCK_FILE, MAX_RECORD_BYTES, SEGMENT_HEADER_LEN,
};
use crate::{Journal, JournalError, Record, RecordIter};

/// Large enough that a scan or replay is bounded by the disk, not by syscalls.
const READ_BUFFER_BYTES: usize = 1 << 20;
/// The append buffer is reused between batches; past this size it is freed
/// after the batch so one huge batch does not pin its memory forever.
const RETAINED_BUFFER_BYTES: usize = 16 << 20;
/// How far the active segment is extended with zeros past a batch that
/// outgrows it. An fdatasync that must also persist a grown file size cost
/// this machine about half as much again as one over bytes already
/// allocated (sys time ~88 against ~55 µs, 3 to 4 sleeps against 2), and the
/// journal syncs a thousand times a second under load; so the size grows a
/// MiB at a time, in the same write and fsync as the batch that needs it,
/// and most batches overwrite zeros. See docs/journal-format.md.
const PREALLOCATE_BYTES: u64 = 1 << 20;

/// Tuning for [`EmbeddedJournal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// A new segment is started before the next batch once the current one
    /// has reached this many bytes. A batch is never split, so a segment can
    /// exceed this by up to one batch. Default 64 MiB.
    pub segment_bytes: u64,
    /// Every `index_interval`-th record's position is kept in memory, so a
    /// read from the middle of a segment skips at most this many frames.
    /// Default 1024; 0 is treated as 1.
    pub index_interval: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions { segment_bytes: 64 * 1024 * 1024, index_interval: 1024 }
    }
}

/// What opening a journal found and did, for the caller to log.
///
/// Its `Display` reads like "log ended with a torn batch at offset 41: cut 2
/// whole records of an unfinished batch and 37 bytes of a torn record from …".
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Records readable after opening (the next offset): every record of
    /// every complete batch before any damage, and nothing else.
    pub records: u64,
    /// Segment files in use after opening.
    pub segments: usize,
    /// Bytes after the last complete batch (whole records of an unfinished
    /// batch included): cut by a writer, skipped by a read-only open (which
    /// also counts later segments it did not read).
    pub truncated_bytes: u64,
    /// Offset of the first record lost to the damage (the first record of
    /// the unfinished batch, if whole records of one were dropped), if any.
    pub truncated_at_offset: Option<u64>,
    /// Where the damage was and what was done about it.
    pub damage: Option<Damage>,
}

/// Damage found at the end of the readable log.
///
/// The log is read only up to the end of its last complete batch, so the part
/// dropped starts at the first record of the batch the damage interrupts:
/// `unfinished_records` whole, valid records (`unfinished_bytes` bytes) from
/// `position`, then the damage itself (a bad frame, or for a torn tail also
/// simply the end of the file).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Damage {
    /// Torn tail (expected after a crash) or corruption (a read-only open
    /// only: a writer refuses with [`JournalError::Corrupt`] instead).
    pub kind: DamageKind,
    /// Segment file holding the damage.
    pub segment: PathBuf,
    /// Byte position in that file where the dropped part starts: the end of
    /// the last complete batch. A writer truncates the file here.
    pub position: u64,
    /// Offset of the first record dropped (the next offset after opening).
    pub offset: u64,
    /// Whole, valid records dropped because their batch does not end before
    /// the damage (0 when the damage starts a batch).
    pub unfinished_records: u64,
    /// Bytes of those records; the damage itself starts at
    /// `position + unfinished_bytes`, record offset `offset + unfinished_records`.
    pub unfinished_bytes: u64,
    /// What was wrong at the damage.
    pub reason: &'static str,
    /// For a torn tail, the zeros ending the file after it: mostly the space
    /// the writer had allocated ahead of its records (a lost page of the torn
    /// batch, or its bytes that happen to be zeros, cannot be told from it;
    /// that batch was never acknowledged). Counted in
    /// [`Recovery::truncated_bytes`].
    pub unused_bytes: u64,
    /// Whether the file was truncated (writer) or left as is (read-only).
    pub cut: bool,
}

/// How [`Damage`] was classified; see docs/journal-format.md, "Recovery".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// A partly written last batch: nothing valid follows it, so it was
    /// never acknowledged and is safe to cut.
    TornTail,
    /// Damage with valid records after it or in a non-last segment.
    Corrupt,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(damage) = &self.damage else {
            let plural = if self.segments == 1 { "" } else { "s" };
            return write!(f, "journal holds {} records in {} segment{plural}, no damage", self.records, self.segments);
        };
        let segment = damage.segment.display();
        let where_ = format!("{segment} at byte {} ({})", damage.position, damage.reason);
        let unfinished = damage.unfinished_records;
        let whole = format!("{unfinished} whole record{}", if unfinished == 1 { "" } else { "s" });
        if damage.kind == DamageKind::Corrupt {
            return if unfinished == 0 {
                write!(
                    f,
                    "log is corrupt at offset {}: reading stops at {where_}, {} bytes after it ignored; a writer will refuse to open it",
                    damage.offset, self.truncated_bytes
                )
            } else {
                write!(
                    f,
                    "log is corrupt at offset {}, {segment} at byte {} ({}): reading stops at the end of the last complete batch, offset {} at byte {}, and ignores the {whole} of the batch the damage interrupts and the {} bytes after them; a writer will refuse to open it",
                    damage.offset + unfinished,
                    damage.position + damage.unfinished_bytes,
                    damage.reason,
                    damage.offset,
                    damage.position,
                    self.truncated_bytes - damage.unfinished_bytes
                )
            };
        }
        let torn_bytes = self.truncated_bytes - damage.unfinished_bytes - damage.unused_bytes;
        let (what, mut dropped) = match (unfinished, torn_bytes) {
            (0, _) => ("record", vec![format!("{torn_bytes} bytes")]),
            (_, 0) => ("batch", vec![format!("{whole} of an unfinished batch")]),
            _ => (
                "batch",
                vec![format!("{whole} of an unfinished batch"), format!("{torn_bytes} bytes of a torn record")],
            ),
        };
        if damage.unused_bytes > 0 {
            dropped.push(format!("{} zero bytes allocated ahead of the records", damage.unused_bytes));
        }
        let dropped = match dropped.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => unreachable!("a torn tail drops something"),
        };
        if damage.cut {
            write!(f, "log ended with a torn {what} at offset {}: cut {dropped} from {where_}", damage.offset)
        } else {
            write!(
                f,
                "log ends with a torn {what} at offset {}: ignored {dropped} from {where_}; opened read-only, file left as is",
                damage.offset
            )
        }
    }
}

/// The writer: the only handle that appends, holding `dir/LOCK` until dropped.
#[derive(Debug)]
pub struct EmbeddedJournal {
    log: Log,
    segment_bytes: u64,
    /// The last segment, its cursor at the end of its records.
    active: File,
    /// The active segment's file length: its records, then zeros.
    allocated: u64,
    /// Reused frame buffer: a batch goes to disk as one write of this.
    buf: Vec<u8>,
    poisoned: bool,
    /// Declared last so it is dropped (unlocked) after the segment file closes.
    _lock: File,
}

/// A reader for replay and audit: takes no lock, never writes or truncates.
///
/// It sees the log as it was when opened. Pointed at a directory a writer is
/// using, it may see records the writer has written but not yet fsync'd.
#[derive(Debug)]
pub struct ReadOnlyJournal {
    log: Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Write,
    ReadOnly,
}

/// The in-memory sparse index shared by the writer and read-only handles.
#[derive(Debug)]
struct Log {
    dir: PathBuf,
    segments: Vec<SegmentMeta>,
    index_interval: u64,
}

#[derive(Debug, Clone)]
struct SegmentMeta {
    path: PathBuf,
    base: u64,
    records: u64,
    /// Bytes up to the end of the last complete durable batch: readers never
    /// go past it, so they only ever see records of complete batches.
    len: u64,
    /// `index[k]` is the byte position of record `base + k * index_interval`.
    index: Vec<u64>,
}

impl SegmentMeta {
    fn end_offset(&self) -> u64 {
        self.base + self.records
    }
}

impl EmbeddedJournal {
    /// Opens (creating if missing) the journal in `dir` for writing.
    ///
    /// Takes `dir/LOCK` (a second writer gets [`JournalError::Locked`]),
    /// cuts a torn tail left by a crash (back to the end of the last complete
    /// batch, so no half batch survives) and reports it in the [`Recovery`],
    /// and refuses with [`JournalError::Corrupt`] any damage that acknowledged
    /// records may follow. Files not ending in `.log` are ignored.
    pub fn open(dir: impl AsRef<Path>, options: JournalOptions) -> Result<(EmbeddedJournal, Recovery), JournalError> {
        let dir = dir.as_ref().to_path_buf();
        ensure_dir(&dir)?;
        let lock = acquire_lock(&dir)?;
        let listing = list_dir(&dir)?;
        for temp in &listing.temps {
            fs::remove_file(temp).map_err(JournalError::io("remove unfinished segment", temp))?;
        }
        if !listing.temps.is_empty() {
            sync_dir(&dir)?;
        }
        let (mut log, mut recovery) = recover(dir, &listing.segments, Mode::Write, options.index_interval.max(1))?;
        if log.segments.is_empty() {
            log.segments.push(create_segment(&log.dir, 0)?);
        }
        let last = log.segments.last().expect("one segment");
        let (active, allocated) = open_active(last)?;
        let last = &last.path;
        // A previous writer may have died between its write and its fsync,
        // leaving records the scan saw in the page cache but not on disk.
        // Make them durable before anyone replays them, along with any rename
        // whose directory fsync was lost.
        active.sync_data().map_err(JournalError::io("fsync", last))?;
        sync_dir(&log.dir)?;
        recovery.segments = log.segments.len();
        Ok((
            EmbeddedJournal {
                log,
                segment_bytes: options.segment_bytes,
                active,
                allocated,
                buf: Vec::new(),
                poisoned: false,
                _lock: lock,
            },
            recovery,
        ))
    }

    /// Opens the journal in `dir` for reading only, for replay and audit.
    ///
    /// Never locks, writes or truncates. Reads up to the end of the last
    /// complete batch before any damage: a torn tail is reported as by
    /// [`open`](Self::open) but left in place, and corruption is reported
    /// (not refused) with reading stopping at the last complete batch before it.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<(ReadOnlyJournal, Recovery), JournalError> {
        let dir = dir.as_ref().to_path_buf();
        match fs::metadata(&dir) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(JournalError::NotFound { dir });
            }
            Err(e) => return Err(JournalError::io("inspect", &dir)(e)),
        }
        let listing = list_dir(&dir)?;
        let (log, mut recovery) =
            recover(dir, &listing.segments, Mode::ReadOnly, JournalOptions::default().index_interval)?;
        recovery.segments = log.segments.len();
        Ok((ReadOnlyJournal { log }, recovery))
    }

    /// The journal's directory, e.g. to reopen it after dropping this handle.
    pub fn dir(&self) -> &Path {
        &self.log.dir
    }

    fn roll(&mut self) -> Result<(), JournalError> {
        // A sealed segment ends with its last batch, not with unused zeros.
        self.cut_back_to_records()
            .map_err(JournalError::io("truncate", &self.log.segments.last().expect("writer has a segment").path))?;
        let meta = create_segment(&self.log.dir, self.log.next_offset())?;
        (self.active, self.allocated) = open_active(&meta)?;
        self.log.segments.push(meta);
        Ok(())
    }

    /// Cuts the active segment back to its records, dropping the zeros
    /// allocated after them, and syncs it.
    fn cut_back_to_records(&mut self) -> io::Result<()> {
        let len = self.log.segments.last().expect("writer has a segment").len;
        self.active.set_len(len)?;
        self.active.sync_all()?;
        self.allocated = len;
        Ok(())
    }

    fn poison(&mut self, err: JournalError) -> JournalError {
        self.poisoned = true;
        err
    }
}

impl Drop for EmbeddedJournal {
    /// A writer closed cleanly leaves its last segment ending with its
    /// records, without the unused zeros after them, as tools that look at
    /// the files expect. Failing that is harmless: the zeros are what a
    /// crash leaves too, and the next open reads past them.
    fn drop(&mut self) {
        if self.allocated > self.log.segments.last().expect("writer has a segment").len {
            let _ = self.cut_back_to_records();
        }
    }
}

impl Journal for EmbeddedJournal {
    fn append(&mut self, records: &[&[u8]]) -> Result<u64, JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned { dir: self.log.dir.clone() });
        }
        let first = self.log.next_offset();
        if records.is_empty() {
            return Ok(first);
        }
        let mut batch_bytes = 0;
        for record in records {
            if record.len() > MAX_RECORD_BYTES {
                return Err(JournalError::RecordTooLarge { len: record.len(), max: MAX_RECORD_BYTES });
            }
            batch_bytes += FRAME_HEADER_LEN + record.len();
        }
        let current = self.log.segments.last().expect("writer has a segment");
        if current.records > 0 && current.len >= self.segment_bytes {
            // A failed roll may have left a renamed-in segment the in-memory
            // state does not know about; writing on would put records under
            // the wrong base offset.
            if let Err(e) = self.roll() {
                return Err(self.poison(e));
            }
        }

        let interval = self.log.index_interval;
        let segment = self.log.segments.last().expect("writer has a segment");
        let mut new_index = Vec::new();
        let mut position = segment.len;
        self.buf.clear();
        self.buf.reserve(batch_bytes);
        let last = records.len() - 1;
        for (i, record) in records.iter().enumerate() {
            if (segment.records + i as u64).is_multiple_of(interval) {
                new_index.push(position);
            }
            // Recovery keeps the batch only if this flag made it to disk.
            encode_frame(&mut self.buf, record, i == last);
            position += (FRAME_HEADER_LEN + record.len()) as u64;
        }

        // Past the zeros already allocated, the same write extends them.
        let extend = position > self.allocated;
        if extend {
            self.buf.resize(self.buf.len() + PREALLOCATE_BYTES as usize, 0);
        }

        // One write and one fdatasync per batch: the whole point of batching.
        let write = self
            .active
            .write_all(&self.buf)
            .and_then(|()| match extend {
                // Back from the new zeros to the end of the records.
                true => self.active.seek(SeekFrom::Start(position)).map(drop),
                false => Ok(()),
            })
            .map_err(JournalError::io("write", &segment.path))
            .and_then(|()| self.active.sync_data().map_err(JournalError::io("fsync", &segment.path)));
        if let Err(e) = write {
            // After a failed fsync the page cache may have dropped our pages
            // while the file still looks whole; only a reopen's scan is trustworthy.
            let _ = self.active.set_len(segment.len);
            return Err(self.poison(e));
        }
        if extend {
            self.allocated = position + PREALLOCATE_BYTES;
        }

        let segment = self.log.segments.last_mut().expect("writer has a segment");
        segment.records += records.len() as u64;
        segment.len = position;
        segment.index.extend(new_index);
        if self.buf.capacity() > RETAINED_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        Ok(first)
    }

    fn next_offset(&self) -> u64 {
        self.log.next_offset()
    }

    fn read_from(&self, offset: u64) -> Result<RecordIter, JournalError> {
        self.log.read_from(offset)
    }
}

impl ReadOnlyJournal {
    /// One past the last readable record, i.e. the number of readable records.
    pub fn next_offset(&self) -> u64 {
        self.log.next_offset()
    }

    /// Reads the records from `offset` on, with the same contract as
    /// [`Journal::read_from`].
    pub fn read_from(&self, offset: u64) -> Result<RecordIter, JournalError> {
        self.log.read_from(offset)
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.log.dir
    }
}

impl Log {
    fn next_offset(&self) -> u64 {
        self.segments.last().map_or(0, SegmentMeta::end_offset)
    }

    fn read_from(&self, offset: u64) -> Result<RecordIter, JournalError> {
        let next_offset = self.next_offset();
        if offset > next_offset {
            return Err(JournalError::OffsetOutOfRange { offset, next_offset });
        }
        if offset == next_offset {
            return Ok(Box::new(std::iter::empty()));
        }
        // Segments are contiguous from 0 and offset < next_offset, so some
        // segment holds it.
        let at = self.segments.partition_point(|s| s.base <= offset) - 1;
        let segment = &self.segments[at];
        let k = (offset - segment.base) / self.index_interval;
        let cursor = Cursor::open(
            &segment.path,
            segment.index[k as usize],
            segment.base + k * self.index_interval,
            segment.end_offset(),
        )?;
        let later: Vec<_> = self.segments[at + 1..].iter().map(|s| (s.path.clone(), s.base, s.end_offset())).collect();
        Ok(Box::new(Reader { later: later.into_iter(), cursor: Some(cursor), want: offset, done: false }))
    }
}

/// Reads frames from a snapshot of the segment list.
struct Reader {
    later: std::vec::IntoIter<(PathBuf, u64, u64)>,
    cursor: Option<Cursor>,
    /// Frames before this offset are skipped (the index is sparse).
    want: u64,
    done: bool,
}

struct Cursor {
    reader: BufReader<File>,
    path: PathBuf,
    position: u64,
    offset: u64,
    end_offset: u64,
}

impl Cursor {
    fn open(path: &Path, position: u64, offset: u64, end_offset: u64) -> Result<Cursor, JournalError> {
        let mut file = File::open(path).map_err(JournalError::io("open", path))?;
        file.seek(SeekFrom::Start(position)).map_err(JournalError::io("seek in", path))?;
        Ok(Cursor {
            reader: BufReader::with_capacity(READ_BUFFER_BYTES, file),
            path: path.to_path_buf(),
            position,
            offset,
            end_offset,
        })
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), JournalError> {
        self.reader.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.corrupt(
                    "segment is shorter than when the journal was opened (was it truncated by another process?)",
                )
            } else {
                JournalError::io("read", &self.path)(e)
            }
        })
    }

    fn corrupt(&self, reason: &'static str) -> JournalError {
        JournalError::Corrupt { segment: self.path.clone(), position: self.position, offset: self.offset, reason }
    }
}

impl Reader {
    fn advance(&mut self) -> Result<Option<Record>, JournalError> {
        loop {
            if self.cursor.is_none() {
                let Some((path, base, end_offset)) = self.later.next() else {
                    return Ok(None);
                };
                self.cursor = Some(Cursor::open(&path, SEGMENT_HEADER_LEN, base, end_offset)?);
            }
            let cursor = self.cursor.as_mut().expect("cursor just set");
            if cursor.offset == cursor.end_offset {
                self.cursor = None;
                continue;
            }
            let mut header = [0u8; FRAME_HEADER_LEN];
            cursor.read_exact(&mut header)?;
            let header = FrameHeader::parse(&header);
            if !header.len_fits() {
                return Err(cursor.corrupt("frame length exceeds the record limit"));
            }
            let len = header.len();
            let frame_len = (FRAME_HEADER_LEN + len as usize) as u64;
            if cursor.offset < self.want {
                cursor.reader.seek_relative(i64::from(len)).map_err(JournalError::io("seek in", &cursor.path))?;
            } else {
                let mut payload = vec![0u8; len as usize];
                cursor.read_exact(&mut payload)?;
                // Checked again on read: the disk may have rotted since open.
                if !header.checks(&payload) {
                    return Err(cursor.corrupt("frame checksum mismatch"));
                }
                let offset = cursor.offset;
                cursor.offset += 1;
                cursor.position += frame_len;
                return Ok(Some((offset, payload)));
            }
            cursor.offset += 1;
            cursor.position += frame_len;
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Record, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.advance() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

struct Listing {
    /// Sorted by base offset.
    segments: Vec<(u64, PathBuf)>,
    temps: Vec<PathBuf>,
}

fn list_dir(dir: &Path) -> Result<Listing, JournalError> {
    let mut listing = Listing { segments: Vec::new(), temps: Vec::new() };
    let entries = fs::read_dir(dir).map_err(JournalError::io("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(JournalError::io("list", dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        match classify(&name) {
            EntryKind::Segment(base) => listing.segments.push((base, entry.path())),
            EntryKind::Temp => listing.temps.push(entry.path()),
            EntryKind::Malformed => return Err(JournalError::StrayFile { path: entry.path() }),
            EntryKind::Other => {}
        }
    }
    listing.segments.sort_unstable_by_key(|(base, _)| *base);
    Ok(listing)
}

struct Problem {
    kind: DamageKind,
    segment: PathBuf,
    /// Where the readable part of the segment ends: the end of its last
    /// complete batch (0 when the segment is unusable as a whole).
    position: u64,
    /// The offset at `position`.
    offset: u64,
    /// Whole valid records after `position` whose batch has no end before the damage.
    unfinished_records: u64,
    unfinished_bytes: u64,
    reason: &'static str,
    /// Bytes of that segment from `position` on.
    bytes: u64,
    /// Of those, the zeros ending a torn tail's segment (see [`Damage::unused_bytes`]).
    unused_bytes: u64,
}

/// The batch of a torn tail is unfinished: its last record, the one carrying
/// END_OF_BATCH, is missing.
const UNFINISHED_LAST_BATCH: &str =
    "the last batch has no end-of-batch record (the crash came before all of its records were written)";
/// A segment that ends inside a batch: impossible after a crash alone.
const SPLIT_BATCH: &str = "segment ends inside a batch (its last record lacks the end-of-batch flag), but a batch is never split across segments";

/// Scans every segment, building the index and deciding what to do with damage.
///
/// The readable log ends at the end of the last complete batch (the last
/// frame flagged END_OF_BATCH) before the first damage; whole records after
/// it belong to a batch that was never acknowledged and are dropped with it.
fn recover(
    dir: PathBuf,
    segments: &[(u64, PathBuf)],
    mode: Mode,
    index_interval: u64,
) -> Result<(Log, Recovery), JournalError> {
    let mut log = Log { dir, segments: Vec::with_capacity(segments.len()), index_interval };
    let mut recovery =
        Recovery { records: 0, segments: 0, truncated_bytes: 0, truncated_at_offset: None, damage: None };
    for (i, (base, path)) in segments.iter().enumerate() {
        let expected = log.next_offset();
        let is_last = i + 1 == segments.len();
        let problem = if *base != expected {
            Problem {
                kind: DamageKind::Corrupt,
                segment: path.clone(),
                position: 0,
                offset: expected,
                unfinished_records: 0,
                unfinished_bytes: 0,
                reason: if *base > expected {
                    "segment starts after the previous one ends, so records are missing"
                } else {
                    "segment overlaps the previous one"
                },
                bytes: file_len(path)?,
                unused_bytes: 0,
            }
        } else {
            let mut scan = scan_segment(path, *base, index_interval)?;
            let (whole_records, whole_len) = (scan.meta.records, scan.meta.len);
            // With a torn tail, also the zeros ending the file (see `Damage::unused_bytes`).
            let (kind, reason, unused_bytes) = match scan.bad {
                None if scan.complete_records == whole_records => {
                    log.segments.push(scan.meta);
                    continue;
                }
                // Only whole frames, but the last lacks END_OF_BATCH. A batch
                // is never split across segments, so only the last segment
                // can hold the start of an unfinished batch. The scan found
                // only zeros after the frames.
                None if is_last => (DamageKind::TornTail, UNFINISHED_LAST_BATCH, scan.file_len - whole_len),
                None => (DamageKind::Corrupt, SPLIT_BATCH, 0),
                Some(ref bad) => {
                    let torn = match bad.position > 0 && is_last {
                        true => unfinished_batch_after(path, bad.position)?,
                        false => None,
                    };
                    match torn {
                        // The file read again: a live writer may have changed it since the scan.
                        Some(zeros) => (DamageKind::TornTail, bad.reason, zeros.min(scan.file_len - whole_len)),
                        None => (DamageKind::Corrupt, bad.reason, 0),
                    }
                }
            };
            let header_ok = scan.bad.as_ref().is_none_or(|bad| bad.position > 0);
            let (position, complete) = if header_ok { (scan.complete_len, scan.complete_records) } else { (0, 0) };
            let unfinished_bytes = if header_ok { whole_len - position } else { 0 };
            if header_ok {
                debug_assert!(position >= SEGMENT_HEADER_LEN && position <= whole_len);
                scan.meta.records = scan.complete_records;
                scan.meta.len = scan.complete_len;
                scan.meta.index.truncate(scan.complete_records.div_ceil(index_interval) as usize);
                log.segments.push(scan.meta);
            }
            Problem {
                kind,
                segment: path.clone(),
                position,
                offset: base + complete,
                unfinished_records: whole_records - complete,
                unfinished_bytes,
                reason,
                bytes: scan.file_len - position,
                unused_bytes,
            }
        };

        let mut truncated_bytes = problem.bytes;
        let cut = match (problem.kind, mode) {
            (DamageKind::Corrupt, Mode::Write) => {
                // Name the damage itself, not the start of its batch.
                return Err(JournalError::Corrupt {
                    segment: problem.segment,
                    position: problem.position + problem.unfinished_bytes,
                    offset: problem.offset + problem.unfinished_records,
                    reason: problem.reason,
                });
            }
            (DamageKind::Corrupt, Mode::ReadOnly) => {
                for (_, later) in &segments[i + 1..] {
                    truncated_bytes += file_len(later)?;
                }
                false
            }
            (DamageKind::TornTail, Mode::Write) => {
                truncate(&problem.segment, problem.position)?;
                sync_dir(&log.dir)?;
                true
            }
            (DamageKind::TornTail, Mode::ReadOnly) => false,
        };
        recovery.truncated_bytes = truncated_bytes;
        recovery.truncated_at_offset = Some(problem.offset);
        recovery.damage = Some(Damage {
            kind: problem.kind,
            segment: problem.segment,
            position: problem.position,
            offset: problem.offset,
            unfinished_records: problem.unfinished_records,
            unfinished_bytes: problem.unfinished_bytes,
            reason: problem.reason,
            unused_bytes: problem.unused_bytes,
            cut,
        });
        break;
    }
    recovery.records = log.next_offset();
    Ok((log, recovery))
}

struct BadFrame {
    /// 0 when the segment header itself is bad.
    position: u64,
    reason: &'static str,
}

struct SegmentScan {
    /// Every whole valid frame before the first bad one (or the end).
    meta: SegmentMeta,
    /// Records up to and including the last frame flagged END_OF_BATCH.
    complete_records: u64,
    /// Byte position just after that frame (the header length if none).
    complete_len: u64,
    file_len: u64,
    bad: Option<BadFrame>,
}

/// Reads a segment frame by frame, stopping at the first bad frame.
fn scan_segment(path: &Path, base: u64, index_interval: u64) -> Result<SegmentScan, JournalError> {
    let file = File::open(path).map_err(JournalError::io("open", path))?;
    let file_len = file.metadata().map_err(JournalError::io("inspect", path))?.len();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    let mut meta = SegmentMeta { path: path.to_path_buf(), base, records: 0, len: 0, index: Vec::new() };
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    let got = read_up_to(&mut reader, &mut header, path)?;
    if let Err(reason) = check_segment_header(&header[..got], base) {
        let bad = Some(BadFrame { position: 0, reason });
        return Ok(SegmentScan { meta, complete_records: 0, complete_len: 0, file_len, bad });
    }

    let mut position = SEGMENT_HEADER_LEN;
    let (mut complete_records, mut complete_len) = (0, SEGMENT_HEADER_LEN);
    let mut payload = Vec::new();
    let bad = loop {
        let mut frame_header = [0u8; FRAME_HEADER_LEN];
        let got = read_up_to(&mut reader, &mut frame_header, path)?;
        if got == 0 {
            break None;
        }
        // Unused zeros after the records (see PREALLOCATE_BYTES) end them too.
        if frame_header[..got].iter().all(|&b| b == 0) && only_zeros(&mut reader, path)? {
            break None;
        }
        if got < FRAME_HEADER_LEN {
            break Some("incomplete frame header");
        }
        let frame_header = FrameHeader::parse(&frame_header);
        if !frame_header.len_fits() {
            break Some("frame length exceeds the record limit");
        }
        let len = frame_header.len() as usize;
        let end = position + (FRAME_HEADER_LEN + len) as u64;
        if end > file_len {
            break Some("frame extends past the end of the file");
        }
        payload.resize(len, 0);
        reader.read_exact(&mut payload).map_err(JournalError::io("read", path))?;
        if !frame_header.checks(&payload) {
            break Some("frame checksum mismatch");
        }
        if meta.records.is_multiple_of(index_interval) {
            meta.index.push(position);
        }
        meta.records += 1;
        position = end;
        if frame_header.end_of_batch() {
            (complete_records, complete_len) = (meta.records, position);
        }
    };
    meta.len = position;
    let bad = bad.map(|reason| BadFrame { position, reason });
    Ok(SegmentScan { meta, complete_records, complete_len, file_len, bad })
}

/// Whether nothing but zero bytes is left to read.
fn only_zeros(reader: &mut impl Read, path: &Path) -> Result<bool, JournalError> {
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match read_up_to(reader, &mut chunk, path)? {
            0 => return Ok(true),
            got if chunk[..got].iter().any(|&b| b != 0) => return Ok(false),
            _ => {}
        }
    }
}

/// If what follows the bad frame at `position` can only be the rest of the
/// batch that was being written at a crash (no whole valid frame, or valid
/// frames past holes, the first of which to end a batch has only zeros
/// after it), how many zero bytes end the file; `None` if it is corruption.
/// An append waits for its fsync before the next is written, so a crash
/// leaves at most one batch unacknowledged, at the end of the log, and a
/// valid frame after the end of a batch that follows the damage belongs to
/// an acknowledged batch. A hole is what a crash leaves
/// where a page of that batch, written over preallocated zeros, did not reach
/// the disk while a later one did: zeros from where the records stop up to
/// a sector boundary ([`crash_hole`]). Other damage before a valid frame (a
/// flipped bit) is corruption, however the log goes on.
fn unfinished_batch_after(path: &Path, position: u64) -> Result<Option<u64>, JournalError> {
    let mut file = File::open(path).map_err(JournalError::io("open", path))?;
    file.seek(SeekFrom::Start(position)).map_err(JournalError::io("seek in", path))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).map_err(JournalError::io("read", path))?;
    // The bad frame starts the first gap; the search starts past its first byte.
    let (mut gap, mut from) = (0, 1);
    let zeros_at_the_end = || rest.iter().rev().take_while(|&&b| b == 0).count() as u64;
    while let Some(found) = find_valid_frame(&rest[from..]) {
        let (start, end) = (from + found.start, from + found.end);
        if start > gap && !crash_hole(&rest[gap..start], position + gap as u64) {
            return Ok(None);
        }
        if found.end_of_batch {
            return Ok(rest[end..].iter().all(|&b| b == 0).then(zeros_at_the_end));
        }
        (gap, from) = (end, end);
    }
    Ok(Some(zeros_at_the_end()))
}

/// The unit a disk persists or loses whole.
const SECTOR_BYTES: u64 = 512;

/// Whether `gap`, found at file position `at` between the damage and a valid
/// frame, starts as a page lost in a crash does: zeros from its start up to
/// the next sector boundary, at least a frame header's worth of them (so a
/// frame that merely starts with a zero byte is not taken for one).
fn crash_hole(gap: &[u8], at: u64) -> bool {
    let zeros = ((at / SECTOR_BYTES + 1) * SECTOR_BYTES - at) as usize;
    zeros >= FRAME_HEADER_LEN && zeros <= gap.len() && gap[..zeros].iter().all(|&b| b == 0)
}

/// Like `read_exact`, but a short read at end of file is an answer, not an error.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize, JournalError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(JournalError::io("read", path)(e)),
        }
    }
    Ok(filled)
}

fn file_len(path: &Path) -> Result<u64, JournalError> {
    Ok(fs::metadata(path).map_err(JournalError::io("inspect", path))?.len())
}

fn truncate(path: &Path, len: u64) -> Result<(), JournalError> {
    let file = OpenOptions::new().write(true).open(path).map_err(JournalError::io("open", path))?;
    file.set_len(len).map_err(JournalError::io("truncate", path))?;
    file.sync_all().map_err(JournalError::io("fsync", path))
}

/// Creates an empty segment atomically: header written and fsync'd under a
/// temporary name, renamed into place, directory fsync'd.
fn create_segment(dir: &Path, base: u64) -> Result<SegmentMeta, JournalError> {
    let temp = temp_segment_path(dir, base);
    let path = segment_path(dir, base);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(JournalError::io("create", &temp))?;
    file.write_all(&segment_header(base)).map_err(JournalError::io("write", &temp))?;
    file.sync_all().map_err(JournalError::io("fsync", &temp))?;
    fs::rename(&temp, &path).map_err(JournalError::io("rename into place", &temp))?;
    sync_dir(dir)?;
    Ok(SegmentMeta { path, base, records: 0, len: SEGMENT_HEADER_LEN, index: Vec::new() })
}

/// Opens `segment` for appending: the cursor at the end of its records,
/// which zeros may follow (see [`PREALLOCATE_BYTES`]). Returns the file's length too.
fn open_active(segment: &SegmentMeta) -> Result<(File, u64), JournalError> {
    let path = &segment.path;
    let mut file = OpenOptions::new().write(true).open(path).map_err(JournalError::io("open for append", path))?;
    let len = file.metadata().map_err(JournalError::io("inspect", path))?.len();
    file.seek(SeekFrom::Start(segment.len)).map_err(JournalError::io("seek in", path))?;
    Ok((file, len))
}

/// Makes a directory entry change (new or truncated file) itself durable.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).map_err(JournalError::io("fsync directory", dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn ensure_dir(dir: &Path) -> Result<(), JournalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(JournalError::io("create directory", dir))?;
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    sync_dir(parent)
}

fn acquire_lock(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(JournalError::io("open lock file", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(JournalError::Locked { dir: dir.to_path_buf() }),
        Err(TryLockError::Error(e)) => Err(JournalError::io("lock", &path)(e)),
    }
}

#[cfg(test)]
mod tests;
