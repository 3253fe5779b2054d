//! Switchboard's wire and log schema: the protobuf messages of events,
//! commands and configuration, generated from `switchboard/v1/*.proto`.
//!
//! Everything a conversation or an agent lives through is an [`v1::Envelope`]
//! in the log; everything that causes it is a [`v1::Command`].

/// Version 1 of the schema (`package switchboard.v1`).
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/switchboard.v1.rs"));
}

/// The schema's source files, for tools that decode records themselves
/// (e.g. `protoc --decode switchboard.v1.Envelope`).
pub const PROTO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/switchboard/v1");

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::v1::{envelope, AgentStateChanged, Envelope, EventBatch, JournalBatch};

    /// Kafka tools decode an events record as `EventBatch` while the engine
    /// writes `JournalBatch` with opaque records: the two must be the same bytes.
    #[test]
    fn a_journal_batch_decodes_as_an_event_batch() {
        let event = Envelope {
            domain: "acme".into(),
            sequence: 7,
            event_id: "acme/7".into(),
            at_ms: 1_000,
            command_id: "c-1".into(),
            event: Some(envelope::Event::AgentStateChanged(AgentStateChanged::default())),
        };
        let written = JournalBatch {
            first_offset: 41,
            records: vec![event.encode_to_vec(), event.encode_to_vec()],
            command_id: "c-1".into(),
            refused: None,
        };
        let read = EventBatch::decode(written.encode_to_vec().as_slice()).unwrap();
        assert_eq!(read.first_offset, 41);
        assert_eq!(read.command_id, "c-1");
        assert_eq!(read.events, vec![event.clone(), event]);
    }
}
