//! Which Kafka topics Switchboard uses, how they are partitioned, and what
//! each one holds.

use serde::Deserialize;

/// The `[kafka]` table of `switchboard.toml`: where the brokers are and how
/// the topics are laid out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap addresses, comma-separated (`host:port,host:port`).
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// The topics.
    #[serde(default)]
    pub topics: TopicLayout,
    /// Events a partition's owner writes between two snapshots of its
    /// states, at least (0: never), so that a new owner folds only the
    /// tail; a snapshot also waits until the partition's log has grown by
    /// as many bytes as the last one held.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self { brokers: default_brokers(), topics: TopicLayout::default(), snapshot_every: default_snapshot_every() }
    }
}

fn default_snapshot_every() -> u64 {
    50_000
}

fn default_brokers() -> String {
    "127.0.0.1:9092".to_owned()
}

/// The topic names, partition count and replication of one deployment.
///
/// `commands` and `events` have the same partition count and are both keyed
/// by routing domain, so the process that owns partition *p* of `commands`
/// also owns the history of partition *p* of `events`: a domain's commands
/// and facts always meet in one place.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicLayout {
    /// Commands for the engine, keyed by routing domain.
    pub commands: String,
    /// The event log: one record per decision (`JournalBatch`), keyed by
    /// routing domain, kept forever.
    pub events: String,
    /// Messages for the channel connectors to deliver to customers.
    pub outbox: String,
    /// The newest snapshot of each shard, keyed by shard (compacted).
    pub snapshots: String,
    /// Partitions of `commands` and `events` (the unit of sharding), and of
    /// `outbox`.
    pub partitions: i32,
    /// Replicas per partition: 3 in production, 1 on a single development
    /// broker.
    pub replication: i32,
}

impl Default for TopicLayout {
    fn default() -> Self {
        Self {
            commands: "switchboard.commands".to_owned(),
            events: "switchboard.events".to_owned(),
            outbox: "switchboard.outbox".to_owned(),
            snapshots: "switchboard.snapshots".to_owned(),
            partitions: 8,
            replication: 1,
        }
    }
}

/// What a topic is for, which decides how it is created and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    /// `commands`.
    Commands,
    /// `events`.
    Events,
    /// `outbox`.
    Outbox,
    /// `snapshots`.
    Snapshots,
}

/// One topic as it must exist on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// What it is for.
    pub role: TopicRole,
    /// Its name.
    pub name: String,
    /// Its partition count.
    pub partitions: i32,
    /// Its replication factor.
    pub replication: i32,
    /// Topic configuration set at creation and checked afterwards.
    pub config: Vec<(&'static str, &'static str)>,
}

/// The largest record Switchboard writes: a decision's events, or a snapshot.
/// Kafka's default (1 MiB) is too small for a snapshot of a busy tenant.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

const MAX_MESSAGE_BYTES: &str = "16777216";

/// Segment size of `snapshots`: 64 MiB. Compaction never touches a topic's
/// open segment, and Kafka's default segment (1 GiB, or a week) would keep
/// every snapshot written meanwhile, all of which a start reads to find the
/// newest. A segment of a few snapshots' size is closed, then compacted, soon.
const SNAPSHOT_SEGMENT_BYTES: &str = "67108864";

impl TopicLayout {
    /// Checks what a broker cannot: names distinct and counts positive.
    pub fn validate(&self) -> Result<(), String> {
        let names = [&self.commands, &self.events, &self.outbox, &self.snapshots];
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err("topic names must not be empty".to_owned());
            }
            if names[..i].contains(name) {
                return Err(format!("topic name {name:?} is used for two roles; every topic needs its own name"));
            }
        }
        if self.partitions < 1 {
            return Err(format!("partitions must be at least 1 (got {})", self.partitions));
        }
        if self.replication < 1 {
            return Err(format!("replication must be at least 1 (got {})", self.replication));
        }
        Ok(())
    }

    /// Every topic of the layout with the configuration it must have.
    ///
    /// The log is the audit trail, so `events` (and `commands`, which explain
    /// it) are never deleted by age or size; `snapshots` keeps only the
    /// newest record per key. One snapshot topic partition is enough: it is
    /// read once per assignment, by key.
    pub fn specs(&self) -> Vec<TopicSpec> {
        let keep_forever =
            vec![("retention.ms", "-1"), ("retention.bytes", "-1"), ("max.message.bytes", MAX_MESSAGE_BYTES)];
        vec![
            TopicSpec {
                role: TopicRole::Commands,
                name: self.commands.clone(),
                partitions: self.partitions,
                replication: self.replication,
                config: keep_forever.clone(),
            },
            TopicSpec {
                role: TopicRole::Events,
                name: self.events.clone(),
                partitions: self.partitions,
                replication: self.replication,
                config: keep_forever,
            },
            TopicSpec {
                role: TopicRole::Outbox,
                name: self.outbox.clone(),
                partitions: self.partitions,
                replication: self.replication,
                config: vec![("max.message.bytes", MAX_MESSAGE_BYTES)],
            },
            TopicSpec {
                role: TopicRole::Snapshots,
                name: self.snapshots.clone(),
                partitions: 1,
                replication: self.replication,
                config: vec![
                    ("cleanup.policy", "compact"),
                    ("max.message.bytes", MAX_MESSAGE_BYTES),
                    ("segment.bytes", SNAPSHOT_SEGMENT_BYTES),
                ],
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_events_share_the_partition_count_and_snapshots_are_compacted() {
        let layout = TopicLayout { partitions: 12, ..TopicLayout::default() };
        let specs = layout.specs();
        let by_role = |role| specs.iter().find(|s| s.role == role).unwrap();
        assert_eq!(by_role(TopicRole::Commands).partitions, 12);
        assert_eq!(by_role(TopicRole::Events).partitions, 12);
        assert!(by_role(TopicRole::Snapshots).config.contains(&("cleanup.policy", "compact")));
        let segment: usize = by_role(TopicRole::Snapshots)
            .config
            .iter()
            .find(|(k, _)| *k == "segment.bytes")
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert!(
            (2 * MAX_RECORD_BYTES..=128 << 20).contains(&segment),
            "a segment of a few snapshots' pieces: {segment}"
        );
        assert!(by_role(TopicRole::Events).config.contains(&("retention.ms", "-1")));
    }

    #[test]
    fn a_layout_with_a_shared_name_or_no_partitions_is_refused() {
        let shared = TopicLayout { outbox: "switchboard.events".into(), ..TopicLayout::default() };
        assert!(shared.validate().unwrap_err().contains("two roles"));
        let none = TopicLayout { partitions: 0, ..TopicLayout::default() };
        assert!(none.validate().unwrap_err().contains("partitions"));
        assert_eq!(TopicLayout::default().validate(), Ok(()));
    }

    #[test]
    fn settings_read_from_toml_with_defaults_for_what_is_left_out() {
        let settings: KafkaSettings =
            toml_like("brokers = \"10.0.0.1:9092\"\n[topics]\npartitions = 3\nevents = \"cc.events\"\n");
        assert_eq!(settings.brokers, "10.0.0.1:9092");
        assert_eq!(settings.topics.partitions, 3);
        assert_eq!(settings.topics.events, "cc.events");
        assert_eq!(settings.topics.commands, "switchboard.commands");
    }

    fn toml_like(text: &str) -> KafkaSettings {
        toml::from_str(text).unwrap()
    }
}
