//! The journal on one partition of a Kafka topic.
//!
//! A batch (the events of one decision) is one Kafka record, a
//! `switchboard.v1.JournalBatch`: a Kafka record is written and read whole,
//! which is the journal's atomicity promise for free. Journal offsets count
//! records (events) from 0 per partition and are carried in each batch
//! (`first_offset`), because Kafka's own offsets count batches and also
//! transaction markers, so they are neither dense nor the journal's numbering.
//!
//! The writer is a transactional producer (which is idempotent and
//! `acks=all`): a batch is acknowledged once every in-sync replica has it,
//! and opening a journal fences any older writer of the same partition, the
//! Kafka counterpart of the embedded journal's `LOCK` file. Readers read
//! committed records only, so a batch whose writer died mid-way is never seen.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use std::sync::Mutex;
use switchboard_journal::{Journal, JournalError, RecordIter};
use switchboard_proto::v1::{CommandRefused, JournalBatch};

use crate::layout::MAX_RECORD_BYTES;
use crate::transaction::serve_or_pause;
use crate::Error;

/// How long a read waits for the broker before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an append or open waits for the broker before giving up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A record's key and value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// What one fetch may carry: the largest record plus room for its framing.
const FETCH_BYTES: usize = MAX_RECORD_BYTES + 64 * 1024;

/// What every reader of Switchboard's topics shares: committed records only,
/// the end of a partition reported, no offsets committed (positions are the
/// reader's own), and fetches large enough for the largest record.
pub(crate) fn read_committed_config(brokers: &str, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        // A batch larger than the fetch size would read as the end of the
        // partition, so every fetch must be able to carry the largest one.
        .set("fetch.message.max.bytes", FETCH_BYTES.to_string())
        .set("fetch.max.bytes", FETCH_BYTES.to_string())
        .set("receive.message.max.bytes", (FETCH_BYTES + 1024 * 1024).to_string());
    config
}

/// One record of an events partition, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Kafka's offset of the record.
    pub kafka_offset: i64,
    /// Journal offset of the first record of the batch.
    pub first_offset: u64,
    /// The journal records (encoded envelopes).
    pub records: Vec<Vec<u8>>,
    /// The command the batch answers (engine-written batches only).
    pub command_id: String,
    /// Why the command was refused, if it was (then `records` is empty).
    pub refused: Option<CommandRefused>,
}

impl Batch {
    /// The journal offset after this batch.
    pub fn end_offset(&self) -> u64 {
        self.first_offset + self.records.len() as u64
    }
}

/// A consumer whose teardown runs on a thread of its own: librdkafka's
/// destroy waits about 100 ms for its threads, which every read, and every
/// partition's rebuild, would otherwise wait out once or twice.
struct Detached(Option<BaseConsumer>);

impl std::ops::Deref for Detached {
    type Target = BaseConsumer;

    fn deref(&self) -> &BaseConsumer {
        self.0.as_ref().expect("a consumer until dropped")
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            // Should the thread not start, the closure and so the consumer
            // are dropped right here: slower, not wrong.
            let _ = std::thread::Builder::new().name("kafka-reader-end".into()).spawn(move || drop(consumer));
        }
    }
}

/// A consumer of one partition that reads committed batches in order.
struct PartitionReader {
    consumer: Detached,
    brokers: String,
    topic: String,
    partition: i32,
    /// The Kafka offset to read on from: where it was sought, or after the
    /// last record it returned.
    position: i64,
    /// Whether `consumer` was given a partition (else a seek may use it).
    assigned: bool,
}

/// How long a reader may hear nothing (no record, no end of partition)
/// before it starts over with a fresh consumer at its position. A consumer
/// assigned right after a transaction's commit sometimes never reported
/// either (seen about once in ten conformance runs, each time waiting out
/// the whole read timeout).
const QUIET_LIMIT: Duration = Duration::from_secs(2);

impl PartitionReader {
    fn new(brokers: &str, topic: &str, partition: i32) -> Result<Self, Error> {
        Ok(Self {
            consumer: Self::consumer(brokers)?,
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            partition,
            position: 0,
            assigned: false,
        })
    }

