//! Group commit: many threads, one journal, one fsync per group of batches.
//!
//! An fsync costs about the same for one record as for ten thousand, so when
//! many callers append at once the cheapest durable path is to let them queue
//! while the previous fsync runs and then write everything queued in one go.
//!
//! The group is written as **one** journal batch, so it is atomic as a whole:
//! after a crash a reopen finds all of it or none of it. That keeps each
//! caller's batch atomic too (it lies entirely inside the group), and costs
//! nothing, since none of the group's callers has been answered before its
//! fsync returns.

use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use crate::{Journal, JournalError};

/// Once a group holds this many payload bytes it is written without waiting
/// for more, bounding the memory and latency of one append.
const MAX_GROUP_BYTES: usize = 16 << 20;

type Reply = Result<u64, JournalError>;

enum Message {
    Append(Request),
    /// Sent by shutdown/drop: finish what came before, then exit.
    Stop,
}

struct Request {
    records: Vec<Vec<u8>>,
    reply: mpsc::SyncSender<Reply>,
}

/// Owns a journal on a dedicated thread and appends for many callers.
///
/// Dropping it (or [`shutdown`](Self::shutdown)) lets the thread finish
/// the appends already queued and waits for it; appends through a surviving
/// [`Appender`] then fail with [`JournalError::CommitterStopped`].
pub struct GroupCommitter<J> {
    sender: mpsc::Sender<Message>,
    thread: Option<JoinHandle<J>>,
}

/// A cloneable handle for appending through a [`GroupCommitter`] from any thread.
#[derive(Debug, Clone)]
pub struct Appender {
    sender: mpsc::Sender<Message>,
}

impl<J: Journal + Send + 'static> GroupCommitter<J> {
    /// Moves `journal` onto a new thread named `journal-commit`.
    ///
    /// Panics if the OS cannot start a thread, like [`std::thread::spawn`].
    pub fn spawn(journal: J) -> GroupCommitter<J> {
        let (sender, receiver) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("journal-commit".into())
            .spawn(move || commit_loop(journal, receiver))
            .expect("the OS refused to start the journal-commit thread");
        GroupCommitter { sender, thread: Some(thread) }
    }

    /// A handle other threads can append through.
    pub fn appender(&self) -> Appender {
        Appender { sender: self.sender.clone() }
    }

    /// Appends `records` as one contiguous run; see [`Appender::append`].
    pub fn append(&self, records: Vec<Vec<u8>>) -> Result<u64, JournalError> {
        append_via(&self.sender, records)
    }

    /// Finishes the appends already queued, stops the thread and returns the
    /// journal, e.g. to read it back or drop it at a chosen moment.
    pub fn shutdown(mut self) -> Result<J, JournalError> {
        let _ = self.sender.send(Message::Stop);
        let thread = self.thread.take().expect("thread lives until shutdown");
        thread.join().map_err(|_| JournalError::CommitterStopped)
    }
}

impl Appender {
    /// Appends `records` as one contiguous, atomic run of offsets and returns
    /// the first, only after the fsync that made them durable.
    ///
    /// The records may share that fsync, and the atomic journal batch, with
    /// other callers' batches: after a crash they are all kept or all cut.
    pub fn append(&self, records: Vec<Vec<u8>>) -> Result<u64, JournalError> {
        append_via(&self.sender, records)
    }
}

fn append_via(sender: &mpsc::Sender<Message>, records: Vec<Vec<u8>>) -> Reply {
    let (reply, answer) = mpsc::sync_channel(1);
    sender.send(Message::Append(Request { records, reply })).map_err(|_| JournalError::CommitterStopped)?;
    answer.recv().map_err(|_| JournalError::CommitterStopped)?
}

impl<J> Drop for GroupCommitter<J> {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.sender.send(Message::Stop);
            let _ = thread.join();
        }
    }
}

fn commit_loop<J: Journal>(mut journal: J, messages: mpsc::Receiver<Message>) -> J {
    let mut group = Vec::new();
    let mut stopping = false;
    while !stopping {
        let Ok(Message::Append(first)) = messages.recv() else {
            break;
        };
        let mut bytes: usize = first.records.iter().map(Vec::len).sum();
        group.push(first);
        // Everything that queued up during the previous fsync rides along.
        while bytes < MAX_GROUP_BYTES {
            match messages.try_recv() {
                Ok(Message::Append(next)) => {
                    bytes += next.records.iter().map(Vec::len).sum::<usize>();
                    group.push(next);
                }
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // One journal batch for the whole group: only its last record carries
        // END_OF_BATCH, so the group (every caller's batch in it) is atomic.
        let slices: Vec<&[u8]> = group.iter().flat_map(|r| r.records.iter().map(Vec::as_slice)).collect();
        match journal.append(&slices) {
            Ok(mut offset) => {
                for request in group.drain(..) {
                    let _ = request.reply.send(Ok(offset));
                    offset += request.records.len() as u64;
                }
            }
            Err(e) => {
                for request in group.drain(..) {
                    let _ = request.reply.send(Err(e.clone()));
                }
            }
        }
    }
    journal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EmbeddedJournal, JournalOptions, RecordIter};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;
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
            GroupCommitter::spawn(Observed { inner: journal, durable: durable.clone(), appends: appends.clone() });

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
        let committer = GroupCommitter::spawn(journal);
        assert_eq!(committer.append(vec![b"a".to_vec()]).unwrap(), 0);
        assert_eq!(committer.append(Vec::new()).unwrap(), 1);
        assert_eq!(committer.append(vec![b"b".to_vec()]).unwrap(), 1);
    }

    struct Failing;

    impl Journal for Failing {
        fn append(&mut self, _: &[&[u8]]) -> Result<u64, JournalError> {
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
        let committer = GroupCommitter::spawn(Failing);
        let err = committer.append(vec![b"x".to_vec()]).unwrap_err();
        assert!(matches!(err, JournalError::Poisoned { .. }));
    }

    #[test]
    fn appends_after_shutdown_are_refused_and_queued_ones_are_kept() {
        // given a committer with an appender handed out
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap();
        let committer = GroupCommitter::spawn(journal);
        let appender = committer.appender();
        assert_eq!(appender.append(vec![b"kept".to_vec()]).unwrap(), 0);

        // when the committer shuts down
        let journal = committer.shutdown().unwrap();

        // then the acknowledged record is in the journal and the appender is refused
        assert_eq!(journal.next_offset(), 1);
        let err = appender.append(vec![b"late".to_vec()]).unwrap_err();
        assert!(matches!(err, JournalError::CommitterStopped));
    }
}
