//! What the worker and the snapshot writer share to write in Kafka
//! transactions: the producer, enqueuing a record, waiting for deliveries
//! (the Kafka journal's appends wait the same way).

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientConfig;

use crate::layout::MAX_RECORD_BYTES;
use crate::Error;

/// How long a transaction may stay open. Short, because a process that dies
/// mid-transaction holds its partitions' readers back until it times out.
pub(crate) const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client call may wait for the brokers.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a thread waiting on its producer sleeps when nothing was ready.
const BROKER_PAUSE: Duration = Duration::from_micros(100);

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

/// One step of waiting on the brokers: serves what `producer` has ready
/// (delivery reports) without blocking, and sleeps [`BROKER_PAUSE`] if
/// nothing was. `BaseProducer::poll` cannot block for less than a
/// millisecond: it hands librdkafka what is left of its timeout in whole
/// milliseconds, so a 1 ms poll spins on 0 ms polls for that millisecond,
/// and a loop of them spins for as long as the brokers take (reading the
/// clock was a quarter of the Kafka worker thread's CPU).
pub(crate) fn serve_or_pause<C: ProducerContext>(producer: &BaseProducer<C>) {
    let waiting = producer.in_flight_count();
    producer.poll(Duration::ZERO);
    if producer.in_flight_count() == waiting {
        std::thread::sleep(BROKER_PAUSE);
    }
}

/// Serves `producer` until every record sent is acknowledged (or failed:
/// the commit then fails and says why).
pub(crate) fn deliver(producer: &BaseProducer) -> Result<(), Error> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    while producer.in_flight_count() > 0 {
        if Instant::now() > deadline {
            return Err(Error::Broker {
                action: "deliver a transaction's records".into(),
                reason: format!("not acknowledged within {} s", CALL_TIMEOUT.as_secs()),
            });
        }
        serve_or_pause(producer);
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
                serve_or_pause(producer);
            }
            Err((error, _)) => return Err(Error::client(format!("write to {topic}/{partition}"), error)),
        }
    }
}

// The test reads the thread's use of the CPU from Linux's /proc.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// What the calling thread has used so far: CPU time (user and system,
    /// in the kernel's ticks of 10 ms) and voluntary context switches.
    fn thread_usage() -> (Duration, u64) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let ticks: u64 =
            stat.rsplit_once(") ").unwrap().1.split(' ').skip(11).take(2).map(|f| f.parse::<u64>().unwrap()).sum();
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let switches = status
            .lines()
            .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
            .map(|count| count.trim().parse().unwrap())
            .unwrap();
        (Duration::from_millis(ticks * 10), switches)
    }

    #[test]
    fn waiting_on_the_brokers_sleeps_instead_of_spinning() {
        // given a producer holding a record it cannot deliver (nothing listens there)
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("broker.address.family", "v4")
            .set("message.timeout.ms", "60000")
            .create()
            .unwrap();
        producer.send(BaseRecord::<[u8], [u8]>::to("waiting").payload(b"x")).unwrap();
        // when its thread waits on it for half a second
        let ((cpu_before, slept_before), started) = (thread_usage(), Instant::now());
        while started.elapsed() < Duration::from_millis(500) {
            serve_or_pause(&producer);
        }
        let (cpu_after, slept_after) = thread_usage();
        // then the thread slept (1 ms polls spun: 490 ms of CPU and no sleep),
        // which holds however busy the machine is, and used little CPU
        let (cpu, slept) = (cpu_after - cpu_before, slept_after - slept_before);
        assert!(slept >= 100, "the thread slept {slept} times in 500 ms of waiting");
        assert!(cpu < Duration::from_millis(150), "waiting 500 ms used {cpu:?} of CPU");
        assert!(producer.in_flight_count() >= 1, "the record is still waiting");
    }
}
