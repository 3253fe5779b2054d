//! Group commit: many threads, one journal, one fsync per group of batches.
//!
//! An fsync costs about the same for one record as for ten thousand, so when
//! many callers append at once the cheapest durable path is to let them queue
//! while the previous fsync runs and then write everything queued in one go.
//!
//! There is no thread of its own: the caller that finds nobody writing
//! becomes the leader, writes everything queued (its own batch and whatever
//! queued meanwhile), and hands each waiting caller its result; callers that
//! arrive while it writes queue up for the next leader. A lone caller (one
//! busy shard) so writes and syncs on its own thread, where a committer
//! thread cost two thread switches for every append: handing the batch over
//! and waking the caller with the result.
//!
//! The group is written as **one** journal batch, so it is atomic as a whole:
//! after a crash a reopen finds all of it or none of it. That keeps each
//! caller's batch atomic too (it lies entirely inside the group), and costs
//! nothing, since none of the group's callers has been answered before its
//! fsync returns.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::{Journal, JournalError};

/// Once a group holds this many payload bytes it is written without waiting
/// for more, bounding the memory and latency of one append.
const MAX_GROUP_BYTES: usize = 16 << 20;

type Reply = Result<u64, JournalError>;

/// Shares one journal among many threads, each append durable before it
/// returns, appends that overlap sharing one write and one fsync.
///
/// [`shutdown`](Self::shutdown) waits for the appends under way, then returns
/// the journal; appends through a surviving [`Appender`] then fail with
/// [`JournalError::CommitterStopped`].
pub struct GroupCommitter<J> {
    shared: Arc<Shared<J>>,
}

/// A cloneable handle for appending through a [`GroupCommitter`] from any thread.
#[derive(Clone)]
pub struct Appender {
    shared: Arc<dyn Append>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Appender")
    }
}

/// What an [`Appender`] needs of its committer, whatever its journal's type.
trait Append: Send + Sync {
    fn append(&self, records: Vec<Vec<u8>>) -> Reply;
}

struct Shared<J> {
    state: Mutex<State<J>>,
    /// Notified when a leader finishes a group (results are out, and the
    /// journal is free for the next leader) or the committer shuts down.
    finished: Condvar,
}

struct State<J> {
    /// Here when nobody is writing; the leader holds it while it writes.
    journal: Option<J>,
    /// Set by shutdown: no more appends are taken.
    stopped: bool,
    /// Set if a leader panicked inside the journal, which went with it.
    lost: bool,
    /// Batches waiting for the next leader, by ticket.
    queue: Vec<(u64, Vec<Vec<u8>>)>,
    /// Results of written groups, by ticket, until their callers take them.
    results: HashMap<u64, Reply>,
    next_ticket: u64,
}

impl<J: Journal + Send + 'static> GroupCommitter<J> {
    /// Takes `journal`; appends go through [`append`](Self::append) and the
    /// [`Appender`]s handed out.
    pub fn new(journal: J) -> GroupCommitter<J> {
        let state = State {
            journal: Some(journal),
            stopped: false,
            lost: false,
            queue: Vec::new(),
            results: HashMap::new(),
            next_ticket: 0,
        };
        GroupCommitter { shared: Arc::new(Shared { state: Mutex::new(state), finished: Condvar::new() }) }
    }

    /// A handle other threads can append through.
    pub fn appender(&self) -> Appender {
        Appender { shared: self.shared.clone() }
    }

    /// Appends `records` as one contiguous run; see [`Appender::append`].
    pub fn append(&self, records: Vec<Vec<u8>>) -> Result<u64, JournalError> {
        self.shared.append(records)
    }

    /// Waits for the appends already taken, refuses later ones and returns
    /// the journal, e.g. to read it back or drop it at a chosen moment.
    pub fn shutdown(self) -> Result<J, JournalError> {
        self.shared.stop().unwrap_or(Err(JournalError::CommitterStopped))
    }
}

impl<J> Drop for GroupCommitter<J> {
    /// As [`GroupCommitter::shutdown`], dropping the journal (and with it the
    /// embedded journal's lock) even while appenders survive.
    fn drop(&mut self) {
        drop(self.shared.stop());
    }
}

impl Appender {
    /// Appends `records` as one contiguous, atomic run of offsets and returns
    /// the first, only after the fsync that made them durable.
    ///
    /// The records may share that fsync, and the atomic journal batch, with
    /// other callers' batches: after a crash they are all kept or all cut.
    pub fn append(&self, records: Vec<Vec<u8>>) -> Result<u64, JournalError> {
        self.shared.append(records)
    }
}

