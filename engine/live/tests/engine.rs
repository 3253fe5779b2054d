//! The live engine against a real journal in a temporary directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use switchboard_domain::testing;
use switchboard_domain::testing::offered;
use switchboard_journal::{EmbeddedJournal, Journal, JournalError, JournalOptions};
use switchboard_live::{DomainState, Engine, EngineError, EngineOptions, Envelope, Published, SubmitError};
use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::*;
use tokio::sync::broadcast;

fn command(domain: &str, command_id: &str, body: C) -> Command {
    Command { command_id: command_id.into(), domain: domain.into(), at_ms: 0, command: Some(body) }
}

fn queue(domain: &str, command_id: &str, offer_timeout_ms: u64, auto_wrap_up_ms: u64) -> Command {
    command(domain, command_id, testing::webchat_queue("sales", offer_timeout_ms, auto_wrap_up_ms))
}

fn agent(domain: &str, command_id: &str, agent_id: &str) -> Command {
    command(domain, command_id, testing::agent(agent_id, Channel::Webchat as i32, &["sales"]))
}

/// A domain with queue "sales" and agent "a1"; command ids prefixed by `prefix`.
fn configuration(domain: &str, prefix: &str, offer_timeout_ms: u64, auto_wrap_up_ms: u64) -> Vec<Command> {
    vec![
        queue(domain, &format!("{prefix}-queue"), offer_timeout_ms, auto_wrap_up_ms),
        agent(domain, &format!("{prefix}-agent"), "a1"),
        command(
            domain,
            &format!("{prefix}-reasons"),
            C::ConfigureWrapUpReasons(ConfigureWrapUpReasons { reasons: vec!["sold".into()] }),
        ),
    ]
}

fn available(domain: &str, command_id: &str, agent_id: &str) -> Command {
    command(domain, command_id, testing::available(agent_id))
}

fn message(domain: &str, command_id: &str, conversation_id: &str) -> Command {
    command(domain, command_id, testing::customer_message(conversation_id, "sales", &format!("{command_id}-m")))
}

async fn start(dir: &Path, configuration: Vec<Command>) -> Engine {
    Engine::start(EngineOptions::new(dir), configuration).await.unwrap()
}

/// Every envelope in the journal, read by a reader independent of the engine.
fn journal(dir: &Path) -> Vec<Envelope> {
    let (journal, _) = EmbeddedJournal::open_read_only(dir).unwrap();
    journal.read_from(0).unwrap().map(|r| Envelope::decode(r.unwrap().1.as_slice()).unwrap()).collect()
}

/// What a replay of the journal gives, serialized as the replay digest hashes it.
fn folded(dir: &Path) -> String {
    let mut states: BTreeMap<String, DomainState> = BTreeMap::new();
    for envelope in journal(dir) {
        states
            .entry(envelope.domain.clone())
            .or_insert_with(|| DomainState::new(&envelope.domain))
            .apply(&envelope)
            .unwrap();
    }
    serde_json::to_string(&states).unwrap()
}

/// Waits up to 5 s for a published event that `pick` selects.
async fn wait_for<T>(published: &mut broadcast::Receiver<Published>, pick: impl Fn(&Envelope) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(found) = published.recv().await.unwrap().iter().find_map(|event| pick(event)) {
                return found;
            }
        }
    })
    .await
    .expect("the event came within 5 s")
}

