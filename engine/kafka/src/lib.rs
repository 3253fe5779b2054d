//! Switchboard on Apache Kafka.
//!
//! - [`layout`]: the topics (`commands`, `events`, `outbox`, `snapshots`),
//!   their names, partitions and replication, from `switchboard.toml`.
//! - [`admin::init`]: `switchboard kafka init`, which creates them or refuses a
//!   layout that does not match.
//! - [`KafkaJournal`]: the journal trait on one partition of a topic, with an
//!   idempotent producer and `acks=all`; each batch is one Kafka record.
//! - [`testing`]: how tests find the broker they must run against.

pub mod admin;
pub mod edge;
mod journal;
pub mod layout;
mod snapshot;
pub mod testing;
mod transaction;
pub mod worker;

pub use journal::{partition_count, read_batches, Batch, KafkaJournal};
pub use layout::{KafkaSettings, TopicLayout};

/// What can go wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client library refused or failed an operation.
    #[error("Kafka: could not {action}: {source}; check that the brokers are reachable (--kafka / [kafka] brokers)")]
    Client {
        /// What was being done.
        action: String,
        /// The client library's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The broker answered an operation with an error.
    #[error("Kafka: could not {action}: the broker said {reason}")]
    Broker {
        /// What was being done.
        action: String,
        /// The broker's error.
        reason: String,
    },
    /// The layout in the configuration is not a valid one.
    #[error("invalid [kafka.topics] layout: {0}")]
    InvalidLayout(String),
    /// An existing topic differs from the layout.
    #[error("topic {topic} does not match the configuration: {problem}")]
    LayoutMismatch {
        /// The topic.
        topic: String,
        /// How it differs, and what to do.
        problem: String,
    },
    /// A topic the operation needs is not on the cluster.
    #[error("topic {0} does not exist: run `switchboard kafka init` first")]
    MissingTopic(String),
    /// A record on the topic is not a Switchboard batch.
    #[error("record at {topic}/{partition} offset {offset} is not a Switchboard batch: {reason}")]
    Undecodable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The Kafka offset of the record.
        offset: i64,
        /// What the decoder said.
        reason: String,
    },
}

impl Error {
    fn client(action: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Self::Client { action: action.into(), source }
    }
}