impl<J> Shared<J> {
    /// Stops taking appends, waits for those taken and takes the journal out;
    /// `None` if it was stopped before.
    fn stop(&self) -> Option<Result<J, JournalError>> {
        let mut state = self.lock();
        if std::mem::replace(&mut state.stopped, true) {
            return None;
        }
        // Batches still queued have callers waiting to lead: let them finish.
        while !state.lost && (state.journal.is_none() || !state.queue.is_empty()) {
            state = self.wait(state);
        }
        Some(state.journal.take().ok_or(JournalError::CommitterStopped))
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // Nothing is left half-changed under the lock: a leader that panicked
        // in the journal took the journal with it, which later appends report.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State<J>>) -> MutexGuard<'a, State<J>> {
        self.finished.wait(state).unwrap_or_else(PoisonError::into_inner)
    }
}

impl<J: Journal + Send> Append for Shared<J> {
    fn append(&self, records: Vec<Vec<u8>>) -> Reply {
        let mut state = self.lock();
        if state.stopped || state.lost {
            return Err(JournalError::CommitterStopped);
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push((ticket, records));
        loop {
            if let Some(reply) = state.results.remove(&ticket) {
                return reply;
            }
            match state.journal.take() {
                // Nobody is writing: lead the group of everything queued.
                Some(journal) => state = self.lead(state, journal),
                None if state.lost => return Err(JournalError::CommitterStopped),
                None => state = self.wait(state),
            }
        }
    }
}

impl<J: Journal> Shared<J> {
    /// Writes the queued batches (up to [`MAX_GROUP_BYTES`], at least one) as
    /// one journal batch without holding the lock, then posts each caller's
    /// result and gives the journal back.
    fn lead<'a>(&'a self, mut state: MutexGuard<'a, State<J>>, mut journal: J) -> MutexGuard<'a, State<J>> {
        let mut bytes = 0;
        let taken = state
            .queue
            .iter()
            .take_while(|(_, records)| {
                let fits = bytes < MAX_GROUP_BYTES;
                bytes += records.iter().map(Vec::len).sum::<usize>();
                fits
            })
            .count();
        let group: Vec<(u64, Vec<Vec<u8>>)> = state.queue.drain(..taken).collect();
        drop(state);
        let mut unwinding = Unwinding { shared: self, group: &group, returned: false };
        // One journal batch for the whole group: only its last record carries
        // END_OF_BATCH, so the group (every caller's batch in it) is atomic.
        let slices: Vec<&[u8]> = group.iter().flat_map(|(_, records)| records.iter().map(Vec::as_slice)).collect();
        let written = journal.append(&slices);
        unwinding.returned = true;
        drop(unwinding);
        let mut state = self.lock();
        let mut offset = written.clone();
        for (ticket, records) in &group {
            state.results.insert(*ticket, offset.clone());
            if let Ok(offset) = &mut offset {
                *offset += records.len() as u64;
            }
        }
        state.journal = Some(journal);
        self.finished.notify_all();
        state
    }
}

/// Held while a leader is inside the journal: if that panics, the group's
/// callers and every later one are told the committer stopped, rather than
/// waiting for a journal that is not coming back.
struct Unwinding<'a, J> {
    shared: &'a Shared<J>,
    group: &'a [(u64, Vec<Vec<u8>>)],
    /// Set once the journal returned: nothing to do then.
    returned: bool,
}

