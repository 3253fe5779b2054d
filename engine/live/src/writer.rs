//! A shard's writer: the thread between its actor and the journal.
//!
//! The actor decides and moves on; the writer takes every job waiting in its
//! channel, encodes their events, appends them all as one batch through the
//! group committer (which may share the fsync with the other shards'
//! writers) and, once that append is durable, publishes the events, arms
//! their timers and completes each job, in the order they were decided.
//! One append at a time per shard, so batches reach the journal in
//! decision order.

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};

use prost::Message;
use switchboard_domain::Envelope;
use switchboard_journal::{Appender, JournalError};
use tokio::sync::{broadcast, mpsc as tokio_mpsc};

use crate::timer::Due;

/// Called once the job's events are durable (`Ok`) or cannot be (`Err`).
pub(crate) type Done = Box<dyn FnOnce(Result<(), JournalError>) + Send>;

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
    pub(crate) subscribers: broadcast::Sender<Arc<Envelope>>,
    pub(crate) timers: tokio_mpsc::UnboundedSender<Due>,
    /// Set on the first failed append; read by the actor, which then stops
    /// deciding (its memory is ahead of the log).
    pub(crate) failed: Arc<OnceLock<JournalError>>,
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
    while let Ok(first) = jobs.recv() {
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
        let written = match outlets.failed.get() {
            Some(e) => Err(e.clone()),
            None if records.is_empty() => Ok(()),
            None => outlets.appender.append(records).map(|_| ()),
        };
        if let Err(e) = &written {
            if outlets.failed.set(e.clone()).is_ok() {
                tracing::error!(error = %e, "journal append failed: the shard takes no more commands until a restart");
            }
        }
        for job in group {
            if written.is_ok() {
                for envelope in &job.events {
                    // No receiver is fine: nobody is listening yet.
                    let _ = outlets.subscribers.send(envelope.clone());
                }
                for due in job.timers {
                    let _ = outlets.timers.send(due);
                }
            }
            (job.done)(written.clone());
        }
    }
}
