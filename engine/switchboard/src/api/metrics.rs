//! `GET /metrics`: what supervisors' dashboards scrape, in Prometheus text
//! format. Counters and histograms follow the durable events; gauges (queue
//! depth, oldest wait, agents by state) are read from the state at scrape
//! time, so they are never stale.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix_web::HttpResponse;
use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use switchboard_domain::{channel, event_name, DomainState};
use switchboard_live::Published;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::{Envelope, OfferKind};
use tokio::sync::broadcast;

use super::Data;

/// The Prometheus recorder of this process and the event follower feeding it.
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Installs the process-wide recorder (once) and follows `events`.
    pub fn start(mut events: broadcast::Receiver<Published>) -> Arc<Metrics> {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0])
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // A second server in one process (tests) keeps the first recorder.
        let _ = metrics::set_global_recorder(recorder);
        actix_web::rt::spawn(async move {
            let mut timings = Timings::default();
            loop {
                match events.recv().await {
                    Ok(published) => published.iter().for_each(|envelope| timings.observe(envelope)),
                    // Counted in appends: how many events they held is lost with them.
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        counter!("switchboard_metrics_appends_missed_total").increment(missed)
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Arc::new(Metrics { handle })
    }
}

/// Start times kept until the matching end, for the histograms, and the
/// handles of the per-event series.
#[derive(Default)]
struct Timings {
    created_ms: HashMap<(String, String), i64>,
    accepted_ms: HashMap<(String, String), i64>,
    /// Every event counts once: looking its labelled series up in the
    /// registry each time (building the key, hashing the labels) cost more
    /// than the rest of following the events, so each series' handle is
    /// kept once made. By domain, then kind.
    events: HashMap<String, HashMap<&'static str, Counter>>,
    /// The log's volume by domain (encoded envelope bytes): what a Kafka
    /// deployment must size its topics for.
    event_bytes: HashMap<String, Counter>,
    /// By domain.
    speed_of_answer: HashMap<String, Histogram>,
    /// By domain.
    handle_time: HashMap<String, Histogram>,
}

impl Timings {
    fn observe(&mut self, envelope: &Envelope) {
        let Some(event) = &envelope.event else { return };
        let domain = &envelope.domain;
        let kind = event_name(event);
        per_domain(&mut self.events, domain, HashMap::new)
            .entry(kind)
            .or_insert_with(|| counter!("switchboard_events_total", "domain" => domain.clone(), "kind" => kind))
            .increment(1);
        per_domain(
            &mut self.event_bytes,
            domain,
            || counter!("switchboard_event_bytes_total", "domain" => domain.clone()),
        )
        .increment(prost::Message::encoded_len(envelope) as u64);
        let key = |conversation: &str| (domain.clone(), conversation.to_owned());
        match event {
            Event::ConversationCreated(e) => {
                self.created_ms.insert(key(&e.conversation_id), envelope.at_ms);
            }
            Event::OfferAccepted(e) if e.kind() == OfferKind::Routed => {
                if let Some(created) = self.created_ms.remove(&key(&e.conversation_id)) {
                    per_domain(
                        &mut self.speed_of_answer,
                        domain,
                        || histogram!("switchboard_speed_of_answer_seconds", "domain" => domain.clone()),
                    )
                    .record((envelope.at_ms - created) as f64 / 1000.0);
                }
                self.accepted_ms.entry(key(&e.conversation_id)).or_insert(envelope.at_ms);
            }
            Event::ConversationEnded(e) => {
                self.created_ms.remove(&key(&e.conversation_id));
                if let Some(accepted) = self.accepted_ms.remove(&key(&e.conversation_id)) {
                    per_domain(
                        &mut self.handle_time,
                        domain,
                        || histogram!("switchboard_handle_time_seconds", "domain" => domain.clone()),
                    )
                    .record((envelope.at_ms - accepted) as f64 / 1000.0);
                }
            }
            Event::WrapUpSubmitted(e) => {
                // Reasons are free text of the configuration: not worth a handle each.
                for reason in &e.reasons {
                    counter!("switchboard_wrap_ups_total", "domain" => domain.clone(), "reason" => reason.clone())
                        .increment(1);
                }
                if e.automatic {
                    counter!("switchboard_wrap_ups_total", "domain" => domain.clone(), "reason" => "automatic")
                        .increment(1);
                }
            }
            _ => {}
        }
    }
}

/// `domain`'s entry of `handles`, made the first time. (Not `entry()`: that
/// would copy the domain name for every event.)
fn per_domain<'a, T>(handles: &'a mut HashMap<String, T>, domain: &str, make: impl FnOnce() -> T) -> &'a mut T {
    if !handles.contains_key(domain) {
        handles.insert(domain.to_owned(), make());
    }
    handles.get_mut(domain).expect("inserted above")
}

