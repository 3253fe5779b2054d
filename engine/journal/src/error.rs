//! The one error type every journal operation returns.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything that can go wrong opening, appending to or reading a journal.
///
/// It is `Clone` (the io error sits behind an `Arc`) because the group
/// committer must hand one failed fsync to every caller of the batch.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A filesystem call failed; `path` is the file or directory involved.
    #[error(
        "could not {action} {}: check that the disk is not full or failing and that this process may read and write the --data directory",
        path.display()
    )]
    Io {
        /// The operation that failed, as a verb phrase ("fsync", "open").
        action: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },

    /// Another process (or another handle in this one) holds the writer lock.
    #[error(
        "journal at {} is locked by another writer: stop the other switchboard process or use another --data directory",
        dir.display()
    )]
    Locked {
        /// The journal directory whose `LOCK` file is held.
        dir: PathBuf,
    },

    /// A read-only open was pointed at a directory that does not exist.
    #[error("journal directory {} does not exist: check the --data path", dir.display())]
    NotFound {
        /// The directory that was asked for.
        dir: PathBuf,
    },

    /// Damage that is not a torn tail, so truncating could lose acknowledged records.
    #[error(
        "journal segment {} is corrupt at byte {position} (record offset {offset}): {reason}; refusing to open it for writing so no acknowledged record is cut: restore the directory from a backup, or open it read-only to replay the complete batches before offset {offset}",
        segment.display()
    )]
    Corrupt {
        /// The segment file holding the damage.
        segment: PathBuf,
        /// Byte position of the damage within that file.
        position: u64,
        /// Offset of the damaged record (a read-only open stops at the start
        /// of its batch, which may be earlier).
        offset: u64,
        /// What exactly is wrong there.
        reason: &'static str,
    },

    /// A `.log` file whose name is not a segment name: it may be a renamed segment.
    #[error(
        "unexpected file {} in the journal directory: segments are named <20-digit base offset>.log; move the file out of the directory",
        path.display()
    )]
    StrayFile {
        /// The offending file.
        path: PathBuf,
    },

    /// `read_from` was asked for an offset beyond the last record.
    #[error(
        "cannot read from offset {offset}: the journal ends at offset {next_offset}; read from an offset at or below it"
    )]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The journal's `next_offset` at the time.
        next_offset: u64,
    },

    /// A journal kept on a remote log (Kafka) could not do what was asked.
    #[error("the Kafka journal could not {action}: {reason}")]
    Broker {
        /// The operation that failed, as a verb phrase ("append to events/0").
        action: String,
        /// What the client library or the broker said.
        reason: String,
    },
    /// A record longer than a frame can carry.
    #[error("record of {len} bytes is larger than the journal's {max}-byte limit: split it into smaller events")]
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// [`crate::MAX_RECORD_BYTES`].
        max: usize,
    },

    /// An earlier write or fsync failed, so the file's tail is unknown
    /// (after a failed fsync the kernel may have dropped the dirty pages).
    #[error(
        "journal at {} failed an earlier write and may hold a partial batch: drop it and reopen the journal, which repairs the tail",
        dir.display()
    )]
    Poisoned {
        /// The journal directory.
        dir: PathBuf,
    },

    /// The group committer's thread is gone (it panicked or was shut down).
    #[error(
        "the journal's group-commit thread has stopped: check the log for an earlier error and restart the engine"
    )]
    CommitterStopped,
}

impl JournalError {
    pub(crate) fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| JournalError::Io { action, path: path.to_path_buf(), source: Arc::new(source) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_message_says_what_to_do() {
        let err = JournalError::Locked { dir: PathBuf::from("/data/journal") };
        assert_eq!(
            err.to_string(),
            "journal at /data/journal is locked by another writer: stop the other switchboard process or use another --data directory"
        );
    }

    #[test]
    fn io_error_keeps_path_and_source() {
        let err = JournalError::io("open", Path::new("/x/y.log"))(io::Error::other("boom"));
        assert!(err.to_string().starts_with("could not open /x/y.log: "));
        let source = std::error::Error::source(&err).expect("source kept");
        assert_eq!(source.to_string(), "boom");
    }
}