#[actix_rt::test]
async fn the_reply_comes_only_after_the_events_are_durable() {
    // given an engine with a queue and an agent
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), configuration("acme", "cfg", 60_000, 0)).await;
    assert!(engine.is_ready());
    let mut published = engine.subscribe();

    for next in [available("acme", "c1", "a1"), message("acme", "c2", "conv-1")] {
        // when a command is submitted
        let events = engine.submit(next).await.unwrap();

        // then, by the time it is answered, an independent reader finds its events in the journal
        assert!(!events.is_empty());
        let written = journal(dir.path());
        for event in &events {
            assert!(written.contains(event), "{} not durable before the reply", event.event_id);
        }
        // and subscribers receive them too, as the one append they were
        assert_eq!(*published.recv().await.unwrap(), events[..]);
    }
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_rejected_command_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), configuration("acme", "cfg", 60_000, 0)).await;
    let before = journal(dir.path()).len();

    let refused = engine.submit(available("acme", "c1", "nobody")).await;

    assert!(matches!(refused, Err(SubmitError::Rejected(switchboard_live::Rejection::UnknownAgent(_)))), "{refused:?}");
    assert_eq!(journal(dir.path()).len(), before);
    // and a domain nobody configured does not come into being by a refused command
    assert!(engine.submit(available("nowhere", "c2", "a1")).await.is_err());
    assert_eq!(engine.domain_state("nowhere").await.unwrap().map(|s| s.domain), None);
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_read_takes_only_what_its_view_returns_from_one_domain() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), configuration("acme", "cfg", 60_000, 0)).await;
    engine.submit(available("acme", "c1", "a1")).await.unwrap();

    // the view sees the domain as of everything durable, and only its answer comes back
    let status = engine.read("acme", |state| state.map(|s| s.agents["a1"].status)).await.unwrap();
    assert_eq!(status, Some(AgentStatus::Available));
    let sequence = engine.read("acme", |state| state.map(|s| s.last_sequence)).await.unwrap();
    assert_eq!(sequence, engine.domain_state("acme").await.unwrap().map(|s| s.last_sequence));
    // and a domain without events is given to the view as none
    assert!(engine.read("nowhere", |state| state.is_none()).await.unwrap());
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn the_same_command_id_twice_is_executed_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), configuration("acme", "cfg", 60_000, 0)).await;
    engine.submit(available("acme", "c1", "a1")).await.unwrap();

    // when the same command arrives twice at once, and once more later
    let (first, second) =
        tokio::join!(engine.submit(message("acme", "m1", "conv-1")), engine.submit(message("acme", "m1", "conv-1")));
    let third = engine.submit(message("acme", "m1", "conv-1")).await.unwrap();

    // then every caller gets the same events, written once
    let first = first.unwrap();
    assert_eq!(first, second.unwrap());
    assert_eq!(first, third);
    let written: Vec<_> = journal(dir.path()).into_iter().filter(|e| e.command_id == "m1").map(Arc::new).collect();
    assert_eq!(written, first);
    engine.shutdown().await.unwrap();

    // and a retry after a restart is still recognised
    let engine = start(dir.path(), Vec::new()).await;
    assert_eq!(engine.submit(message("acme", "m1", "conv-1")).await.unwrap(), first);
    assert_eq!(journal(dir.path()).iter().filter(|e| e.command_id == "m1").count(), first.len());
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn concurrent_submits_from_many_domains_all_succeed_with_gapless_sequences() {
    // given 6 domains over the default 2 shards
    let dir = tempfile::tempdir().unwrap();
    let domains: Vec<String> = (0..6).map(|d| format!("tenant-{d}")).collect();
    let config = domains.iter().flat_map(|d| configuration(d, "cfg", 60_000, 0)).collect();
    let engine = start(dir.path(), config).await;
    let mut published = engine.subscribe();

    // when 40 commands per domain are submitted at once
    let mut tasks = Vec::new();
    for d in &domains {
        for i in 0..40 {
            let engine = engine.clone();
            let next =
                if i == 0 { available(d, "avail", "a1") } else { message(d, &format!("m{i}"), &format!("conv-{i}")) };
            tasks.push(actix_rt::spawn(async move { engine.submit(next).await }));
        }
    }
    let mut events = 0;
    for task in tasks {
        events += task.await.unwrap().expect("every submit succeeds").len();
    }

    // then each domain's sequence in the journal is 1, 2, 3, ... without gaps
    let written = journal(dir.path());
    for d in &domains {
        let sequences: Vec<u64> = written.iter().filter(|e| e.domain == *d).map(|e| e.sequence).collect();
        assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>(), "domain {d}");
    }
    // and subscribers saw every event, in journal order within each domain
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut received = 0;
    while received < events {
        for e in published.recv().await.unwrap().iter() {
            seen.entry(e.domain.clone()).or_default().push(e.sequence);
            received += 1;
        }
    }
    for (d, sequences) in seen {
        assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "domain {d}: {sequences:?}");
    }
    // and the engine's states are what a replay of its journal gives
    assert_eq!(serde_json::to_string(&engine.states().await.unwrap()).unwrap(), folded(dir.path()));
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn an_offer_times_out_by_the_timer_and_the_agent_goes_to_rona() {
    // given a queue whose offers time out after 200 ms, and an agent offered a conversation
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), configuration("acme", "cfg", 200, 0)).await;
    let mut published = engine.subscribe();
    engine.submit(available("acme", "c1", "a1")).await.unwrap();
    let events = engine.submit(message("acme", "c2", "conv-1")).await.unwrap();
    let offer = offered(&events).expect("offered").clone();

    // when nobody accepts it
    let timed_out = wait_for(&mut published, |e| match &e.event {
        Some(Event::OfferTimedOut(t)) => Some((t.clone(), e.at_ms)),
        _ => None,
    })
    .await;

    // then the timer expired it at its deadline and the agent is in RONA
    assert_eq!(timed_out.0.offer_id, offer.offer_id);
    assert!(timed_out.1 >= offer.deadline_ms);
    let state = engine.domain_state("acme").await.unwrap().unwrap();
    assert_eq!(state.agents["a1"].status, AgentStatus::Rona);
    assert!(state.offers.is_empty());
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_pending_wrap_up_is_submitted_by_the_timer_when_the_queue_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), configuration("acme", "cfg", 60_000, 200)).await;
    let mut published = engine.subscribe();
    engine.submit(available("acme", "c1", "a1")).await.unwrap();
    let offer = offered(&engine.submit(message("acme", "c2", "conv-1")).await.unwrap()).unwrap().clone();
    let accept = AcceptOffer { agent_id: "a1".into(), offer_id: offer.offer_id };
    engine.submit(command("acme", "c3", C::AcceptOffer(accept))).await.unwrap();
    let end = EndConversation { agent_id: "a1".into(), conversation_id: "conv-1".into() };
    engine.submit(command("acme", "c4", C::EndConversation(end))).await.unwrap();

    let submitted = wait_for(&mut published, |e| match &e.event {
        Some(Event::WrapUpSubmitted(w)) => Some(w.clone()),
        _ => None,
    })
    .await;

    assert!(submitted.automatic);
    assert!(engine.domain_state("acme").await.unwrap().unwrap().agents["a1"].holdings.is_empty());
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_restart_recovers_the_states_a_fold_of_the_journal_gives() {
    // given an engine that made some decisions, then stopped
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), configuration("acme", "cfg", 60_000, 0)).await;
    engine.submit(available("acme", "c1", "a1")).await.unwrap();
    for i in 0..3 {
        engine.submit(message("acme", &format!("m{i}"), &format!("conv-{i}"))).await.unwrap();
    }
    engine.submit(message("other", "x", "conv-x")).await.unwrap_err(); // no queue there: refused
    let before = serde_json::to_string(&engine.states().await.unwrap()).unwrap();
    engine.shutdown().await.unwrap();
    assert!(!engine.is_ready());
    assert!(matches!(engine.submit(available("acme", "c9", "a1")).await, Err(SubmitError::Unavailable(_))));

    // when it starts again on the same directory
    let engine = start(dir.path(), configuration("acme", "cfg", 60_000, 0)).await;

    // then it holds the states it had, which are those a fresh fold of the journal gives
    let after = serde_json::to_string(&engine.states().await.unwrap()).unwrap();
    assert_eq!(after, before);
    assert_eq!(after, folded(dir.path()));
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn an_offer_whose_deadline_passed_while_stopped_expires_at_start_up() {
    // given an offer with 500 ms to go when the engine stops
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), configuration("acme", "cfg", 500, 0)).await;
    engine.submit(available("acme", "c1", "a1")).await.unwrap();
    let offer = offered(&engine.submit(message("acme", "c2", "conv-1")).await.unwrap()).unwrap().clone();
    engine.shutdown().await.unwrap();
    assert!(!journal(dir.path()).iter().any(|e| matches!(e.event, Some(Event::OfferTimedOut(_)))));

    // when the engine starts again after the deadline
    tokio::time::sleep(Duration::from_millis(600)).await;
    let restarted_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let engine = start(dir.path(), Vec::new()).await;

    // then, by the time it is ready, the offer has timed out (at start-up, not before) and the agent is in RONA
    assert!(engine.is_ready());
    let state = engine.domain_state("acme").await.unwrap().unwrap();
    assert_eq!(state.agents["a1"].status, AgentStatus::Rona);
    let expiry = journal(dir.path())
        .into_iter()
        .find(|e| matches!(&e.event, Some(Event::OfferTimedOut(t)) if t.offer_id == offer.offer_id))
        .expect("the timeout is durable");
    assert!(expiry.at_ms >= restarted_at && expiry.at_ms > offer.deadline_ms);
    engine.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn configuration_given_again_across_restarts_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), configuration("acme", "cfg", 60_000, 0)).await;
    engine.shutdown().await.unwrap();
    let written = journal(dir.path()).len();
    assert_eq!(written, 3);

    // the same settings, even under other command ids, append nothing
    let engine = start(dir.path(), configuration("acme", "other-ids", 60_000, 0)).await;
    engine.shutdown().await.unwrap();
    assert_eq!(journal(dir.path()).len(), written);

    // a changed setting under the old ids is written
    let engine = start(dir.path(), configuration("acme", "cfg", 30_000, 0)).await;
    engine.shutdown().await.unwrap();
    let after = journal(dir.path());
    assert_eq!(after.len(), written + 1);
    assert!(
        matches!(&after[written].event, Some(Event::QueueConfigured(q)) if q.queue.as_ref().unwrap().offer_timeout_ms == 30_000)
    );
}

#[actix_rt::test]
async fn a_second_engine_on_the_same_directory_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), Vec::new()).await;

    let second = Engine::start(EngineOptions::new(dir.path()), Vec::new()).await;

    let Err(error) = second else { panic!("a second engine started on a locked directory") };
    assert!(matches!(error, EngineError::Journal { source: JournalError::Locked { .. }, .. }), "{error:?}");
    assert!(error.to_string().contains("locked by another writer"), "{error}");
    // and once the first has shut down, the lock is free
    engine.shutdown().await.unwrap();
    start(dir.path(), Vec::new()).await.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_record_that_is_not_an_envelope_stops_the_start_naming_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut raw, _) = EmbeddedJournal::open(dir.path(), JournalOptions::default()).unwrap();
    let good = Envelope { domain: "acme".into(), sequence: 1, event_id: "acme/1".into(), ..Default::default() };
    raw.append(&[&good.encode_to_vec(), b"\xff\xff\xff"]).unwrap();
    drop(raw);

    let error = Engine::start(EngineOptions::new(dir.path()), Vec::new()).await.err().expect("refused");

    assert!(matches!(error, EngineError::Undecodable { offset: 1, .. }), "{error:?}");
}
