//! Switchboard's live engine: routing domains hosted in actix actors, every
//! decision durable in the journal before anyone hears of it.
//!
//! A routing domain lives in exactly one shard, chosen by a stable hash of
//! its name. Each shard is one [`actix::Arbiter`] (thread) running one actor
//! that owns its domains' [`DomainState`]s and decides commands with
//! [`DomainState::execute`]; a writer thread per shard makes the decided
//! events durable through the journal's group committer, and only then
//! replies, publishes the events to subscribers and arms their timers.
//! Periodic snapshots of each shard's states, taken only from what is
//! durable, let a start fold just the journal's tail.
//! Design and reasoning: `docs/live-engine.md`.

mod engine;
mod error;
mod recovery;
mod shard;
mod snapshot;
mod timer;
mod writer;

pub use engine::{Engine, EngineOptions, DEFAULT_COMMIT_DELAY};
pub use error::{EngineError, Outage, SnapshotError, SubmitError};
pub use recovery::RecoveryReport;
pub use shard::{changes_nothing, is_configuration, Decision, DomainEntry, Mode, Recent};
pub use snapshot::{body_format as snapshot_format, read_states as read_snapshot_states, SnapshotCadence};
pub use switchboard_domain::{Command, DomainState, Envelope, Rejection};
pub use timer::{timers_for, timers_from_state, Due, Timer};

/// The events of one durable append, in journal order: what subscribers
/// receive. One message per append rather than per event: a broadcast send
/// per event woke the followers' thread and took the channel's lock ~20,000
/// times a second at 2000 lifecycles/s.
pub type Published = std::sync::Arc<[std::sync::Arc<Envelope>]>;

/// The wall clock in milliseconds since the Unix epoch: the time commands
/// are stamped with and timers are measured against.
fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