    fn consumer(brokers: &str) -> Result<Detached, Error> {
        read_committed_config(brokers, "switchboard-reader")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            // A read stops at the partition's end, which it learns from a
            // fetch that finds nothing new; the broker holds such a fetch
            // this long (default 500 ms), which was most of a small read
            // and of every partition's rebuild.
            .set("fetch.wait.max.ms", "10")
            .create()
            .map(|consumer| Detached(Some(consumer)))
            .map_err(|e| Error::client("create a consumer", e))
    }

    /// (low, high) watermarks: the first Kafka offset kept, and the next one to be written.
    fn watermarks(&self) -> Result<(i64, i64), Error> {
        self.consumer
            .fetch_watermarks(&self.topic, self.partition, READ_TIMEOUT)
            .map_err(|e| Error::client(format!("read the offsets of {}/{}", self.topic, self.partition), e))
    }

    /// Positions the reader at `kafka_offset`. A fresh consumer each time:
    /// re-assigning a partition that is being fetched can lose the
    /// end-of-partition event, and a reader would then wait for nothing.
    fn seek(&mut self, kafka_offset: i64) -> Result<(), Error> {
        self.position = kafka_offset;
        if self.assigned {
            self.consumer = Self::consumer(&self.brokers)?;
        }
        self.assigned = true;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, self.partition, Offset::Offset(kafka_offset))
            .map_err(|e| Error::client("build a partition list", e))?;
        self.consumer.assign(&list).map_err(|e| Error::client(format!("read {}/{}", self.topic, self.partition), e))
    }

    /// The next committed record before Kafka offset `end` (its offset, key
    /// and value), or `None` at the end.
    fn next_record(&mut self, end: i64) -> Result<Option<(i64, KeyValue)>, Error> {
        let deadline = Instant::now() + READ_TIMEOUT;
        let mut passing = None;
        let mut heard = Instant::now();
        loop {
            if heard.elapsed() > QUIET_LIMIT && Instant::now() < deadline {
                tracing::debug!(topic = %self.topic, partition = self.partition, position = self.position, "reader quiet: starting over");
                self.seek(self.position)?;
                heard = Instant::now();
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                None if Instant::now() > deadline => {
                    let last = passing.map_or(String::new(), |e: KafkaError| format!(" (last error: {e})"));
                    return Err(Error::Broker {
                        action: format!("read {}/{}", self.topic, self.partition),
                        reason: format!("no answer within {} s{last}", READ_TIMEOUT.as_secs()),
                    });
                }
                None => continue,
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(None),
                // librdkafka reports a lost connection or a moving leader and
                // recovers by itself: wait for it, within the deadline.
                Some(Err(e)) if is_passing(&e) && Instant::now() < deadline => {
                    tracing::debug!(error = %e, topic = %self.topic, partition = self.partition, "reading on after");
                    passing = Some(e);
                    heard = Instant::now();
                }
                Some(Err(e)) => return Err(Error::client(format!("read {}/{}", self.topic, self.partition), e)),
                Some(Ok(message)) if message.offset() >= end => return Ok(None),
                Some(Ok(message)) => {
                    let key = message.key().unwrap_or_default().to_vec();
                    let value = message.payload().unwrap_or_default().to_vec();
                    self.position = message.offset() + 1;
                    return Ok(Some((message.offset(), (key, value))));
                }
            }
        }
    }

    /// The next committed batch before Kafka offset `end`, or `None` at the end.
    fn next_batch(&mut self, end: i64) -> Result<Option<Batch>, Error> {
        match self.next_record(end)? {
            Some((offset, (_, value))) => decode(&value, &self.topic, self.partition, offset).map(Some),
            None => Ok(None),
        }
    }
}

fn decode(payload: &[u8], topic: &str, partition: i32, kafka_offset: i64) -> Result<Batch, Error> {
    let batch = JournalBatch::decode(payload).map_err(|e| Error::Undecodable {
        topic: topic.to_owned(),
        partition,
        offset: kafka_offset,
        reason: e.to_string(),
    })?;
    Ok(Batch {
        kafka_offset,
        first_offset: batch.first_offset,
        records: batch.records,
        command_id: batch.command_id,
        refused: batch.refused,
    })
}

