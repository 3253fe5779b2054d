//! Given a scenario and a seed, when the day is simulated, then the log is
//! reproducible, complete (every lifecycle path), and ends with nothing open.

use std::collections::BTreeSet;

use prost::Message;
use switchboard_domain::state::{ConversationStatus, Place};
use switchboard_domain::{channel, event_name, DomainState};
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::*;

use super::*;

fn simulate(seed: u64, conversations: u64) -> (SimulationReport, Vec<Envelope>) {
    let mut events = Vec::new();
    let report = run(&Scenario::default(), seed, conversations, &mut events).expect("the day runs");
    (report, events)
}

fn bytes(events: &[Envelope]) -> Vec<u8> {
    events.iter().flat_map(|e| e.encode_length_delimited_to_vec()).collect()
}

#[test]
fn the_same_seed_gives_the_same_event_stream_byte_for_byte_and_another_seed_another() {
    let (first_report, first) = simulate(7, 150);
    let (second_report, second) = simulate(7, 150);
    assert!(!first.is_empty());
    assert_eq!(bytes(&first), bytes(&second));
    assert_eq!(
        serde_json::to_string(&first_report).unwrap(),
        serde_json::to_string(&second_report).unwrap(),
        "the report too"
    );
    let (_, other) = simulate(8, 150);
    assert_ne!(bytes(&first), bytes(&other));
}

/// Replays the log, noting what the state was when each event came.
struct Replay {
    state: DomainState,
    kinds: BTreeSet<&'static str>,
    abandoned_while_queued: u64,
    abandoned_while_offered: u64,
    agent_messages_checked: u64,
}

fn replay(events: &[Envelope]) -> Replay {
    let mut replay = Replay {
        state: DomainState::new(Scenario::default().domain),
        kinds: BTreeSet::new(),
        abandoned_while_queued: 0,
        abandoned_while_offered: 0,
        agent_messages_checked: 0,
    };
    for envelope in events {
        let event = envelope.event.as_ref().expect("known events");
        replay.kinds.insert(event_name(event));
        match event {
            Event::ConversationEnded(e) if e.by() == EndedBy::Customer => {
                let conversation = &replay.state.conversations[&e.conversation_id];
                if conversation.first_accepted_at_ms.is_none() {
                    // An open offer is withdrawn first, in the same command.
                    match conversation.status {
                        ConversationStatus::Queued if envelope.sequence > 1 => {
                            let previous = &events[envelope.sequence as usize - 2];
                            if matches!(previous.event, Some(Event::OfferWithdrawn(_))) {
                                replay.abandoned_while_offered += 1;
                            } else {
                                replay.abandoned_while_queued += 1;
                            }
                        }
                        _ => {}
                    }
                }
            }
            Event::AgentMessageSent(m) => {
                let conversation = &replay.state.conversations[&m.conversation_id];
                let limit = channel::policy(conversation.channel).unwrap().compose_limit;
                assert!(limit.is_none_or(|limit| channel::message_length(&m.text) <= limit), "{}", m.message_id);
                replay.agent_messages_checked += 1;
            }
            _ => {}
        }
        replay.state.apply(envelope).unwrap_or_else(|v| panic!("replay refused {envelope:?}: {v}"));
    }
    replay
}

#[test]
fn a_default_day_of_300_conversations_goes_through_every_lifecycle_path() {
    let (report, events) = simulate(42, 300);
    let replay = replay(&events);
    for kind in [
        "OfferTimedOut",
        "OfferWithdrawn",
        "TransferRequested",
        "TransferCompleted",
        "TransferFailed",
        "ConferenceRequested",
        "ConferenceJoined",
        "ConferenceLeft",
        "ConferenceEnded",
        "MessageDelivered",
        "MessageRead",
        "AgentStateChanged",
    ] {
        assert!(replay.kinds.contains(kind), "no {kind} in the day: {:?}", replay.kinds);
    }
    let f = &report.figures;
    assert!(f.transfers.requested_to_queue > 0 && f.transfers.requested_to_agent > 0, "{:?}", f.transfers);
    assert!(f.transfers.failed_dropped + f.transfers.failed_requeued > 0);
    assert!(f.conversations.ended_by_customer > 0 && f.conversations.ended_by_agent > 0);
    assert!(f.wrap_ups.automatic > 0, "the SMS queue wraps up automatically");
    assert!(replay.abandoned_while_queued > 0, "customers give up in the queue");
    let multiple_reasons =
        events.iter().any(|e| matches!(&e.event, Some(Event::WrapUpSubmitted(w)) if w.reasons.len() >= 2));
    assert!(multiple_reasons, "some wrap-ups give two or more reasons");
    let idle = events.iter().any(|e| {
        let Some(Event::AgentStateChanged(change)) = &e.event else { return false };
        change.to() == AgentStatus::Idle && !change.idle_reason.is_empty()
    });
    assert!(idle, "agents take breaks");
    assert!(replay.agent_messages_checked > 300, "every agent message is within its channel's limit");
    // Email is never sent to an agent nor conferenced (the domain would refuse it).
    let email: BTreeSet<&String> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::ConversationCreated(c)) if c.channel() == Channel::Email => Some(&c.conversation_id),
            _ => None,
        })
        .collect();
    assert!(!email.is_empty());
    for envelope in &events {
        match &envelope.event {
            Some(Event::TransferRequested(t)) if email.contains(&t.conversation_id) => {
                assert!(matches!(t.target, Some(transfer_requested::Target::ToQueueId(_))));
            }
            Some(Event::ConferenceRequested(c)) => assert!(!email.contains(&c.conversation_id)),
            _ => {}
        }
    }
}

