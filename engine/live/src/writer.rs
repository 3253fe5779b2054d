//! A shard's writer: the thread between its actor and the journal.
//!
//! The actor decides and moves on; the writer takes every job waiting in its
//! channel, encodes their events, appends them all as one batch through the
//! group committer (which may share the fsync with the other shards'
//! writers) and, once that append is durable, publishes the events, arms
//! their timers and completes each job, in the order they were decided.
//! One append at a time per shard, so batches reach the journal in
//! decision order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use prost::Message;
use switchboard_domain::Envelope;
use switchboard_journal::{Appender, JournalError};
use tokio::sync::broadcast;

use crate::snapshot::ToSnapshots;
use crate::timer::{Armed, Due};
use crate::Published;

/// Called once the job's events are durable (`Ok`) or cannot be (`Err`).
///
/// `Ok` carries the job's *covered* offset: every event the shard decided
/// before or with this job is at a journal offset below it, and every event
/// the shard decides after it will be at an offset at or above it. A
/// snapshot of the shard's domains taken at this job's decision is therefore
/// exactly "every event of these domains below `covered`".
pub(crate) type Done = Box<dyn FnOnce(Result<u64, JournalError>) + Send>;

/// One decision's output. A job without events is a barrier: it completes
/// once everything decided before it is durable.
pub(crate) struct Job {
    pub(crate) events: Vec<Arc<Envelope>>,
    pub(crate) timers: Vec<Due>,
    pub(crate) done: Done,
}

/// Bounds one append's memory and the latency of its first caller.
const MAX_GROUP_BYTES: usize = 8 << 20;

/// Where a writer's durable output goes.
pub(crate) struct Outlets {
    pub(crate) appender: Appender,
    pub(crate) subscribers: broadcast::Sender<Published>,
    pub(crate) timers: Arc<Armed>,
    /// Set on the first failed append; read by the actor, which then stops
    /// deciding (its memory is ahead of the log).
    pub(crate) failed: Arc<OnceLock<JournalError>>,
    /// The end of the highest durable append of any shard, shared by all
    /// writers (see [`covered`]). Starts at the journal's end after recovery.
    pub(crate) durable_end: Arc<AtomicU64>,
    /// This shard's index and the snapshot thread, which folds every durable
    /// group into its replica; `None` when snapshots are off.
    pub(crate) snapshots: Option<(usize, mpsc::Sender<ToSnapshots>)>,
    /// See `EngineOptions::commit_delay`.
    pub(crate) commit_delay: Duration,
}

/// Starts shard `index`'s writer. It ends once every sender of `jobs` is
/// dropped and the jobs already sent are done.
pub(crate) fn spawn(index: usize, jobs: mpsc::Receiver<Job>, outlets: Outlets) -> JoinHandle<()> {
    thread::Builder::new()
        .name(format!("shard-{index}-writer"))
        .spawn(move || write_loop(&jobs, &outlets))
        .expect("the OS refused to start a shard writer thread")
}

fn write_loop(jobs: &mpsc::Receiver<Job>, outlets: &Outlets) {
    // A job found waiting as the previous append completed.
    let mut queued: Option<Job> = None;
    loop {
        let first = match queued.take() {
            Some(job) => {
                // A sleep, not a wait on the channel: waking for every job
                // that arrives meanwhile would cost what the delay saves.
                if !outlets.commit_delay.is_zero() {
                    thread::sleep(outlets.commit_delay);
                }
                job
            }
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        let mut records = Vec::new();
        let mut bytes = 0;
        let mut group = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            for envelope in &job.events {
                let record = envelope.encode_to_vec();
                bytes += record.len();
                records.push(record);
            }
            group.push(job);
            if bytes < MAX_GROUP_BYTES {
                next = jobs.try_recv().ok();
            }
        }
        let count = records.len() as u64;
        let written = match outlets.failed.get() {
            Some(e) => Err(e.clone()),
            None if records.is_empty() => Ok(None),
            None => outlets.appender.append(records).map(Some),
        };
        if let Err(e) = &written {
            if outlets.failed.set(e.clone()).is_ok() {
                tracing::error!(error = %e, "journal append failed: the shard takes no more commands until a restart");
            }
        }
        if let Ok(Some(first)) = &written {
            let events: Published = group.iter().flat_map(|job| job.events.iter().cloned()).collect();
            if let Some((shard, sender)) = &outlets.snapshots {
                // Before any job completes: a snapshot barrier among them must
                // find these events already handed over.
                let durable =
                    ToSnapshots::Durable { shard: *shard, first: *first, events: events.clone(), bytes: bytes as u64 };
                let _ = sender.send(durable);
            }
            // No receiver is fine: nobody is listening yet.
            let _ = outlets.subscribers.send(events);
        }
        if written.is_ok() {
            // Before any job completes, as its caller may count on the deadline.
            outlets.timers.arm(group.iter_mut().flat_map(|job| std::mem::take(&mut job.timers)));
        }
        let mut covered = written.clone().map(|first| covered(&outlets.durable_end, first, count));
        for job in group {
            let events = job.events.len() as u64;
            let this = covered.as_mut().map(|c| c.after(events));
            (job.done)(this.map_err(|e| e.clone()));
        }
        queued = jobs.try_recv().ok();
    }
}

