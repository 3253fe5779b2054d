//! `switchboard kafka init` and `switchboard replay --kafka` against a real
//! broker (`SWITCHBOARD_TEST_KAFKA`; see `switchboard_kafka::testing`).

use std::process::{Command, Output};

use switchboard::simulate::{self, Scenario};
use switchboard::sink::JournalSink;
use switchboard_journal::{EmbeddedJournal, JournalOptions};
use switchboard_kafka::{testing, KafkaJournal};

fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard")).args(args).output().expect("run switchboard")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn digest(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("no digest in {stdout}"))
        .to_owned()
}

/// A kafka-only configuration file with uniquely named topics.
fn config_file(dir: &std::path::Path, brokers: &str, partitions: i32) -> (std::path::PathBuf, String) {
    let prefix = testing::unique_topic("sb-test-cli");
    let path = dir.join("switchboard.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\n[kafka.topics]\ncommands = \"{prefix}.commands\"\nevents = \"{prefix}.events\"\noutbox = \"{prefix}.outbox\"\nsnapshots = \"{prefix}.snapshots\"\npartitions = {partitions}\n"
        ),
    )
    .unwrap();
    (path, prefix)
}

#[test]
fn kafka_init_creates_the_topics_then_checks_them_and_names_a_mismatch() {
    let Some(brokers) = testing::broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (config, prefix) = config_file(dir.path(), &brokers, 2);
    let config = config.to_str().unwrap();

    let created = switchboard(&["kafka", "init", "--config", config]);
    assert!(created.status.success(), "{}", text(&created));
    assert_eq!(text(&created).matches(": created").count(), 4, "{}", text(&created));
    let again = switchboard(&["kafka", "init", "--config", config]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(text(&again).matches("exists and matches").count(), 4, "{}", text(&again));

    let changed = std::fs::read_to_string(config).unwrap().replace("partitions = 2", "partitions = 5");
    std::fs::write(config, changed).unwrap();
    let refused = switchboard(&["kafka", "init", "--config", config]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let message = text(&refused);
    assert!(message.contains(&format!("topic {prefix}.commands")) && message.contains("2 partitions"), "{message}");
}

#[test]
fn replay_from_kafka_matches_the_same_day_replayed_from_a_directory() {
    let Some(brokers) = testing::broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (config, prefix) = config_file(dir.path(), &brokers, 1);
    let init = switchboard(&["kafka", "init", "--config", config.to_str().unwrap()]);
    assert!(init.status.success(), "{}", text(&init));
    let events = format!("{prefix}.events");

    let scenario = Scenario::from_toml(Scenario::default_toml()).unwrap();
    let mut on_kafka = JournalSink::new(KafkaJournal::open(&brokers, &events, 0).unwrap());
    simulate::run(&scenario, 11, 40, &mut on_kafka).unwrap();
    let data = dir.path().join("data");
    let (journal, _) = EmbeddedJournal::open(&data, JournalOptions::default()).unwrap();
    let mut on_disk = JournalSink::new(journal);
    simulate::run(&scenario, 11, 40, &mut on_disk).unwrap();
    drop(on_disk);

    let from_kafka = switchboard(&["replay", "--kafka", &brokers, "--topic", &events, "--verify"]);
    assert!(from_kafka.status.success(), "{}", text(&from_kafka));
    let from_disk = switchboard(&["replay", "--data", data.to_str().unwrap(), "--verify"]);
    assert!(from_disk.status.success(), "{}", text(&from_disk));
    assert_eq!(digest(&from_kafka), digest(&from_disk), "the same events give the same state on either log");
    assert!(text(&from_kafka).contains("conversations"), "{}", text(&from_kafka));

    // The topic can also be named through the configuration, and one partition read alone.
    let by_config =
        switchboard(&["replay", "--kafka", &brokers, "--config", config.to_str().unwrap(), "--partition", "0"]);
    assert!(by_config.status.success(), "{}", text(&by_config));
    assert_eq!(digest(&by_config), digest(&from_disk));
}

#[test]
fn replay_from_a_missing_topic_says_to_run_kafka_init() {
    let Some(brokers) = testing::broker() else { return };
    let missing = testing::unique_topic("sb-test-absent");
    let output = switchboard(&["replay", "--kafka", &brokers, "--topic", &missing]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("kafka init"), "{}", text(&output));
}
