//! The edge of an engine on Kafka: what the API talks to.
//!
//! It publishes commands to `commands` (keyed by routing domain, idempotent
//! producer, `acks=all`) and learns their outcomes from `events`, which it
//! reads (`read_committed`, every partition) into a read model: the state of
//! every domain, as a replay of the log would give it. It starts from each
//! partition's newest snapshot and the events after it, so its start does
//! not grow with the whole history. An outcome is handed to the caller after
//! the read model has applied it, so a caller that reads after its command
//! sees its own effect. Every event read after the start's catch-up is also
//! broadcast to subscribers (the API's WebSocket feed and metrics), as the
//! embedded engine broadcasts what it decides, not what it recovers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use switchboard_domain::{Command, DomainState, Envelope};
use switchboard_live::Published;
use switchboard_proto::v1::{CommandRefused, JournalBatch};
use tokio::sync::{broadcast, oneshot};

use crate::journal::{partition_count, read_committed_config};
use crate::layout::TopicLayout;
use crate::snapshot::latest_snapshots;
use crate::Error;

/// How long a caller waits for its command's outcome.
const DECISION_TIMEOUT: Duration = Duration::from_secs(30);
/// How many recent outcomes are kept to answer a repeated command at once.
const RECENT_OUTCOMES: usize = 50_000;

/// What became of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Decided: these events are in the log (shared with the broadcast and
    /// the recent outcomes, not copied for each).
    Decided(Vec<Arc<Envelope>>),
    /// Refused, nothing written but the refusal.
    Refused {
        /// The refusal's code (`Rejection::code`).
        code: String,
        /// What was wrong.
        message: String,
    },
}

/// Why an edge could not get a command decided.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EdgeError {
    /// The edge is not (or no longer) connected to the log.
    #[error("{0}")]
    Unavailable(String),
}

struct Inner {
    topics: TopicLayout,
    producer: FutureProducer,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<Outcome>>>>,
    recent: Mutex<(HashMap<String, Outcome>, VecDeque<String>)>,
    states: RwLock<BTreeMap<String, DomainState>>,
    subscribers: broadcast::Sender<Published>,
    from_snapshots: usize,
    ready: AtomicBool,
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
    reader: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Edge {
    /// Connects to `brokers` and starts reading `events` from the beginning;
    /// [`is_ready`](Self::is_ready) once it has caught up with the log as it
    /// was at the start.
    pub fn start(brokers: &str, topics: TopicLayout, subscriber_capacity: usize) -> Result<Edge, Error> {
        let partitions = partition_count(brokers, &topics.events)?;
        partition_count(brokers, &topics.commands)?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("broker.address.family", "v4")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Commands wait up to 5 ms to share a produce request: at 1 ms
            // the edge sent about one request per millisecond under load,
            // and the broker's and the engine's CPU per lifecycle were a
            // fifth and a tenth higher (docs/performance.md, "On Kafka").
            .set("linger.ms", "5")
            .create()
            .map_err(|e| Error::client("create the command producer", e))?;
        let consumer: BaseConsumer = read_committed_config(brokers, "switchboard-edge")
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(|e| Error::client("create the events reader", e))?;
        let all_partitions: Vec<i32> = (0..partitions).collect();
        let snapshots: BTreeMap<i32, _> = latest_snapshots(brokers, &topics, &all_partitions)?
            .into_iter()
            .filter_map(|(partition, stored)| stored.snapshot.map(|snapshot| (partition, snapshot)))
            .collect();
        let mut states = BTreeMap::new();
        // Journal offset below which a partition's batches are in its snapshot.
        let mut folded = vec![0; partitions as usize];
        let mut all = TopicPartitionList::new();
        for partition in all_partitions {
            let start = match snapshots.get(&partition) {
                Some(snapshot) => {
                    folded[partition as usize] = snapshot.next_offset;
                    Offset::Offset(snapshot.resume_at)
                }
                None => Offset::Beginning,
            };
            all.add_partition_offset(&topics.events, partition, start)
                .map_err(|e| Error::client("list the events partitions", e))?;
        }
        let from_snapshots = snapshots.len();
        for (_, snapshot) in snapshots {
            states.extend(snapshot.domains.into_iter().map(|(domain, (state, _))| (domain, state)));
        }
        consumer.assign(&all).map_err(|e| Error::client("read the events topic", e))?;
        let (subscribers, _) = broadcast::channel(subscriber_capacity);
        let inner = Arc::new(Inner {
            topics,
            producer,
            waiters: Mutex::new(HashMap::new()),
            recent: Mutex::new((HashMap::new(), VecDeque::new())),
            states: RwLock::new(states),
            subscribers,
            from_snapshots,
            ready: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
        });
        let reading = inner.clone();
        let reader = std::thread::Builder::new()
            .name("kafka-edge".into())
            .spawn(move || read_events(&reading, &consumer, folded))
            .map_err(|e| Error::Broker { action: "start the events reader".into(), reason: e.to_string() })?;
        Ok(Edge { inner, reader: Arc::new(Mutex::new(Some(reader))) })
    }

    /// How many partitions the read model started from a snapshot of.
    pub fn partitions_from_snapshots(&self) -> usize {
        self.inner.from_snapshots
    }

    /// True once the read model has caught up with the log, and until a
    /// failure or [`shutdown`](Self::shutdown).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst) && self.inner.failure.lock().unwrap().is_none()
    }