/// Hands out each job's covered offset (see [`Done`]) within one group.
struct Covered {
    /// Where the next job's events start: the group's first offset plus the
    /// events of the jobs already passed.
    position: u64,
    /// The group's end.
    end: u64,
    /// The shared durable end, read after this group's append.
    durable: u64,
}

impl Covered {
    /// The covered offset of a job with `events` events, the next in the group.
    fn after(&mut self, events: u64) -> u64 {
        self.position += events;
        if self.position < self.end {
            // Later jobs of this group, decided after this one, have events
            // right here: the offset must stop at them.
            self.position
        } else {
            // Nothing this shard decided later is in the journal yet, and it
            // will be appended after `durable`, which is already written. An
            // idle shard's snapshot thus moves up with the other shards' appends.
            self.durable.max(self.end)
        }
    }
}

/// Publishes a group's end as durable and returns where its covered offsets
/// start. `first` is the group's first offset, `None` if it had no events.
fn covered(durable_end: &AtomicU64, first: Option<u64>, count: u64) -> Covered {
    let durable = match first {
        Some(first) => durable_end.fetch_max(first + count, Ordering::SeqCst).max(first + count),
        None => durable_end.load(Ordering::SeqCst),
    };
    let first = first.unwrap_or(durable);
    Covered { position: first, end: first + count, durable }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use switchboard_journal::{EmbeddedJournal, GroupCommitter, JournalOptions};

    use super::*;

    /// A writer on a fresh journal with `commit_delay`; the events of each
    /// group it appends come out of its snapshot outlet.
    struct Rig {
        jobs: mpsc::Sender<Job>,
        groups: mpsc::Receiver<ToSnapshots>,
        published: broadcast::Receiver<Published>,
        writer: JoinHandle<()>,
        _committer: GroupCommitter<EmbeddedJournal>,
        _dir: tempfile::TempDir,
    }

    impl Rig {
        fn new(commit_delay: Duration) -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let (journal, _) = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap();
            let committer = GroupCommitter::new(journal);
            let (snapshots, groups) = mpsc::channel();
            let (subscribers, published) = broadcast::channel(16);
            let outlets = Outlets {
                appender: committer.appender(),
                subscribers,
                timers: Arc::default(),
                failed: Arc::new(OnceLock::new()),
                durable_end: Arc::new(AtomicU64::new(0)),
                snapshots: Some((0, snapshots)),
                commit_delay,
            };
            let (jobs, queue) = mpsc::channel();
            Rig { jobs, groups, published, writer: spawn(0, queue, outlets), _committer: committer, _dir: dir }
        }

        /// Sends a job of one event; `done` runs on the writer's thread.
        fn send(&self, sequence: u64, done: impl FnOnce(Result<u64, JournalError>) + Send + 'static) {
            let event = Arc::new(Envelope { domain: "d".into(), sequence, ..Default::default() });
            self.jobs.send(Job { events: vec![event], timers: Vec::new(), done: Box::new(done) }).unwrap();
        }

        /// The sequences of every group appended, in order, once all jobs are
        /// done; each was also published to subscribers as one message.
        fn groups(mut self) -> Vec<Vec<u64>> {
            drop(self.jobs);
            self.writer.join().unwrap();
            let mut published = Vec::new();
            while let Ok(events) = self.published.try_recv() {
                published.push(events.iter().map(|e| e.sequence).collect::<Vec<_>>());
            }
            let groups: Vec<Vec<u64>> = self
                .groups
                .try_iter()
                .map(|group| match group {
                    ToSnapshots::Durable { events, .. } => events.iter().map(|e| e.sequence).collect(),
                    _ => panic!("the writer only hands over durable groups"),
                })
                .collect();
            assert_eq!(published, groups, "subscribers get each append as one message");
            groups
        }
    }

    #[test]
    fn a_job_queued_behind_an_append_waits_the_commit_delay_and_shares_the_next_append() {
        // given a writer with a 1 s commit delay, held after its first append by job 1's callback
        let delay = Duration::from_secs(1);
        let rig = Rig::new(delay);
        let (held, release) = mpsc::channel::<()>();
        let (entered, inside) = mpsc::channel();
        rig.send(1, move |_| {
            entered.send(()).unwrap();
            release.recv().unwrap();
        });
        inside.recv().unwrap();
        let (answers, answered) = mpsc::channel();

        // when job 2 queues up meanwhile, and job 3 only arrives 100 ms after the writer moves on
        let answers_2 = answers.clone();
        rig.send(2, move |r| answers_2.send((2, r.is_ok(), Instant::now())).unwrap());
        held.send(()).unwrap();
        let released = Instant::now();
        thread::sleep(Duration::from_millis(100));
        rig.send(3, move |r| answers.send((3, r.is_ok(), Instant::now())).unwrap());

        // then 2 and 3 are appended together, no earlier than the delay after job 2 was found waiting
        let (first, second) = (answered.recv().unwrap(), answered.recv().unwrap());
        assert_eq!((first.0, first.1, second.0, second.1), (2, true, 3, true));
        assert!(first.2 - released >= delay, "job 2 was appended {:?} after the writer found it", first.2 - released);
        assert_eq!(rig.groups(), [vec![1], vec![2, 3]]);
    }

    #[test]
    fn a_job_that_finds_the_writer_idle_is_appended_at_once() {
        // given a writer with a 10 s commit delay that has nothing to do
        let delay = Duration::from_secs(10);
        let rig = Rig::new(delay);
        let (answers, answered) = mpsc::channel();
        let answers_1 = answers.clone();
        rig.send(1, move |r| answers_1.send(r.is_ok()).unwrap());
        assert!(answered.recv().unwrap());
        // (job 1's callback runs just before the writer looks for more work)
        thread::sleep(Duration::from_millis(200));

        // when one job arrives
        let sent = Instant::now();
        rig.send(2, move |r| answers.send(r.is_ok()).unwrap());

        // then it is durable well within the delay
        assert!(answered.recv().unwrap());
        assert!(sent.elapsed() < delay / 2, "a lone job waited {:?}", sent.elapsed());
        assert_eq!(rig.groups(), [vec![1], vec![2]]);
    }

    #[test]
    fn a_job_covers_up_to_the_next_events_of_its_group_or_else_the_durable_end() {
        // given a group of 3 events at offsets 10..13, while another shard already wrote up to 20
        let durable_end = AtomicU64::new(20);
        let mut covered = covered(&durable_end, Some(10), 3);

        // then jobs followed by later events of the group stop at them, and the last ones get 20
        let offsets: Vec<u64> = [0, 2, 0, 1, 0].into_iter().map(|events| covered.after(events)).collect();
        assert_eq!(offsets, [10, 12, 12, 20, 20]);

        // and a group without events (barriers only) covers the durable end, which its append raised
        let durable_end = AtomicU64::new(5);
        let mut appended = super::covered(&durable_end, Some(5), 2);
        assert_eq!(appended.after(2), 7);
        assert_eq!(super::covered(&durable_end, None, 0).after(0), 7);
    }
}
