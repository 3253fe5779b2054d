//! Why the engine would not start, and why a command got no events.

use std::path::PathBuf;

use switchboard_domain::{Rejection, Violation};
use switchboard_journal::JournalError;

/// Why [`Engine::start`](crate::Engine::start) or
/// [`Engine::shutdown`](crate::Engine::shutdown) failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The options cannot work.
    #[error("invalid engine options: {0}")]
    Options(&'static str),
    /// The journal could not be opened, read or closed (a held lock included).
    #[error("journal in {}: {source}", dir.display())]
    Journal {
        /// The data directory.
        dir: PathBuf,
        /// What the journal reported.
        #[source]
        source: JournalError,
    },
    /// A record that is not an envelope: the engine cannot explain the log.
    #[error("journal record at offset {offset} is not a switchboard.v1.Envelope: {source}; refusing to start on a log it cannot explain")]
    Undecodable {
        /// The record's offset.
        offset: u64,
        /// What prost reported.
        #[source]
        source: prost::DecodeError,
    },
    /// An event the fold refuses: the engine cannot explain the log.
    #[error(
        "journal record at offset {offset} breaks a rule: {violation}; refusing to start on a log it cannot explain"
    )]
    Violation {
        /// The record's offset.
        offset: u64,
        /// The rule and details.
        violation: Violation,
    },
    /// The folded state of a domain breaks an invariant.
    #[error("domain {domain} breaks an invariant after recovery: {violation}")]
    Invariant {
        /// The routing domain.
        domain: String,
        /// The rule and details.
        violation: Violation,
    },
    /// The configuration holds a command that is not configuration: it would
    /// be executed again at every start.
    #[error("configuration command {command_id} is not a queue, agent or reason configuration")]
    NotConfiguration {
        /// The command's id.
        command_id: String,
    },
    /// A configuration command was refused.
    #[error("configuration command {command_id} failed: {source}")]
    Configuration {
        /// The command's id.
        command_id: String,
        /// Why.
        #[source]
        source: SubmitError,
    },
    /// A command the engine issues itself at start-up (expiring what fell
    /// due while it was down) could not be made durable.
    #[error("start-up command {command_id} failed: {source}")]
    StartUp {
        /// The command's id.
        command_id: String,
        /// Why.
        #[source]
        source: SubmitError,
    },
    /// A shard's actor or a blocking start-up task went away.
    #[error("the engine's runtime failed: {0}")]
    Runtime(String),
}

/// Why [`Engine::submit`](crate::Engine::submit) produced no events.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// The domain refused the command; nothing was written.
    #[error("rejected: {0}")]
    Rejected(Rejection),
    /// The command could not be decided or made durable; see [`Outage`].
    #[error("unavailable: {0}")]
    Unavailable(Outage),
}

/// Why a shard or domain cannot take commands.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Outage {
    /// The engine is shutting down or has shut down.
    #[error("the engine is stopped")]
    Stopped,
    /// An append failed: the shard's memory is ahead of its log, so it takes
    /// no more commands until a restart recovers it from the journal.
    #[error("the journal failed, restart the engine to recover from it: {0}")]
    JournalFailed(JournalError),
    /// A command hit an internal error of the domain, whose state may no
    /// longer match its log; a restart rebuilds it.
    #[error("domain {domain} is out of service until a restart rebuilds it from the log: {reason}")]
    DomainBroken {
        /// The routing domain.
        domain: String,
        /// The internal error.
        reason: String,
    },
}

/// Why a snapshot could not be written or was not used at start-up.
///
/// Snapshots are only a cache of the journal: none of these stops the
/// engine. A snapshot not written is logged; one not used is passed over
/// for an older one or for a fold of the whole journal, and listed in
/// [`RecoveryReport::snapshots_rejected`](crate::RecoveryReport::snapshots_rejected).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing a file or directory failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "fsync", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS reported.
        #[source]
        source: std::io::Error,
    },
    /// The file is torn, altered or not a snapshot this engine writes.
    #[error("snapshot {} is damaged: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A sound snapshot of a format this engine does not read (one written
    /// before an upgrade): passed over, the journal holds everything.
    #[error("snapshot {} is of format {format}, this engine reads {reads}: passed over", path.display())]
    OtherFormat {
        /// The file.
        path: PathBuf,
        /// The format it is written in.
        format: u32,
        /// The format this engine reads.
        reads: u32,
    },
    /// The body cannot be encoded, or does not decode as the body this
    /// engine writes.
    #[error("snapshot {}: {source}", path.display())]
    Encoding {
        /// The file.
        path: PathBuf,
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
    /// The snapshot claims events the journal does not hold (the journal
    /// was replaced or lost records): using it would invent history.
    #[error("snapshot {} covers the journal up to offset {covered}, but the journal ends at {journal_end}", path.display())]
    BeyondJournal {
        /// The file.
        path: PathBuf,
        /// The offset it covers.
        covered: u64,
        /// The journal's end at start-up.
        journal_end: u64,
    },
    /// The journal's tail disagrees with the snapshot (an event the
    /// snapshot should hold but does not, or one the fold refuses after it).
    #[error("snapshot {} disagrees with the journal: {reason}", path.display())]
    Disagrees {
        /// The file.
        path: PathBuf,
        /// The first disagreement found.
        reason: String,
    },
}