/// Whether a consumer error is one librdkafka recovers from by itself (the
/// connection, the leader or a request's time), not a fact about the data
/// (a missing topic, an offset out of range, an undecodable record).
fn is_passing(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::BrokerTransportFailure
                | Code::AllBrokersDown
                | Code::OperationTimedOut
                | Code::RequestTimedOut
                | Code::NetworkException
                | Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::NotCoordinator
                | Code::CoordinatorLoadInProgress
        )
    )
}

/// Reads `topic`/`partition` from Kafka offset `from` to its end as it is
/// now, with `next` taking one item off the reader.
fn read_until_end<T>(
    brokers: &str,
    topic: &str,
    partition: i32,
    from: i64,
    next: impl Fn(&mut PartitionReader, i64) -> Result<Option<T>, Error> + Send,
) -> Result<impl Iterator<Item = Result<T, Error>> + Send, Error> {
    let mut reader = PartitionReader::new(brokers, topic, partition)?;
    let (low, end) = reader.watermarks()?;
    let start = from.max(low);
    let mut done = start >= end;
    if !done {
        reader.seek(start)?;
    }
    Ok(std::iter::from_fn(move || {
        if done {
            return None;
        }
        match next(&mut reader, end) {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                done = true;
                None
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    }))
}

/// Every committed batch of `topic`/`partition` from Kafka offset `from` to
/// the end as it is now, in order. For replay and for rebuilding a shard.
pub fn read_batches(
    brokers: &str,
    topic: &str,
    partition: i32,
    from: i64,
) -> Result<impl Iterator<Item = Result<Batch, Error>> + Send, Error> {
    read_until_end(brokers, topic, partition, from, PartitionReader::next_batch)
}

/// Every committed record of `topic`/`partition` from Kafka offset `from` to
/// the end as it is now, as (key, value).
pub fn read_records(
    brokers: &str,
    topic: &str,
    partition: i32,
    from: i64,
) -> Result<impl Iterator<Item = Result<KeyValue, Error>> + Send, Error> {
    read_until_end(brokers, topic, partition, from, |reader, end| {
        Ok(reader.next_record(end)?.map(|(_, record)| record))
    })
}

/// The number of partitions of `topic`, or [`Error::MissingTopic`].
pub fn partition_count(brokers: &str, topic: &str) -> Result<i32, Error> {
    let reader = PartitionReader::new(brokers, topic, 0)?;
    let metadata = reader
        .consumer
        .fetch_metadata(Some(topic), READ_TIMEOUT)
        .map_err(|e| Error::client(format!("read the metadata of {topic}"), e))?;
    match metadata.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len() as i32),
        _ => Err(Error::MissingTopic(topic.to_owned())),
    }
}

/// The last committed batch of a partition, if any: where the journal ends.
fn last_batch(reader: &mut PartitionReader) -> Result<Option<Batch>, Error> {
    let (low, high) = reader.watermarks()?;
    // Transaction markers take Kafka offsets too, so the last record may not
    // be a batch: look back a little, then further, until one is found.
    let mut back = 8;
    loop {
        let start = (high - back).max(low);
        if start >= high {
            return Ok(None);
        }
        reader.seek(start)?;
        let mut last = None;
        while let Some(batch) = reader.next_batch(high)? {
            last = Some(batch);
        }
        if last.is_some() || start == low {
            return Ok(last);
        }
        back *= 8;
    }
}

fn broker_error(action: impl Into<String>, reason: impl ToString) -> JournalError {
    JournalError::Broker { action: action.into(), reason: reason.to_string() }
}

/// Keeps the outcome of the last delivery, for the append waiting on it.
#[derive(Default)]
struct LastDelivery(Mutex<Option<Result<i64, String>>>);

impl ClientContext for LastDelivery {}

impl ProducerContext for LastDelivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let outcome = match result {
            Ok(message) => Ok(message.offset()),
            Err((error, _)) => Err(error.to_string()),
        };
        *self.0.lock().unwrap() = Some(outcome);
    }
}

