//! The Kafka journal and the topic layout against a real broker
//! (`SWITCHBOARD_TEST_KAFKA`; see `switchboard_kafka::testing`).

use switchboard_journal::{conformance, Journal};
use switchboard_kafka::admin::{self, TopicOutcome};
use switchboard_kafka::layout::{TopicRole, TopicSpec};
use switchboard_kafka::{read_batches, testing, Error, KafkaJournal, TopicLayout};

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn fresh_topic(brokers: &str, partitions: i32) -> String {
    let name = testing::unique_topic("sb-test-journal");
    let spec = TopicLayout::default().specs().into_iter().find(|s| s.role == TopicRole::Events).unwrap();
    block_on(admin::create_topic(brokers, &TopicSpec { name: name.clone(), partitions, ..spec })).unwrap();
    name
}

#[test]
fn the_kafka_journal_passes_the_journal_conformance_suite() {
    let Some(brokers) = testing::broker() else { return };
    conformance::run_all(|previous: Option<KafkaJournal>| match previous {
        None => KafkaJournal::open(&brokers, &fresh_topic(&brokers, 1), 0).unwrap(),
        Some(journal) => {
            let topic = journal.topic().to_owned();
            drop(journal);
            KafkaJournal::open(&brokers, &topic, 0).unwrap()
        }
    });
}

/// A commit is acknowledged before the broker moves the partition's last
/// stable offset past it, and another writer's open transaction holds that
/// offset back for as long as it stays open: a read must wait for what the
/// journal acknowledged, not stop at where committed records ended when it
/// began.
#[test]
fn a_read_waits_for_acknowledged_records_behind_another_writers_open_transaction() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::time::Duration;

    let Some(brokers) = testing::broker() else { return };
    let topic = fresh_topic(&brokers, 1);
    let mut journal = KafkaJournal::open(&brokers, &topic, 0).unwrap();
    let other: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &*brokers)
        .set("broker.address.family", "v4")
        .set("transactional.id", format!("{topic}.other"))
        .create()
        .unwrap();
    other.init_transactions(Duration::from_secs(30)).unwrap();
    other.begin_transaction().unwrap();
    other.send(BaseRecord::<(), [u8]>::to(&topic).partition(0).payload(b"not a batch")).map_err(|(e, _)| e).unwrap();
    other.flush(Duration::from_secs(30)).unwrap();

    assert_eq!(journal.append(&[b"one", b"two"]).unwrap(), 0);
    let records = journal.read_from(0).unwrap();
    let abort = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        other.abort_transaction(Duration::from_secs(30)).unwrap();
    });
    let records: Vec<(u64, Vec<u8>)> = records.map(Result::unwrap).collect();
    abort.join().unwrap();
    assert_eq!(records, vec![(0, b"one".to_vec()), (1, b"two".to_vec())]);
}

#[test]
fn partitions_are_separate_journals_and_a_new_writer_fences_the_old_one() {
    let Some(brokers) = testing::broker() else { return };
    let topic = fresh_topic(&brokers, 2);
    let mut old = KafkaJournal::open(&brokers, &topic, 1).unwrap();
    assert_eq!(old.append(&[b"a", b"b"]).unwrap(), 0);

    let mut other_partition = KafkaJournal::open(&brokers, &topic, 0).unwrap();
    assert_eq!(other_partition.next_offset(), 0, "partition 0 has its own numbering");
    assert_eq!(other_partition.append(&[b"x"]).unwrap(), 0);

    let mut new = KafkaJournal::open(&brokers, &topic, 1).unwrap();
    assert_eq!(new.next_offset(), 2);
    let refused = old.append(&[b"zombie"]).expect_err("a fenced writer must not append");
    assert!(refused.to_string().contains("append to"), "{refused}");
    assert_eq!(new.append(&[b"c"]).unwrap(), 2);

    let records: Vec<(u64, Vec<u8>)> = new.read_from(0).unwrap().map(Result::unwrap).collect();
    assert_eq!(records, vec![(0, b"a".to_vec()), (1, b"b".to_vec()), (2, b"c".to_vec())]);
    let reopened = KafkaJournal::open(&brokers, &topic, 1).unwrap();
    assert_eq!(reopened.read_from(1).unwrap().count(), 2, "the zombie's record never became visible");
}

#[test]
fn a_batch_is_one_kafka_record_readable_with_its_journal_offsets() {
    let Some(brokers) = testing::broker() else { return };
    let topic = fresh_topic(&brokers, 1);
    let mut journal = KafkaJournal::open(&brokers, &topic, 0).unwrap();
    journal.append(&[b"one", b"two"]).unwrap();
    journal.append(&[b"three"]).unwrap();
    let batches: Vec<_> = read_batches(&brokers, &topic, 0, 0).unwrap().map(Result::unwrap).collect();
    assert_eq!(batches.len(), 2);
    assert_eq!((batches[0].first_offset, batches[0].records.len()), (0, 2));
    assert_eq!((batches[1].first_offset, batches[1].records.clone()), (2, vec![b"three".to_vec()]));
    assert!(batches[1].kafka_offset > batches[0].kafka_offset);
}

#[test]
fn opening_a_missing_topic_or_partition_says_which() {
    let Some(brokers) = testing::broker() else { return };
    let missing = testing::unique_topic("sb-test-missing");
    let error = KafkaJournal::open(&brokers, &missing, 0).err().expect("no such topic").to_string();
    assert!(error.contains(&missing) && error.contains("kafka init"), "{error}");
    let topic = fresh_topic(&brokers, 1);
    let error = KafkaJournal::open(&brokers, &topic, 3).err().expect("no such partition").to_string();
    assert!(error.contains("partitions 0 to 0"), "{error}");
}

#[test]
fn init_creates_the_layout_then_accepts_it_and_refuses_a_different_one() {
    let Some(brokers) = testing::broker() else { return };
    let layout = testing::unique_layout("sb-test-layout", 3);
    let first = block_on(admin::init(&brokers, &layout)).unwrap();
    assert!(first.topics.iter().all(|(_, outcome)| *outcome == TopicOutcome::Created), "{first}");
    let again = block_on(admin::init(&brokers, &layout)).unwrap();
    assert!(again.topics.iter().all(|(_, outcome)| *outcome == TopicOutcome::Matches), "{again}");

    let wider = TopicLayout { partitions: 4, ..layout.clone() };
    match block_on(admin::init(&brokers, &wider)) {
        Err(Error::LayoutMismatch { topic, problem }) => {
            assert_eq!(topic, layout.commands);
            assert!(problem.contains("3 partitions") && problem.contains("asks for 4"), "{problem}");
        }
        other => panic!("a different partition count must be refused, got {other:?}"),
    }
    let replicated = TopicLayout { replication: 3, ..layout };
    let error = block_on(admin::init(&brokers, &replicated)).unwrap_err().to_string();
    assert!(error.contains("replication factor 1"), "{error}");
}
