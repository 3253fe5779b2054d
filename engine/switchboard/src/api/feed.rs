//! Pushes to agents: a WebSocket per agent session carrying every durable
//! event that concerns the agent, resumable after a reconnect.
//!
//! The engine broadcasts each event once it is durable; the feed keeps the
//! most recent events of each domain in a ring, so a session that comes
//! back with `?after=<sequence>` first gets what it missed, then live
//! events, with nothing lost or repeated in between.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::Envelope;
use tokio::sync::broadcast;

use super::{ApiError, ApiState, Caller, Data};
use crate::describe::touched;

/// How many recent events of each domain a reconnecting session can resume from.
const RING_EVENTS: usize = 100_000;

/// The recent durable events of every domain, fed by the engine, and what
/// an offer popover shows about each open conversation.
pub struct Feed {
    rings: Mutex<BTreeMap<String, VecDeque<Arc<Envelope>>>>,
    arrivals: Mutex<BTreeMap<(String, String), Arrival>>,
}

/// How a conversation arrived: what SPEC.md's offer popover shows, by channel
/// (customer name, email or number, source page or number, and the timer,
/// which counts from the arrival, not from the offer).
#[derive(Clone, serde::Serialize)]
struct Arrival {
    channel: &'static str,
    customer: switchboard_proto::v1::Customer,
    source: String,
    subject: String,
    arrived_at_ms: i64,
}

impl Feed {
    /// A feed that keeps up with `events` on a task of its own.
    pub fn start(mut events: broadcast::Receiver<Arc<Envelope>>) -> Arc<Feed> {
        let feed = Arc::new(Feed { rings: Mutex::new(BTreeMap::new()), arrivals: Mutex::new(BTreeMap::new()) });
        let keeper = feed.clone();
        actix_web::rt::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(envelope) => keeper.keep(envelope),
                    // Lagging only thins the resume window; live sessions
                    // read the broadcast themselves.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        feed
    }

    fn keep(&self, envelope: Arc<Envelope>) {
        match &envelope.event {
            Some(Event::ConversationCreated(created)) => {
                let arrival = Arrival {
                    channel: switchboard_domain::channel::name(created.channel()),
                    customer: created.customer.clone().unwrap_or_default(),
                    source: created.source.clone(),
                    subject: created.subject.clone(),
                    arrived_at_ms: envelope.at_ms,
                };
                let key = (envelope.domain.clone(), created.conversation_id.clone());
                self.arrivals.lock().expect("feed lock").insert(key, arrival);
            }
            Some(Event::ConversationEnded(ended)) => {
                let key = (envelope.domain.clone(), ended.conversation_id.clone());
                self.arrivals.lock().expect("feed lock").remove(&key);
            }
            _ => {}
        }
        let mut rings = self.rings.lock().expect("feed lock");
        let ring = rings.entry(envelope.domain.clone()).or_default();
        if ring.len() == RING_EVENTS {
            ring.pop_front();
        }
        ring.push_back(envelope);
    }

    /// The kept events of `domain` after `sequence`, or `None` if some of
    /// them are no longer kept.
    fn since(&self, domain: &str, sequence: u64) -> Option<Vec<Arc<Envelope>>> {
        let rings = self.rings.lock().expect("feed lock");
        let Some(ring) = rings.get(domain) else {
            return Some(Vec::new());
        };
        let first_kept = ring.front().map_or(sequence + 1, |e| e.sequence);
        if first_kept > sequence + 1 {
            return None;
        }
        Some(ring.iter().filter(|e| e.sequence > sequence).cloned().collect())
    }
}

/// What concerns one agent: events naming them, and events of the
/// conversations they take part in.
struct Interest {
    agent_id: String,
    conversations: BTreeSet<String>,
}