#[test]
fn after_the_day_every_conversation_is_closed_every_agent_logged_out_and_the_invariants_hold() {
    let (report, events) = simulate(42, 300);
    let replay = replay(&events);
    let state = &replay.state;
    state.check_invariants().unwrap();
    assert_eq!(state.conversations.len(), 300);
    assert!(state.conversations.values().all(|c| c.place() == Place::Closed));
    assert!(state.offers.is_empty());
    assert!(state.agents.values().all(|a| a.status == AgentStatus::LoggedOut && a.holdings.is_empty()));
    assert!(state.queues.values().all(|q| q.waiting.is_empty()));
    let f = &report.figures;
    assert_eq!((f.conversations.created, f.conversations.closed), (300, 300));
    assert_eq!(report.events, events.len() as u64);
    assert_eq!(report.virtual_duration_ms, events.last().unwrap().at_ms - report.started_at_ms);
    // The run's figures are the figures of its log.
    let mut figures = crate::figures::Figures::new(Scenario::default().service_level_threshold_ms);
    events.iter().for_each(|e| figures.observe(e));
    assert_eq!(figures.report(), report.figures);
    // A plausible day: most customers answered, agents busy but not swamped.
    let service_level = f.service.service_level.unwrap();
    let occupancy = f.occupancy.occupancy.unwrap();
    assert!((0.5..=1.0).contains(&service_level), "service level {service_level}");
    assert!((0.3..=0.95).contains(&occupancy), "occupancy {occupancy}");
    // The simulator sends only what the state allows at that instant, so a
    // rejection is a simulator bug; races between people cannot happen in one thread.
    assert_eq!(report.rejected, 0, "rejections: {:?}", report.rejections);
}

#[test]
fn a_sink_that_fails_stops_the_day_with_its_error() {
    struct Full(usize);
    impl EventSink for Full {
        fn append(&mut self, _events: &[Envelope]) -> Result<(), SinkError> {
            if self.0 == 0 {
                return Err(SinkError::new("disk full"));
            }
            self.0 -= 1;
            Ok(())
        }
    }
    let error = run(&Scenario::default(), 1, 10, &mut Full(3)).unwrap_err();
    assert!(matches!(error, SimulateError::Sink(_)), "{error}");
    assert_eq!(error.to_string(), "event sink: disk full");
}

#[test]
fn an_inconsistent_scenario_is_refused_before_anything_is_written() {
    let mut scenario = Scenario::default();
    scenario.arrivals[0].queue = "nowhere".into();
    let mut events = Vec::new();
    assert!(matches!(run(&scenario, 1, 10, &mut events), Err(SimulateError::Scenario(_))));
    assert!(events.is_empty());
}

#[test]
fn a_day_without_customers_configures_and_ends() {
    let (report, events) = simulate(3, 0);
    assert_eq!(report.figures.conversations.created, 0);
    assert!(events.iter().any(|e| matches!(e.event, Some(Event::QueueConfigured(_)))));
    assert_eq!(report.rejected, 0);
}

/// `cargo test -p switchboard --release -- --ignored --nocapture ten_thousand`
#[test]
#[ignore = "a timing, for release builds"]
fn ten_thousand_conversations_take_seconds() {
    let started = std::time::Instant::now();
    let (report, events) = simulate(1, 10_000);
    let elapsed = started.elapsed();
    println!("{}", report.render_text());
    println!("10000 conversations: {} commands, {} events in {elapsed:?}", report.commands, events.len());
    let state = replay(&events).state;
    state.check_invariants().unwrap();
    assert!(state.conversations.values().all(|c| c.place() == Place::Closed));
}
