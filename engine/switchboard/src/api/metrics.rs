//! `GET /metrics`: what supervisors' dashboards scrape, in Prometheus text
//! format. Counters and histograms follow the durable events; gauges (queue
//! depth, oldest wait, agents by state) are read from the state at scrape
//! time, so they are never stale.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::HttpResponse;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use switchboard_domain::{channel, event_name};
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
    pub fn start(mut events: broadcast::Receiver<Arc<Envelope>>) -> Arc<Metrics> {
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
                    Ok(envelope) => timings.observe(&envelope),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        counter!("switchboard_metrics_events_missed_total").increment(missed)
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Arc::new(Metrics { handle })
    }
}

/// Start times kept until the matching end, for the histograms.
#[derive(Default)]
struct Timings {
    created_ms: BTreeMap<(String, String), i64>,
    accepted_ms: BTreeMap<(String, String), i64>,
}

impl Timings {
    fn observe(&mut self, envelope: &Envelope) {
        let Some(event) = &envelope.event else { return };
        let domain = envelope.domain.clone();
        counter!("switchboard_events_total", "domain" => domain.clone(), "kind" => event_name(event)).increment(1);
        // The log's volume: what a Kafka deployment must size its topics for.
        counter!("switchboard_event_bytes_total", "domain" => domain.clone())
            .increment(prost::Message::encoded_len(envelope) as u64);
        let key = |conversation: &str| (domain.clone(), conversation.to_owned());
        match event {
            Event::ConversationCreated(e) => {
                self.created_ms.insert(key(&e.conversation_id), envelope.at_ms);
            }
            Event::OfferAccepted(e) if e.kind() == OfferKind::Routed => {
                if let Some(created) = self.created_ms.remove(&key(&e.conversation_id)) {
                    histogram!("switchboard_speed_of_answer_seconds", "domain" => domain.clone())
                        .record((envelope.at_ms - created) as f64 / 1000.0);
                }
                self.accepted_ms.entry(key(&e.conversation_id)).or_insert(envelope.at_ms);
            }
            Event::ConversationEnded(e) => {
                self.created_ms.remove(&key(&e.conversation_id));
                if let Some(accepted) = self.accepted_ms.remove(&key(&e.conversation_id)) {
                    histogram!("switchboard_handle_time_seconds", "domain" => domain.clone())
                        .record((envelope.at_ms - accepted) as f64 / 1000.0);
                }
            }
            Event::WrapUpSubmitted(e) => {
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

/// `GET /metrics`.
pub async fn scrape(state: Data) -> HttpResponse {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let Ok(states) = state.engine.states().await else {
        return HttpResponse::ServiceUnavailable().body("engine unavailable");
    };
    for (domain, domain_state) in states {
        for (queue_id, queue) in &domain_state.queues {
            let labels = [("domain", domain.clone()), ("queue", queue_id.clone())];
            gauge!("switchboard_queue_depth", &labels).set(queue.waiting.len() as f64);
            let oldest = queue.waiting.iter().map(|k| k.arrived_at_ms).min();
            gauge!("switchboard_queue_oldest_wait_seconds", &labels)
                .set(oldest.map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0));
        }
        let mut by_state: BTreeMap<&str, u32> =
            ["logged_out", "available", "idle", "rona"].into_iter().map(|s| (s, 0)).collect();
        for agent in domain_state.agents.values() {
            *by_state.entry(super::status_name(agent.status)).or_default() += 1;
        }
        for (status, count) in by_state {
            gauge!("switchboard_agents", "domain" => domain.clone(), "state" => status).set(f64::from(count));
        }
        for c in channel::ALL {
            let load: u32 = domain_state.agents.values().map(|a| a.load(c)).sum();
            gauge!("switchboard_agent_load", "domain" => domain.clone(), "channel" => channel::name(c))
                .set(f64::from(load));
        }
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.handle.render())
}