/// The [`Journal`] on one partition of a Kafka topic (see the module docs).
pub struct KafkaJournal {
    brokers: String,
    topic: String,
    partition: i32,
    /// Polled by the appending thread itself, which serves the delivery
    /// report as soon as it arrives (a background poller would add latency).
    producer: BaseProducer<LastDelivery>,
    next_offset: u64,
    /// Journal offset of each batch this handle wrote → (Kafka offset, length),
    /// so reads of recent records start without a search.
    written: BTreeMap<u64, (i64, u64)>,
    poisoned: bool,
}

impl KafkaJournal {
    /// Opens the journal on `topic`/`partition` (the topic must exist),
    /// fencing any other writer of it, and finds where it ends.
    pub fn open(brokers: &str, topic: &str, partition: i32) -> Result<Self, JournalError> {
        let action = format!("open {topic}/{partition}");
        let partitions = partition_count(brokers, topic).map_err(|e| broker_error(&action, e))?;
        if partition < 0 || partition >= partitions {
            return Err(broker_error(&action, format!("the topic has partitions 0 to {}", partitions - 1)));
        }
        let producer: BaseProducer<LastDelivery> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("broker.address.family", "v4")
            .set("transactional.id", format!("switchboard-journal.{topic}.{partition}"))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.max.bytes", (MAX_RECORD_BYTES + 64 * 1024).to_string())
            .set("message.timeout.ms", WRITE_TIMEOUT.as_millis().to_string())
            .create_with_context(LastDelivery::default())
            .map_err(|e| broker_error(&action, e))?;
        // Fences an older writer and settles its unfinished transaction, so
        // the tail read below is final.
        producer.init_transactions(WRITE_TIMEOUT).map_err(|e| broker_error(&action, e))?;
        let mut reader = PartitionReader::new(brokers, topic, partition).map_err(|e| broker_error(&action, e))?;
        let next_offset = last_batch(&mut reader).map_err(|e| broker_error(&action, e))?.map_or(0, |b| b.end_offset());
        Ok(Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            partition,
            producer,
            next_offset,
            written: BTreeMap::new(),
            poisoned: false,
        })
    }

    /// The topic this journal is on.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition this journal is on.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The Kafka offset of the batch holding journal offset `offset`
    /// (`offset < next_offset`): from this handle's own appends, or by a
    /// binary search over Kafka offsets, since `first_offset` grows with them.
    fn locate(&self, reader: &mut PartitionReader, offset: u64) -> Result<i64, Error> {
        if let Some((first, &(kafka_offset, len))) = self.written.range(..=offset).next_back() {
            if offset < first + len {
                return Ok(kafka_offset);
            }
        }
        let (mut low, mut high) = reader.watermarks()?;
        let end = high;
        while low < high {
            let middle = low + (high - low) / 2;
            reader.seek(middle)?;
            match reader.next_batch(end)? {
                Some(batch) if batch.first_offset <= offset => {
                    if offset < batch.end_offset() {
                        return Ok(batch.kafka_offset);
                    }
                    low = batch.kafka_offset + 1;
                }
                _ => high = middle,
            }
        }
        Err(Error::Broker {
            action: format!("find journal offset {offset} in {}/{}", self.topic, self.partition),
            reason: "no batch holds it: the topic was truncated or written by something else".into(),
        })
    }

    fn send(&mut self, payload: &[u8]) -> Result<i64, String> {
        self.producer.begin_transaction().map_err(|e| e.to_string())?;
        *self.producer.context().0.lock().unwrap() = None;
        let record = BaseRecord::<(), [u8]>::to(&self.topic).partition(self.partition).payload(payload);
        self.producer.send(record).map_err(|(e, _)| e.to_string())?;
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let kafka_offset = loop {
            if let Some(outcome) = self.producer.context().0.lock().unwrap().take() {
                break outcome?;
            }
            if Instant::now() > deadline {
                return Err(format!("no acknowledgement within {} s", WRITE_TIMEOUT.as_secs()));
            }
            serve_or_pause(&self.producer);
        };
        self.producer.commit_transaction(WRITE_TIMEOUT).map_err(|e| e.to_string())?;
        Ok(kafka_offset)
    }
}

