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