    /// Publishes `command` and waits for its outcome in the log. A command
    /// id seen recently is answered with its earlier outcome.
    pub async fn submit(&self, command: Command) -> Result<Outcome, EdgeError> {
        if let Some(failure) = self.inner.failure.lock().unwrap().clone() {
            return Err(EdgeError::Unavailable(failure));
        }
        let command_id = command.command_id.clone();
        let (sender, outcome) = oneshot::channel();
        {
            // The recent outcomes are checked under the waiters' lock, which
            // the reader takes before recording one: no outcome falls between.
            let mut waiters = self.inner.waiters.lock().unwrap();
            if let Some(known) = self.inner.recent.lock().unwrap().0.get(&command_id) {
                return Ok(known.clone());
            }
            waiters.entry(command_id.clone()).or_default().push(sender);
        }
        let payload = command.encode_to_vec();
        let record = FutureRecord::to(&self.inner.topics.commands).key(command.domain.as_bytes()).payload(&payload);
        if let Err((error, _)) = self.inner.producer.send(record, DECISION_TIMEOUT).await {
            self.inner.waiters.lock().unwrap().remove(&command_id);
            return Err(EdgeError::Unavailable(format!("could not publish the command: {error}")));
        }
        match tokio::time::timeout(DECISION_TIMEOUT, outcome).await {
            Ok(Ok(outcome)) => Ok(outcome),
            _ => {
                self.inner.waiters.lock().unwrap().remove(&command_id);
                Err(EdgeError::Unavailable(format!(
                    "no decision on command {command_id} within {} s: no engine owns its partition now; send it again with the same Idempotency-Key",
                    DECISION_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// Every event read from now on, in log order within each domain, one
    /// message per batch on `events`.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.inner.subscribers.subscribe()
    }

    /// What `view` takes from each domain's state, by domain, without
    /// copying the rest.
    pub fn read_all<T>(&self, view: impl Fn(&str, &DomainState) -> T) -> Vec<(String, T)> {
        self.inner.states.read().unwrap().iter().map(|(domain, state)| (domain.clone(), view(domain, state))).collect()
    }

    /// What `view` takes from one domain's state (`None` if it has no
    /// events yet), without copying the rest.
    pub fn read<T>(&self, domain: &str, view: impl FnOnce(Option<&DomainState>) -> T) -> T {
        view(self.inner.states.read().unwrap().get(domain))
    }

    /// Stops reading; waiting callers get no answer.
    pub fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.ready.store(false, Ordering::SeqCst);
        if let Some(reader) = self.reader.lock().unwrap().take() {
            let _ = reader.join();
        }
    }
}

/// The reader thread: applies every batch not `folded` into the starting
/// snapshots to the read model, broadcasts its events once caught up, then
/// answers whoever waits for it.
fn read_events(inner: &Inner, consumer: &BaseConsumer, folded: Vec<u64>) {
    let mut at_end = vec![false; folded.len()];
    while !inner.stop.load(Ordering::SeqCst) {
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if let Some(flag) = at_end.get_mut(partition as usize) {
                    *flag = true;
                }
                if at_end.iter().all(|&done| done) {
                    inner.ready.store(true, Ordering::SeqCst);
                }
                continue;
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "reading events");
                continue;
            }
            Some(Ok(message)) => message,
        };
        let batch = match JournalBatch::decode(message.payload().unwrap_or_default()) {
            Ok(batch) => batch,
            Err(error) => {
                fail(
                    inner,
                    format!(
                        "undecodable record at events/{} offset {}: {error}",
                        message.partition(),
                        message.offset()
                    ),
                );
                continue;
            }
        };
        // A snapshot's resume point may lie before batches it holds: the
        // journal offsets say what is folded in already.
        if batch.first_offset < folded.get(message.partition() as usize).copied().unwrap_or(0) {
            continue;
        }
        let mut events = Vec::with_capacity(batch.records.len());
        for bytes in &batch.records {
            match Envelope::decode(bytes.as_slice()) {
                Ok(envelope) => events.push(Arc::new(envelope)),
                Err(error) => fail(inner, format!("undecodable event in events/{}: {error}", message.partition())),
            }
        }
        {
            let mut states = inner.states.write().unwrap();
            for envelope in &events {
                let state =
                    states.entry(envelope.domain.clone()).or_insert_with(|| DomainState::new(envelope.domain.clone()));
                if let Err(violation) = state.apply(envelope) {
                    fail(inner, format!("the log breaks an invariant: {violation}"));
                }
            }
        }
        if inner.ready.load(Ordering::SeqCst) && !events.is_empty() {
            let _ = inner.subscribers.send(events.iter().cloned().collect());
        }
        if batch.command_id.is_empty() {
            continue;
        }
        let (waiting, outcome) = {
            let mut waiters = inner.waiters.lock().unwrap();
            let mut recent = inner.recent.lock().unwrap();
            let (known, order) = &mut *recent;
            let outcome = outcome_of(batch.refused, events, known.get(&batch.command_id));
            // Refusals are not kept: the same command sent again is decided
            // again, as the engine does.
            if matches!(outcome, Outcome::Decided(_))
                && known.insert(batch.command_id.clone(), outcome.clone()).is_none()
            {
                order.push_back(batch.command_id.clone());
                while order.len() > RECENT_OUTCOMES {
                    if let Some(old) = order.pop_front() {
                        known.remove(&old);
                    }
                }
            }
            (waiters.remove(&batch.command_id), outcome)
        };
        for waiter in waiting.into_iter().flatten() {
            let _ = waiter.send(outcome.clone());
        }
    }
}

/// The outcome a batch answers its command with. A decision that wrote no
/// events is either a configuration that changed nothing or a command
/// decided before (the engine writes such an answer for a repeat): the
/// first outcome, when it is still `known`, is the answer, as the embedded
/// engine answers a repeat with its first events.
fn outcome_of(refused: Option<CommandRefused>, events: Vec<Arc<Envelope>>, known: Option<&Outcome>) -> Outcome {
    match (refused, known) {
        (Some(refused), _) => Outcome::Refused { code: refused.code, message: refused.message },
        (None, Some(first)) if events.is_empty() => first.clone(),
        (None, _) => Outcome::Decided(events),
    }
}

fn fail(inner: &Inner, failure: String) {
    tracing::error!(%failure, "the edge's read model stopped");
    inner.failure.lock().unwrap().get_or_insert(failure);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: u64) -> Arc<Envelope> {
        Arc::new(Envelope { domain: "acme".into(), sequence, ..Envelope::default() })
    }

    #[test]
    fn a_repeat_is_answered_with_the_first_outcome_while_it_is_known() {
        let first = Outcome::Decided(vec![event(7)]);
        assert_eq!(outcome_of(None, Vec::new(), Some(&first)), first);
        // Forgotten (more than the kept outcomes since): what the embedded
        // engine answers then too, a decision with no events.
        assert_eq!(outcome_of(None, Vec::new(), None), Outcome::Decided(Vec::new()));
        assert_eq!(outcome_of(None, vec![event(8)], Some(&first)), Outcome::Decided(vec![event(8)]));
        let refused = CommandRefused { code: "invalid".into(), message: "no".into() };
        assert!(matches!(outcome_of(Some(refused), Vec::new(), Some(&first)), Outcome::Refused { .. }));
    }
}