impl Journal for KafkaJournal {
    fn append(&mut self, records: &[&[u8]]) -> Result<u64, JournalError> {
        let action = format!("append to {}/{}", self.topic, self.partition);
        if self.poisoned {
            return Err(broker_error(
                action,
                "an earlier append failed and may or may not be in the log: reopen the journal to learn where it ends",
            ));
        }
        if records.is_empty() {
            return Ok(self.next_offset);
        }
        let first = self.next_offset;
        let batch = JournalBatch {
            first_offset: first,
            records: records.iter().map(|r| r.to_vec()).collect(),
            ..JournalBatch::default()
        };
        let payload = batch.encode_to_vec();
        if payload.len() > MAX_RECORD_BYTES {
            return Err(JournalError::RecordTooLarge { len: payload.len(), max: MAX_RECORD_BYTES });
        }
        match self.send(&payload) {
            Ok(kafka_offset) => {
                let len = records.len() as u64;
                self.written.insert(first, (kafka_offset, len));
                self.next_offset += len;
                Ok(first)
            }
            Err(reason) => {
                self.poisoned = true;
                // Best effort: the transaction is lost either way, and a
                // reopen fences this producer anyway.
                let _ = self.producer.abort_transaction(WRITE_TIMEOUT);
                Err(broker_error(action, reason))
            }
        }
    }

    fn next_offset(&self) -> u64 {
        self.next_offset
    }

    fn read_from(&self, offset: u64) -> Result<RecordIter, JournalError> {
        let end = self.next_offset;
        if offset > end {
            return Err(JournalError::OffsetOutOfRange { offset, next_offset: end });
        }
        if offset == end {
            return Ok(Box::new(std::iter::empty()));
        }
        let action = format!("read {}/{}", self.topic, self.partition);
        let mut reader =
            PartitionReader::new(&self.brokers, &self.topic, self.partition).map_err(|e| broker_error(&action, e))?;
        let start = self.locate(&mut reader, offset).map_err(|e| broker_error(&action, e))?;
        reader.seek(start).map_err(|e| broker_error(&action, e))?;
        let mut pending = std::collections::VecDeque::new();
        let mut reached = offset;
        let mut failed = false;
        let deadline = Instant::now() + READ_TIMEOUT;
        Ok(Box::new(std::iter::from_fn(move || loop {
            if let Some(record) = pending.pop_front() {
                return Some(Ok(record));
            }
            if failed || reached >= end {
                return None;
            }
            // No Kafka bound: the read stops at the journal offset this
            // handle acknowledged. The partition's end as the read began (a
            // read-committed watermark is the last stable offset) can still
            // lie before that, since a commit is acknowledged before the
            // last stable offset moves past it, and another writer's open
            // transaction holds it back.
            match reader.next_batch(i64::MAX) {
                Ok(Some(batch)) => {
                    reached = reached.max(batch.end_offset());
                    pending
                        .extend((batch.first_offset..).zip(batch.records).filter(|(at, _)| *at >= offset && *at < end));
                }
                // The end of what is committed so far: wait for the rest.
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    failed = true;
                    return Some(Err(broker_error(
                        &action,
                        format!(
                            "the partition ends at journal offset {reached} but offsets up to {end} were acknowledged"
                        ),
                    )));
                }
                Err(e) => {
                    failed = true;
                    return Some(Err(broker_error(&action, e)));
                }
            }
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode as Code;

    #[test]
    fn a_lost_connection_is_waited_out_but_a_fact_about_the_data_is_not() {
        assert!(is_passing(&KafkaError::MessageConsumption(Code::BrokerTransportFailure)));
        assert!(is_passing(&KafkaError::MessageConsumption(Code::NotLeaderForPartition)));
        assert!(!is_passing(&KafkaError::MessageConsumption(Code::OffsetOutOfRange)));
        assert!(!is_passing(&KafkaError::MessageConsumption(Code::UnknownTopicOrPartition)));
        assert!(!is_passing(&KafkaError::PartitionEOF(0)));
    }
}