impl Interest {
    fn concerns(&mut self, event: &Event) -> bool {
        let (conversation, agents) = touched(event);
        let names_agent = agents.contains(&self.agent_id.as_str());
        if let Some(conversation) = conversation {
            match event {
                Event::ConversationOffered(offer) if offer.agent_id == self.agent_id => {
                    self.conversations.insert(conversation.to_owned());
                }
                Event::WrapUpSubmitted(w) if w.agent_id == self.agent_id => {
                    let concerned = self.conversations.remove(conversation);
                    return concerned || names_agent;
                }
                Event::OfferTimedOut(o) if o.agent_id == self.agent_id => {
                    self.conversations.remove(conversation);
                    return true;
                }
                Event::OfferWithdrawn(o) if o.agent_id == self.agent_id => {
                    self.conversations.remove(conversation);
                    return true;
                }
                _ => {}
            }
            if self.conversations.contains(conversation) {
                return true;
            }
        }
        match event {
            Event::AnnouncementPosted(a) => a.agent_ids.is_empty() || a.agent_ids.contains(&self.agent_id),
            _ => names_agent,
        }
    }
}

/// Where a session resumes.
#[derive(Deserialize)]
pub struct Resume {
    /// The last domain sequence the session saw.
    after: Option<u64>,
}

/// One push. An offer also carries what the agent's popover shows: the
/// queue's name, the customer and source as the channel gives them, and
/// how long the customer has waited since arriving.
fn frame(state: &ApiState, envelope: &Envelope) -> String {
    let offer = match &envelope.event {
        Some(Event::ConversationOffered(offer)) => {
            let key = (envelope.domain.clone(), offer.conversation_id.clone());
            let arrival = state.feed.arrivals.lock().expect("feed lock").get(&key).cloned();
            let queue_name = state
                .config
                .tenant(&envelope.domain)
                .and_then(|t| t.queues.iter().find(|q| q.id == offer.queue_id))
                .map_or(offer.queue_id.as_str(), |q| if q.name.is_empty() { &q.id } else { &q.name });
            Some(OfferPopover {
                offer_id: &offer.offer_id,
                conversation_id: &offer.conversation_id,
                queue_id: &offer.queue_id,
                queue_name,
                deadline_ms: offer.deadline_ms,
                waited_ms: arrival.as_ref().map(|a| envelope.at_ms - a.arrived_at_ms),
                arrival,
            })
        }
        _ => None,
    };
    let frame = Frame { sequence: envelope.sequence, event: envelope, offer };
    serde_json::to_string(&frame).expect("a frame always serializes")
}

/// What [`frame`] writes; serialized straight from the envelope, without a
/// `serde_json::Value` tree in between.
#[derive(serde::Serialize)]
struct Frame<'a> {
    sequence: u64,
    event: &'a Envelope,
    #[serde(skip_serializing_if = "Option::is_none")]
    offer: Option<OfferPopover<'a>>,
}

#[derive(serde::Serialize)]
struct OfferPopover<'a> {
    offer_id: &'a str,
    conversation_id: &'a str,
    queue_id: &'a str,
    queue_name: &'a str,
    deadline_ms: i64,
    waited_ms: Option<i64>,
    arrival: Option<Arrival>,
}

