//! The simulator's events into a journal, as protobuf envelopes.

use prost::Message;
use switchboard_journal::Journal;
use switchboard_proto::v1::Envelope;

use crate::simulate::{EventSink, SinkError};

/// Writes each command's envelopes to a journal as one durable batch.
///
/// One batch per command, as the live engine writes them: the journal keeps
/// or drops a batch whole, so a crash can cost at most the command being
/// written, never half of a decision.
pub struct JournalSink<J: Journal> {
    journal: J,
    encoded: Vec<Vec<u8>>,
}

impl<J: Journal> JournalSink<J> {
    /// A sink over `journal`.
    pub fn new(journal: J) -> Self {
        Self { journal, encoded: Vec::new() }
    }

    /// The journal, with everything appended so far durable.
    pub fn into_journal(self) -> J {
        self.journal
    }
}

impl<J: Journal> EventSink for JournalSink<J> {
    fn append(&mut self, events: &[Envelope]) -> Result<(), SinkError> {
        self.encoded.clear();
        self.encoded.extend(events.iter().map(Message::encode_to_vec));
        let records: Vec<&[u8]> = self.encoded.iter().map(Vec::as_slice).collect();
        self.journal.append(&records).map_err(SinkError::new)?;
        Ok(())
    }
}