impl<J> Drop for Unwinding<'_, J> {
    fn drop(&mut self) {
        if self.returned {
            return;
        }
        let mut state = self.shared.lock();
        state.lost = true;
        // Their callers find the committer lost when they wake.
        state.queue.clear();
        for (ticket, _) in self.group {
            state.results.insert(*ticket, Err(JournalError::CommitterStopped));
        }
        drop(state);
        self.shared.finished.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EmbeddedJournal, JournalOptions, RecordIter};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::thread;
    use std::time::Duration;

    /// Publishes how far the inner journal is durable, and slows fsync down
    /// so callers really do pile up behind it.
    struct Observed<J> {
        inner: J,
        durable: Arc<AtomicU64>,
        appends: Arc<AtomicUsize>,
    }

    impl<J: Journal> Journal for Observed<J> {
        fn append(&mut self, records: &[&[u8]]) -> Result<u64, JournalError> {
            thread::sleep(Duration::from_millis(5));
            let first = self.inner.append(records)?;
            self.appends.fetch_add(1, Ordering::SeqCst);
            self.durable.store(self.inner.next_offset(), Ordering::SeqCst);
            Ok(first)
        }
        fn next_offset(&self) -> u64 {
            self.inner.next_offset()
        }
        fn read_from(&self, offset: u64) -> Result<RecordIter, JournalError> {
            self.inner.read_from(offset)
        }
    }

    #[test]
    fn concurrent_callers_get_dense_distinct_offsets_only_after_durability() {
        // given a group committer over an embedded journal
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap();
        let durable = Arc::new(AtomicU64::new(0));
        let appends = Arc::new(AtomicUsize::new(0));
        let committer =
            GroupCommitter::new(Observed { inner: journal, durable: durable.clone(), appends: appends.clone() });

        // when 8 threads each append 25 batches of 1..=3 records
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let appender = committer.appender();
                let durable = durable.clone();
                thread::spawn(move || {
                    let mut mine = Vec::new();
                    for b in 0..25u8 {
                        let batch: Vec<Vec<u8>> = (0..=(b % 3)).map(|r| vec![t, b, r]).collect();
                        let first = appender.append(batch.clone()).unwrap();
                        // then the reply comes only once the records are durable
                        let end = first + batch.len() as u64;
                        assert!(durable.load(Ordering::SeqCst) >= end);
                        for (i, record) in batch.into_iter().enumerate() {
                            mine.push((first + i as u64, record));
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut written: Vec<(u64, Vec<u8>)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        written.sort();

        // then offsets are distinct and dense, and each reads back as its caller's record
        let total = written.len() as u64;
        assert_eq!(total, 8 * (0..25u64).map(|b| b % 3 + 1).sum::<u64>());
        assert!(written.iter().map(|(o, _)| *o).eq(0..total));
        // and waiting batches were coalesced into fewer fsyncs
        assert!(appends.load(Ordering::SeqCst) < 8 * 25);
        let journal = committer.shutdown().unwrap();
        let read: Vec<_> = journal.read_from(0).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(read, written);
    }

    #[test]
    fn empty_batch_gets_the_next_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap();
        let committer = GroupCommitter::new(journal);
        assert_eq!(committer.append(vec![b"a".to_vec()]).unwrap(), 0);
        assert_eq!(committer.append(Vec::new()).unwrap(), 1);
        assert_eq!(committer.append(vec![b"b".to_vec()]).unwrap(), 1);
    }

    /// A journal whose appends fail, or panic.
    struct Broken {
        panics: bool,
    }

    impl Journal for Broken {
        fn append(&mut self, _: &[&[u8]]) -> Result<u64, JournalError> {
            assert!(!self.panics, "the disk driver panicked");
            Err(JournalError::Poisoned { dir: "/j".into() })
        }
        fn next_offset(&self) -> u64 {
            0
        }
        fn read_from(&self, _: u64) -> Result<RecordIter, JournalError> {
            Ok(Box::new(std::iter::empty()))
        }
    }

    #[test]
    fn a_failed_append_is_reported_to_every_caller_of_the_group() {
        let committer = GroupCommitter::new(Broken { panics: false });
        let err = committer.append(vec![b"x".to_vec()]).unwrap_err();
        assert!(matches!(err, JournalError::Poisoned { .. }));
    }

    #[test]
    fn appends_after_shutdown_are_refused_and_queued_ones_are_kept() {
        // given a committer with an appender handed out
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap();
        let committer = GroupCommitter::new(journal);
        let appender = committer.appender();
        assert_eq!(appender.append(vec![b"kept".to_vec()]).unwrap(), 0);

        // when the committer shuts down
        let journal = committer.shutdown().unwrap();

        // then the acknowledged record is in the journal and the appender is refused
        assert_eq!(journal.next_offset(), 1);
        let err = appender.append(vec![b"late".to_vec()]).unwrap_err();
        assert!(matches!(err, JournalError::CommitterStopped));
    }
    /// Records the thread each append ran on.
    struct OnThread {
        threads: Arc<Mutex<Vec<thread::ThreadId>>>,
    }

    impl Journal for OnThread {
        fn append(&mut self, _: &[&[u8]]) -> Result<u64, JournalError> {
            self.threads.lock().unwrap().push(thread::current().id());
            Ok(0)
        }
        fn next_offset(&self) -> u64 {
            0
        }
        fn read_from(&self, _: u64) -> Result<RecordIter, JournalError> {
            Ok(Box::new(std::iter::empty()))
        }
    }

    #[test]
    fn a_lone_caller_writes_on_its_own_thread() {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let committer = GroupCommitter::new(OnThread { threads: threads.clone() });
        let appender = committer.appender();
        let caller = thread::spawn(move || {
            appender.append(vec![b"x".to_vec()]).unwrap();
            thread::current().id()
        })
        .join()
        .unwrap();
        assert_eq!(*threads.lock().unwrap(), [caller]);
    }

    #[test]
    fn a_journal_that_panicked_refuses_later_appends_instead_of_hanging_them() {
        let committer = GroupCommitter::new(Broken { panics: true });
        let appender = committer.appender();
        assert!(thread::spawn(move || appender.append(vec![b"x".to_vec()])).join().is_err(), "the leader panics");
        let err = committer.append(vec![b"y".to_vec()]).unwrap_err();
        assert!(matches!(err, JournalError::CommitterStopped), "{err:?}");
        assert!(matches!(committer.shutdown(), Err(JournalError::CommitterStopped)));
    }
}