/// `GET /v1/agents/me/ws`: the agent's push channel.
pub async fn agent_socket(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    body: web::Payload,
    resume: web::Query<Resume>,
) -> Result<HttpResponse, ApiError> {
    let agent_id = caller.agent()?.to_owned();
    let tenant = caller.tenant().to_owned();
    // Subscribe before reading the ring, so nothing falls between the two.
    let mut live = state.engine.subscribe();
    let backlog = match resume.after {
        Some(after) => Some(state.feed.since(&tenant, after).ok_or_else(|| {
            ApiError::Gone(format!("events after {after} are no longer kept: reload the agent's state and reconnect"))
        })?),
        None => None,
    };
    let (response, mut session, messages) =
        actix_ws::handle(&request, body).map_err(|e| ApiError::BadRequest(format!("not a WebSocket request: {e}")))?;
    let mut interest = Interest { agent_id, conversations: BTreeSet::new() };
    if let Some(domain) = state.engine.domain_state(&tenant).await? {
        // The conversations the agent holds now, so their later events reach it.
        if let Some(agent) = domain.agents.get(&interest.agent_id) {
            interest.conversations.extend(agent.holdings.keys().cloned());
        }
    }
    actix_web::rt::spawn(take_commands(
        state.clone(),
        tenant.clone(),
        interest.agent_id.clone(),
        session.clone(),
        messages,
    ));
    actix_web::rt::spawn(async move {
        let mut last = resume.after.unwrap_or(0);
        for envelope in backlog.into_iter().flatten() {
            last = envelope.sequence;
            if envelope.event.as_ref().is_some_and(|e| interest.concerns(e))
                && session.text(frame(&state, &envelope)).await.is_err()
            {
                return;
            }
        }
        loop {
            match live.recv().await {
                Ok(envelope) => {
                    if envelope.domain != tenant || (resume.after.is_some() && envelope.sequence <= last) {
                        continue;
                    }
                    last = envelope.sequence;
                    if envelope.event.as_ref().is_some_and(|e| interest.concerns(e))
                        && session.text(frame(&state, &envelope)).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Tell the client where to resume instead of silently skipping.
                    let reason = format!("fell behind: reconnect with ?after={last}");
                    let _ = session
                        .close(Some(actix_ws::CloseReason {
                            code: actix_ws::CloseCode::Again,
                            description: Some(reason),
                        }))
                        .await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = session.close(None).await;
                    return;
                }
            }
        }
    });
    Ok(response)
}

/// Reads the agent's commands from the socket: each text frame is an
/// [`AgentRequest`] with a `request_id`, e.g.
/// `{"request_id": "r7", "command": "accept", "offer_id": "demo-o3"}`, and is
/// answered with `{"reply_to": "r7", "events": [...]}` once durable, or
/// `{"reply_to": "r7", "error": {"error": kind, "message": ...}}`. The
/// request id is the command's idempotency key: a resent request is decided once.
async fn take_commands(
    state: Data,
    tenant: String,
    agent_id: String,
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
) {
    use futures_util::StreamExt;
    while let Some(Ok(message)) = messages.next().await {
        let text = match message {
            actix_ws::Message::Text(text) => text,
            actix_ws::Message::Ping(bytes) => {
                let _ = session.pong(&bytes).await;
                continue;
            }
            actix_ws::Message::Close(_) => break,
            _ => continue,
        };
        let (request_id, outcome) = match parse_request(&text) {
            Ok((request_id, request)) => {
                let outcome = match request.into_command(&agent_id) {
                    Ok(body) => {
                        let command = switchboard_proto::v1::Command {
                            command_id: format!("ws/{tenant}/{agent_id}/{request_id}"),
                            domain: tenant.clone(),
                            at_ms: 0,
                            command: Some(body),
                        };
                        state.engine.submit(command).await
                    }
                    Err(error) => Err(error),
                };
                (request_id, outcome)
            }
            Err((request_id, error)) => (request_id, Err(error)),
        };
        let reply = match outcome {
            Ok(events) => serde_json::to_string(&Reply { reply_to: &request_id, events: Some(&events), error: None }),
            Err(error) => {
                serde_json::to_string(&Reply { reply_to: &request_id, events: None, error: Some(error.body()) })
            }
        };
        let reply = reply.expect("a reply always serializes");
        if session.text(reply).await.is_err() {
            break;
        }
    }
}

/// The answer to one socket command: `events`, or `error`.
#[derive(serde::Serialize)]
struct Reply<'a> {
    reply_to: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<&'a [Envelope]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<serde_json::Value>,
}

fn parse_request(text: &str) -> Result<(String, super::AgentRequest), (String, ApiError)> {
    let mut value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| (String::new(), ApiError::BadRequest(format!("invalid JSON frame: {e}"))))?;
    let request_id = match value.as_object_mut().and_then(|o| o.remove("request_id")) {
        Some(serde_json::Value::String(id)) if !id.is_empty() => id,
        _ => return Err((String::new(), ApiError::BadRequest("every frame needs a request_id string".into()))),
    };
    let request = serde_json::from_value(value)
        .map_err(|e| (request_id.clone(), ApiError::BadRequest(format!("invalid request: {e}"))))?;
    Ok((request_id, request))
}
