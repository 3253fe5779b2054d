//! What the worker and the snapshot writer share to write in Kafka
//! transactions: the producer, enqueuing a record, waiting for deliveries.

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use crate::layout::MAX_RECORD_BYTES;
use crate::Error;

/// How long a transaction may stay open. Short, because a process that dies
/// mid-transaction holds its partitions' readers back until it times out.
pub(crate) const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client call may wait for the brokers.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A transactional producer of id `transactional_id`, transactions started:
/// idempotent, `acks=all`, waiting `linger_ms` to fill a request. Starting
/// it fences any earlier producer of that id and aborts what it had open.
pub(crate) fn transactional_producer(
    brokers: &str,
    transactional_id: &str,
    linger_ms: u32,
) -> Result<BaseProducer, Error> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4")
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", TRANSACTION_TIMEOUT.as_millis().to_string())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("message.max.bytes", (MAX_RECORD_BYTES + 64 * 1024).to_string())
        .create()
        .map_err(|e| Error::client(format!("create the transactional producer {transactional_id}"), e))?;
    producer
        .init_transactions(CALL_TIMEOUT)
        .map_err(|e| Error::client(format!("start the transactions of {transactional_id}"), e))?;
    Ok(producer)
}

/// Maps a client error to [`Error::Client`] naming `action`.
pub(crate) fn client_error(action: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> Error + '_ {
    move |source| Error::Client { action: action.to_owned(), source }
}

/// Polls `producer` until every record sent is acknowledged (or failed: the
/// commit then fails and says why).
pub(crate) fn deliver(producer: &BaseProducer) -> Result<(), Error> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    while producer.in_flight_count() > 0 {
        if Instant::now() > deadline {
            return Err(Error::Broker {
                action: "deliver a transaction's records".into(),
                reason: format!("not acknowledged within {} s", CALL_TIMEOUT.as_secs()),
            });
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// Enqueues one record (a tombstone without `payload`), serving delivery
/// reports while the queue is full.
pub(crate) fn send(
    producer: &BaseProducer,
    topic: &str,
    partition: i32,
    key: &[u8],
    payload: Option<&[u8]>,
) -> Result<(), Error> {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic).partition(partition).key(key);
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
            Err((error, _)) => return Err(Error::client(format!("write to {topic}/{partition}"), error)),
        }
    }
}
