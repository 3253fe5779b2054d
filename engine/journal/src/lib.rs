//! Switchboard's append-only event log.
//!
//! The engine's state is a fold over this log, so the journal's one promise is
//! that an acknowledged record is never lost or altered, and that a crash
//! leaves at most a torn tail that reopening cuts cleanly. It stores opaque
//! byte strings (encoded envelopes) numbered by dense `u64` offsets from 0.
//!
//! Batches are atomic: the records of one [`Journal::append`] (the events of
//! one decision) are recovered all together or not at all, so a replay never
//! folds half a decision.
//!
//! - [`Journal`] is the interface; [`EmbeddedJournal`] implements it with
//!   fsync'd segment files (layout in `docs/journal-format.md`).
//! - [`ReadOnlyJournal`] is for replay and audit: it never locks or writes.
//! - [`GroupCommitter`] shares one journal between many threads, one fsync per
//!   group of waiting batches.

mod embedded;
mod error;
mod format;
mod group;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use embedded::{Damage, DamageKind, EmbeddedJournal, JournalOptions, ReadOnlyJournal, Recovery};
pub use error::JournalError;
pub use format::MAX_RECORD_BYTES;
pub use group::{Appender, GroupCommitter};

/// One record as read back: its offset and its bytes.
pub type Record = (u64, Vec<u8>);

/// Records from a start offset to the end of the journal as it was when the
/// iterator was made. After the first `Err` it yields nothing more.
///
/// Boxed so that [`Journal`] stays object-safe and the Kafka journal can return
/// its own iterator type.
pub type RecordIter = Box<dyn Iterator<Item = Result<Record, JournalError>> + Send>;

/// An append-only, durable log of byte records with dense offsets from 0.
///
/// Implemented by [`EmbeddedJournal`] and by `switchboard_kafka::KafkaJournal`;
/// [`conformance`] (feature `conformance`) checks any implementation.
pub trait Journal {
    /// Appends `records` in order as one durable, atomic batch and returns
    /// the offset of the first one.
    ///
    /// Returns only once every record of the batch is durable (one fsync for
    /// the batch). If the process dies before that, a reopen finds either the
    /// whole batch or none of it, never a first part. An empty batch writes
    /// nothing and returns [`next_offset`](Journal::next_offset).
    fn append(&mut self, records: &[&[u8]]) -> Result<u64, JournalError>;

    /// The offset the next appended record will get, i.e. the record count.
    fn next_offset(&self) -> u64;

    /// Reads every durable record from `offset` on.
    ///
    /// Only records of complete batches are ever returned (`offset` itself may
    /// be in the middle of one).
    ///
    /// `offset == next_offset()` yields nothing; a larger offset is
    /// [`JournalError::OffsetOutOfRange`]. Records appended after this call
    /// are not seen by the returned iterator.
    fn read_from(&self, offset: u64) -> Result<RecordIter, JournalError>;
}

impl<J: Journal + ?Sized> Journal for Box<J> {
    fn append(&mut self, records: &[&[u8]]) -> Result<u64, JournalError> {
        (**self).append(records)
    }

    fn next_offset(&self) -> u64 {
        (**self).next_offset()
    }

    fn read_from(&self, offset: u64) -> Result<RecordIter, JournalError> {
        (**self).read_from(offset)
    }
}
