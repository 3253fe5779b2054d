//! The agent's WebSocket: pushes what concerns the agent (from the
//! [`Feed`](super::Feed)), resumable after a reconnect with
//! `?after=<sequence>`, and takes the agent's commands.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use switchboard_domain::state::ConversationStatus;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::Envelope;

use super::feed::{Arrival, Subscription};
use super::{ApiError, ApiState, Caller, Data};

/// Where a session resumes.
#[derive(Deserialize)]
pub struct Resume {
    /// The last domain sequence the session saw.
    after: Option<u64>,
}

/// One push. An offer also carries what the agent's popover shows: the
/// queue's name, the customer and source as the channel gives them, and
/// how long the customer has waited since arriving.
async fn frame(state: &ApiState, envelope: &Envelope) -> String {
    let offer = match &envelope.event {
        Some(Event::ConversationOffered(offer)) => {
            let arrival = arrival(state, &envelope.domain, &offer.conversation_id).await;
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

/// How the conversation of an offer arrived: as the feed kept it since this
/// process started or, for a conversation that arrived before (a restart),
/// as the domain's state has it, which the feed then keeps.
async fn arrival(state: &ApiState, domain: &str, conversation_id: &str) -> Option<Arrival> {
    if let Some(arrival) = state.feed.arrival(domain, conversation_id) {
        return Some(arrival);
    }
    let id = conversation_id.to_owned();
    let lags = state.feed.lags();
    let (arrival, open, as_of) = state
        .engine
        .read(domain, move |domain| {
            let domain = domain?;
            let conversation = domain.conversations.get(&id)?;
            Some((Arrival::of(conversation), conversation.status != ConversationStatus::Ended, domain.last_sequence))
        })
        .await
        .ok()??;
    if open {
        state.feed.remember_arrival(domain, conversation_id, arrival.clone(), as_of, lags);
    }
    Some(arrival)
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
    // The conversations the agent holds now, so their later events reach it.
    let agent = agent_id.clone();
    let (held, current_sequence) = state
        .engine
        .read(&tenant, move |domain| match domain {
            Some(domain) => {
                let held = domain.agents.get(&agent).map(|a| a.holdings.keys().cloned().collect::<Vec<_>>());
                (held.unwrap_or_default(), domain.last_sequence)
            }
            None => (Vec::new(), 0),
        })
        .await?;
    let subscription = state
        .feed
        .subscribe(&tenant, &agent_id, held, resume.after, current_sequence)
        .map_err(|e| ApiError::Gone(e.to_string()))?;
    let (response, session, messages) =
        actix_ws::handle(&request, body).map_err(|e| ApiError::BadRequest(format!("not a WebSocket request: {e}")))?;
    // Reading ends when the client goes; pushing stops then too, leaving the feed.
    let (reading, read_ended) = tokio::sync::oneshot::channel::<()>();
    actix_web::rt::spawn(take_commands(state.clone(), tenant, agent_id, session.clone(), messages, reading));
    actix_web::rt::spawn(push(state, subscription, session, read_ended));
    Ok(response)
}

/// Sends the session what it missed, then what the feed hands it, until
/// the client goes away (`read_ended`); a session the feed ended for
/// falling behind is closed with where to resume.
async fn push(
    state: Data,
    mut subscription: Subscription,
    mut session: actix_ws::Session,
    mut read_ended: tokio::sync::oneshot::Receiver<()>,
) {
    let mut last = subscription.start;
    for envelope in std::mem::take(&mut subscription.backlog) {
        last = envelope.sequence;
        if session.text(frame(&state, &envelope).await).await.is_err() {
            return;
        }
    }
    loop {
        let envelope = tokio::select! {
            envelope = subscription.live.recv() => envelope,
            _ = &mut read_ended => return,
        };
        let Some(envelope) = envelope else { break };
        last = envelope.sequence;
        if session.text(frame(&state, &envelope).await).await.is_err() {
            return;
        }
    }
    let reason = format!("fell behind: reconnect with ?after={last}");
    let close = actix_ws::CloseReason { code: actix_ws::CloseCode::Again, description: Some(reason) };
    let _ = session.close(Some(close)).await;
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
    _reading: tokio::sync::oneshot::Sender<()>,
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
    events: Option<&'a [std::sync::Arc<Envelope>]>,
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