/// One domain's gauges, taken on its shard: a scrape copies these figures,
/// not the domain's state (every conversation, with its thread).
#[derive(Debug, PartialEq)]
struct DomainGauges {
    /// Per queue: how many conversations wait, and when the oldest arrived.
    queues: Vec<(String, usize, Option<i64>)>,
    /// Agents by state, every state listed.
    agents: BTreeMap<&'static str, u32>,
    /// Conversations held by agents (offers, active, wrap-ups), by channel.
    loads: Vec<(&'static str, u32)>,
}

fn gauges_of(state: &DomainState) -> DomainGauges {
    let queues = state
        .queues
        .iter()
        .map(|(queue_id, queue)| {
            (queue_id.clone(), queue.waiting.len(), queue.waiting.iter().map(|k| k.arrived_at_ms).min())
        })
        .collect();
    let mut agents: BTreeMap<&'static str, u32> =
        ["logged_out", "available", "idle", "rona"].into_iter().map(|s| (s, 0)).collect();
    for agent in state.agents.values() {
        *agents.entry(super::status_name(agent.status)).or_default() += 1;
    }
    let loads =
        channel::ALL.into_iter().map(|c| (channel::name(c), state.agents.values().map(|a| a.load(c)).sum())).collect();
    DomainGauges { queues, agents, loads }
}

/// `GET /metrics`.
pub async fn scrape(state: Data) -> HttpResponse {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let Ok(domains) = state.engine.read_all(|_, domain_state| gauges_of(domain_state)).await else {
        return HttpResponse::ServiceUnavailable().body("engine unavailable");
    };
    for (domain, gauges) in domains {
        for (queue_id, depth, oldest) in gauges.queues {
            let labels = [("domain", domain.clone()), ("queue", queue_id)];
            gauge!("switchboard_queue_depth", &labels).set(depth as f64);
            gauge!("switchboard_queue_oldest_wait_seconds", &labels)
                .set(oldest.map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0));
        }
        for (status, count) in gauges.agents {
            gauge!("switchboard_agents", "domain" => domain.clone(), "state" => status).set(f64::from(count));
        }
        for (channel, load) in gauges.loads {
            gauge!("switchboard_agent_load", "domain" => domain.clone(), "channel" => channel).set(f64::from(load));
        }
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.handle.render())
}

#[cfg(test)]
mod tests {
    use switchboard_proto::v1::{envelope, ConversationCreated, ConversationEnded, OfferAccepted};

    use super::*;

    fn envelope(domain: &str, at_ms: i64, event: envelope::Event) -> Envelope {
        Envelope { domain: domain.into(), at_ms, event: Some(event), ..Default::default() }
    }

    #[test]
    fn a_domain_gauges_count_its_queues_agents_and_loads() {
        use switchboard_domain::state::{Agent, Queue, WaitingKey};
        use switchboard_proto::v1::{AgentStatus, Channel};
        // given a domain with a queue of two, an empty one, and three agents holding some conversations
        let mut state = DomainState::new("acme");
        let waiting = |at: i64, id: &str| WaitingKey {
            neg_priority: 0,
            arrived_at_ms: at,
            created_sequence: at as u64,
            conversation_id: id.into(),
        };
        let queue = |keys: Vec<WaitingKey>| Queue {
            config: Default::default(),
            waiting: keys.into_iter().collect(),
            members: Default::default(),
            last_offered: None,
        };
        state.queues.insert("chat".into(), queue(vec![waiting(5_000, "c1"), waiting(3_000, "c2")]));
        state.queues.insert("mail".into(), queue(vec![]));
        let agent = |status: AgentStatus, loads: &[(Channel, u32)]| Agent {
            name: String::new(),
            capacities: Default::default(),
            queues: Default::default(),
            status,
            idle_reason: String::new(),
            free_since_ms: 0,
            holdings: Default::default(),
            loads: loads.iter().map(|(c, n)| (*c as i32, *n)).collect(),
        };
        state.agents.insert("a1".into(), agent(AgentStatus::Available, &[(Channel::Webchat, 2)]));
        state.agents.insert("a2".into(), agent(AgentStatus::Idle, &[(Channel::Webchat, 1), (Channel::Email, 1)]));
        state.agents.insert("a3".into(), agent(AgentStatus::Rona, &[]));

        // when its gauges are taken
        let gauges = gauges_of(&state);

        // then each queue has its depth and oldest arrival, every agent state is listed, and loads add up per channel
        assert_eq!(gauges.queues, [("chat".to_string(), 2, Some(3_000)), ("mail".to_string(), 0, None)]);
        let agents: Vec<_> = gauges.agents.into_iter().collect();
        assert_eq!(agents, [("available", 1), ("idle", 1), ("logged_out", 0), ("rona", 1)]);
        let load = |name: &str| gauges.loads.iter().find(|(c, _)| *c == name).map(|(_, n)| *n);
        assert_eq!((load("webchat"), load("email"), load("sms")), (Some(3), Some(1), Some(0)));
    }

    #[test]
    fn kept_handles_count_every_event_of_their_series() {
        // given a recorder of this test's own and events of two domains
        let recorder = PrometheusBuilder::new().build_recorder();
        let rendered = recorder.handle();
        let created = |id: &str| {
            envelope::Event::ConversationCreated(ConversationCreated {
                conversation_id: id.into(),
                ..Default::default()
            })
        };
        let accepted = envelope::Event::OfferAccepted(OfferAccepted {
            conversation_id: "c1".into(),
            kind: OfferKind::Routed as i32,
            ..Default::default()
        });
        let ended = envelope::Event::ConversationEnded(ConversationEnded {
            conversation_id: "c1".into(),
            ..Default::default()
        });

        // when they are observed, the series' handles being made on first use and kept
        metrics::with_local_recorder(&recorder, || {
            let mut timings = Timings::default();
            for event in [created("c1"), created("c2"), accepted, ended] {
                timings.observe(&envelope("a", 1_000, event));
            }
            timings.observe(&envelope("b", 1_000, created("c1")));
            timings.observe(&envelope("a", 9_000, created("c3")));
        });

        // then every event counted in its own series, and the timings were recorded
        let text = rendered.render();
        for line in [
            "switchboard_events_total{domain=\"a\",kind=\"ConversationCreated\"} 3",
            "switchboard_events_total{domain=\"a\",kind=\"OfferAccepted\"} 1",
            "switchboard_events_total{domain=\"a\",kind=\"ConversationEnded\"} 1",
            "switchboard_events_total{domain=\"b\",kind=\"ConversationCreated\"} 1",
            "switchboard_speed_of_answer_seconds_count{domain=\"a\"} 1",
            "switchboard_handle_time_seconds_count{domain=\"a\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
