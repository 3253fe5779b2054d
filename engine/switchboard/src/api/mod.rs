//! The agent and supervisor API (actix-web, JSON, under `/v1`): agents'
//! commands, the lists behind the transfer and conference dialogs, customer
//! traffic until the channel connectors arrive, health, readiness and the
//! digest that proves the live state equals a replay of the journal.
//!
//! Handlers are thin: authenticate, turn the request into a `Command`, hand
//! it to the engine, answer with the durable events or the rejection.

mod agent;
mod error;
mod feed;
mod metrics;
mod socket;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::Deserialize;
use switchboard_domain::{channel, template, DomainState};
use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::*;

pub use agent::{AgentRequest, AttachmentRequest};
pub use error::ApiError;
pub use feed::Feed;
pub use metrics::Metrics;

use crate::backend::Backend;
use crate::config::{Config, Principal, TokenIndex};

/// What every handler shares.
pub struct ApiState {
    /// The engine commands go to.
    pub engine: Backend,
    /// Tenants, tokens and entry points.
    pub config: Arc<Config>,
    /// The configured tokens, for one lookup per request.
    tokens: TokenIndex,
    /// Recent events, for agent sessions that resume.
    pub feed: Arc<Feed>,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Makes command ids unique within this process.
    next_command: AtomicU64,
    /// Makes command ids unique across restarts.
    instance: String,
}

impl ApiState {
    /// Shared state for the API over `engine`.
    /// Must run inside the actix runtime: the feed keeps up on a task.
    pub fn new(engine: Backend, config: Arc<Config>, instance: String) -> Self {
        let feed = Feed::start(engine.subscribe());
        let metrics = Metrics::start(engine.subscribe());
        let tokens = config.token_index();
        Self { engine, config, tokens, feed, metrics, next_command: AtomicU64::new(0), instance }
    }

    /// A command for `tenant`. The caller's `Idempotency-Key` header, when
    /// given, is the command id, so a retried request is decided once.
    fn command(&self, request: &HttpRequest, tenant: &str, body: C) -> Command {
        let command_id = request
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(|key| format!("api/{key}"))
            .unwrap_or_else(|| format!("api/{}/{}", self.instance, self.next_command.fetch_add(1, Ordering::Relaxed)));
        Command { command_id, domain: tenant.to_owned(), at_ms: 0, command: Some(body) }
    }

    async fn submit(&self, request: &HttpRequest, tenant: &str, body: C) -> Result<HttpResponse, ApiError> {
        let command = self.command(request, tenant, body);
        let events = self.engine.submit(command).await?;
        Ok(HttpResponse::Ok().json(Events { events: &events }))
    }
}

/// The body of every accepted command. Serialized straight from the events:
/// going through `serde_json::Value` built a tree of maps per reply and cost
/// more than the decision itself.
#[derive(serde::Serialize)]
struct Events<'a> {
    events: &'a [Arc<Envelope>],
}

/// The authenticated caller, from `Authorization: Bearer <token>`.
pub struct Caller(pub Principal);

impl Caller {
    fn tenant(&self) -> &str {
        match &self.0 {
            Principal::Agent { tenant, .. } | Principal::Supervisor { tenant, .. } => tenant,
        }
    }

    fn agent(&self) -> Result<&str, ApiError> {
        match &self.0 {
            Principal::Agent { agent_id, .. } => Ok(agent_id),
            Principal::Supervisor { .. } => Err(ApiError::Forbidden("this route is for agents".into())),
        }
    }

    fn supervisor(&self) -> Result<&str, ApiError> {
        match &self.0 {
            Principal::Supervisor { supervisor_id, .. } => Ok(supervisor_id),
            Principal::Agent { .. } => Err(ApiError::Forbidden("this route is for supervisors".into())),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Caller, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<ApiState>>().expect("ApiState is registered");
        let principal = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| state.tokens.authenticate(token.trim()));
        std::future::ready(principal.map(Caller).ok_or(ApiError::Unauthorized))
    }
}

/// Registers every route on an actix-web service config.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics::scrape))
        .service(
            web::scope("/v1")
                .route("/openapi.json", web::get().to(openapi))
                .route("/admin/digest", web::get().to(digest))
                .route("/inbound/messages", web::post().to(inbound_message))
                .route("/inbound/leave", web::post().to(inbound_leave))
                .route("/inbound/receipts", web::post().to(inbound_receipt))
                .route("/queues", web::get().to(list_queues))
                .route("/agents", web::get().to(list_agents))
                .route("/templates", web::get().to(list_templates))
                .route("/workflows", web::get().to(list_workflows))
                .route("/agents/me", web::get().to(me))
                .route("/agents/me/state", web::post().to(set_state))
                .route("/agents/me/ws", web::get().to(socket::agent_socket))
                .route("/announcements", web::post().to(announce))
                // Every dynamic segment costs a regex search (actix-router),
                // more than deciding the command: behind a static prefix each
                // request meets at most one, and others pass on a string compare.
                .service(web::scope("/offers").route("/{offer_id}/accept", web::post().to(accept)))
                .service(
                    web::scope("/conversations").service(
                        web::scope("/{id}")
                            .route("", web::get().to(conversation))
                            .route("/messages", web::post().to(send_message))
                            .route("/transfer", web::post().to(transfer))
                            .route("/conference", web::post().to(request_conference))
                            .route("/conference/leave", web::post().to(leave_conference))
                            .route("/conference/end", web::post().to(end_conference))
                            .route("/end", web::post().to(end_conversation))
                            .route("/wrap-up", web::post().to(wrap_up))
                            .route("/workflows", web::post().to(trigger_workflow)),
                    ),
                ),
        );
}

/// Malformed JSON and wrong field types answer 400 with a JSON body naming
/// the problem, like every other error.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(1 << 20)
        .error_handler(|error, _| ApiError::BadRequest(format!("invalid JSON body: {error}")).into())
}

type Data = web::Data<ApiState>;

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(state: Data) -> HttpResponse {
    if state.engine.is_ready() {
        let mut body = serde_json::json!({ "status": "ready" });
        // On Kafka, which partitions of the group's work this process decides now.
        if let Some(partitions) = state.engine.owned_partitions() {
            body["partitions"] = serde_json::json!(partitions);
        }
        if let Some(rebuilds) = state.engine.rebuilds_from_snapshots() {
            body["rebuilds_from_snapshots"] = serde_json::json!(rebuilds);
        }
        if let Some(partitions) = state.engine.read_model_from_snapshots() {
            body["read_model_from_snapshots"] = serde_json::json!(partitions);
        }
        if let Some(failure) = state.engine.worker_failure() {
            // The worker starts again by itself; the edge still answers.
            body["worker_failure"] = serde_json::json!(failure);
        }
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": "recovering" }))
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(include_str!("openapi.json"))
}

async fn digest(state: Data, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.supervisor()?;
    let digest = state.engine.digest().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "digest": digest })))
}

fn parse_channel(name: &str) -> Result<Channel, ApiError> {
    channel::from_name(name).ok_or_else(|| {
        ApiError::BadRequest(format!("unknown channel {name:?}: use messenger, sms, webchat, email or whatsapp"))
    })
}

/// A customer's message from a channel, until the connectors arrive.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundMessage {
    channel: String,
    /// Our address the customer wrote to: picks the entry point and queue.
    address: String,
    conversation_id: String,
    /// The sender's id for the message: a retry with the same id is taken once.
    sender_message_id: String,
    #[serde(default)]
    customer: InboundCustomer,
    /// An email's subject (its thread's replies are "Re: " it).
    #[serde(default)]
    subject: String,
    /// An email's copies (what reply-all pre-fills).
    #[serde(default)]
    cc: Vec<String>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    attachments: Vec<AttachmentRequest>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InboundCustomer {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    number: String,
}

async fn inbound_message(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    body: web::Json<InboundMessage>,
) -> Result<HttpResponse, ApiError> {
    caller.supervisor()?;
    let InboundMessage {
        channel,
        address,
        conversation_id,
        sender_message_id,
        customer,
        subject,
        cc,
        text,
        attachments,
    } = body.into_inner();
    let tenant = caller.tenant();
    let channel = parse_channel(&channel)?;
    let queue_id = state.config.entry_point(tenant, channel, &address).ok_or_else(|| {
        ApiError::NotFound(format!("no entry point for {} address {address:?}", channel::name(channel)))
    })?;
    // A mail's headers as a mail connector gives them: the sender's id is
    // its Message-ID, which the agent's reply answers (In-Reply-To).
    let email = (channel == Channel::Email).then(|| EmailHeaders {
        message_id: sender_message_id.clone(),
        from: customer.email.clone(),
        to: vec![address.clone()],
        cc,
        subject: subject.clone(),
        ..Default::default()
    });
    let command = C::ReceiveCustomerMessage(ReceiveCustomerMessage {
        message_id: format!("{conversation_id}/{sender_message_id}"),
        conversation_id,
        channel: channel as i32,
        queue_id: queue_id.to_owned(),
        customer: Some(Customer {
            name: customer.name,
            email: customer.email,
            number: customer.number,
            handle: String::new(),
        }),
        source: address,
        subject,
        priority: 0,
        external_id: sender_message_id,
        text,
        attachments: attachments.into_iter().map(Attachment::from).collect(),
        email,
    });
    state.submit(&request, tenant, command).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundLeave {
    conversation_id: String,
}

async fn inbound_leave(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    body: web::Json<InboundLeave>,
) -> Result<HttpResponse, ApiError> {
    caller.supervisor()?;
    let command = C::CustomerLeave(CustomerLeave { conversation_id: body.conversation_id.clone() });
    state.submit(&request, caller.tenant(), command).await
}

/// A channel's receipt for an agent's message, until the connectors arrive.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundReceipt {
    conversation_id: String,
    /// The agent's id for the message.
    message_id: String,
    /// `delivered` or `read`.
    status: String,
}

async fn inbound_receipt(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    body: web::Json<InboundReceipt>,
) -> Result<HttpResponse, ApiError> {
    caller.supervisor()?;
    let read = match body.status.as_str() {
        "delivered" => false,
        "read" => true,
        other => return Err(ApiError::BadRequest(format!("unknown receipt status {other:?}: use delivered or read"))),
    };
    let InboundReceipt { conversation_id, message_id, .. } = body.into_inner();
    let command = C::RecordReceipt(RecordReceipt { conversation_id, message_id, read });
    state.submit(&request, caller.tenant(), command).await
}

/// Answers with what `view` makes of the caller's tenant's state, on its
/// shard: only the answer is copied, never the tenant's whole state.
async fn answer_from(
    state: &ApiState,
    tenant: &str,
    view: impl FnOnce(&DomainState) -> Result<serde_json::Value, ApiError> + Send + 'static,
) -> Result<HttpResponse, ApiError> {
    let answer = state
        .engine
        .read(tenant, move |domain| match domain {
            Some(domain) => view(domain),
            None => view(&DomainState::default()),
        })
        .await??;
    Ok(HttpResponse::Ok().json(answer))
}

async fn list_queues(state: Data, caller: Caller) -> Result<HttpResponse, ApiError> {
    answer_from(&state, caller.tenant(), move |domain| {
        let queues: Vec<_> = domain
            .queues
            .iter()
            .map(|(id, queue)| {
                serde_json::json!({
                    "queue_id": id,
                    "name": queue.config.name,
                    "channel": channel::name(queue.channel()),
                    "waiting": queue.waiting.len(),
                    "oldest_arrival_ms": queue.waiting.iter().map(|k| k.arrived_at_ms).min(),
                })
            })
            .collect();
        Ok(serde_json::json!({ "queues": queues }))
    })
    .await
}

/// The tenant's message templates, with the parameters the agent fills in
/// and those the engine fills in from the conversation.
async fn list_templates(state: Data, caller: Caller) -> Result<HttpResponse, ApiError> {
    answer_from(&state, caller.tenant(), move |domain| {
        let templates: Vec<_> = domain
            .templates
            .values()
            .map(|t| {
                let channels: Vec<&str> =
                    t.channels.iter().map(|c| channel::name(Channel::try_from(*c).unwrap_or_default())).collect();
                let (parameters, system_parameters) = template::parameters(t);
                serde_json::json!({
                    "template_id": t.template_id,
                    "name": t.name,
                    "channels": channels,
                    "text": t.text,
                    "locked": t.locked,
                    "parameters": parameters,
                    "system_parameters": system_parameters,
                })
            })
            .collect();
        Ok(serde_json::json!({ "templates": templates }))
    })
    .await
}

/// The workflows agents may start, with the parameters each needs.
async fn list_workflows(state: Data, caller: Caller) -> Result<HttpResponse, ApiError> {
    answer_from(&state, caller.tenant(), move |domain| {
        let workflows: Vec<_> = domain
            .workflows
            .values()
            .map(|w| serde_json::json!({ "workflow_id": w.workflow_id, "name": w.name, "parameters": w.parameters }))
            .collect();
        Ok(serde_json::json!({ "workflows": workflows }))
    })
    .await
}

async fn list_agents(state: Data, caller: Caller) -> Result<HttpResponse, ApiError> {
    answer_from(&state, caller.tenant(), move |domain| {
        let agents: Vec<_> = domain.agents.iter().map(|(id, agent)| agent_summary(id, agent)).collect();
        Ok(serde_json::json!({ "agents": agents }))
    })
    .await
}

/// An agent as the transfer and conference dialogs list it: presence, and
/// load against capacity per channel.
fn agent_summary(id: &str, agent: &switchboard_domain::state::Agent) -> serde_json::Value {
    let channels: serde_json::Map<String, serde_json::Value> = channel::ALL
        .into_iter()
        .filter(|c| agent.capacity(*c) > 0)
        .map(|c| {
            let free = agent.capacity(c).saturating_sub(agent.load(c));
            (
                channel::name(c).to_owned(),
                serde_json::json!({ "load": agent.load(c), "capacity": agent.capacity(c), "free": free }),
            )
        })
        .collect();
    serde_json::json!({
        "agent_id": id,
        "name": agent.name,
        "status": status_name(agent.status),
        "idle_reason": agent.idle_reason,
        "channels": channels,
    })
}

/// `GET /v1/agents/me`: everything an agent's desktop shows, to load it
/// after a refresh or a lost connection: presence and load, each
/// conversation offered to or held by the agent with what its popover
/// shows, the reasons to pick from, and the domain's `sequence`, from which
/// the WebSocket resumes (`?after=`) with nothing missed in between.
async fn me(state: Data, caller: Caller) -> Result<HttpResponse, ApiError> {
    use switchboard_domain::state::Role;
    let agent_id = caller.agent()?.to_owned();
    answer_from(&state, caller.tenant(), move |domain| {
        let agent_id = agent_id.as_str();
        let agent = domain.agents.get(agent_id).ok_or_else(|| ApiError::NotFound(format!("agent {agent_id}")))?;
        let conversations: Vec<_> = agent
            .holdings
            .iter()
            .map(|(conversation_id, holding)| {
                let (role, offer, wrap_up_since_ms) = match &holding.role {
                    Role::Offered(offer_id) => {
                        let offer = domain.offers.get(offer_id).map(|o| {
                            serde_json::json!({
                                "offer_id": offer_id,
                                "kind": offer_kind_name(o.kind),
                                "deadline_ms": o.deadline_ms,
                            })
                        });
                        ("offered", offer, None)
                    }
                    Role::Owner => ("owner", None, None),
                    Role::Invitee => ("invitee", None, None),
                    Role::WrapUp { since_ms, .. } => ("wrap_up", None, Some(*since_ms)),
                };
                let conversation = domain.conversations.get(conversation_id);
                serde_json::json!({
                    "conversation_id": conversation_id,
                    "channel": channel::name(holding.channel),
                    "role": role,
                    "offer": offer,
                    "wrap_up_since_ms": wrap_up_since_ms,
                    "queue_id": conversation.map(|c| c.queue_id.as_str()),
                    "customer": conversation.map(|c| &c.customer),
                    "source": conversation.map(|c| c.source.as_str()),
                    "subject": conversation.map(|c| c.subject.as_str()),
                    "arrived_at_ms": conversation.map(|c| c.arrived_at_ms),
                })
            })
            .collect();
        let mut me = agent_summary(agent_id, agent);
        me["conversations"] = conversations.into();
        me["wrap_up_reasons"] = domain.wrap_up_reasons.clone().into();
        me["idle_reasons"] = domain.idle_reasons.clone().into();
        me["sequence"] = domain.last_sequence.into();
        Ok(me)
    })
    .await
}

/// `GET /v1/conversations/{id}`: the conversation as its interaction pane
/// shows it, with its whole thread (customer and agent messages, oldest
/// first, an agent's with its receipts; until the conversation closes, after
/// which the log has it: `replay --conversation`), for an agent who takes part in it
/// (offered, owner, invitee or in wrap-up) or a supervisor. Anyone else is
/// told it does not exist, as for another tenant's.
async fn conversation(state: Data, caller: Caller, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    use switchboard_domain::state::ConversationStatus;
    let id = id.into_inner();
    let agent = caller.agent().ok().map(str::to_owned);
    answer_from(&state, caller.tenant(), move |domain| {
        let not_found = || ApiError::NotFound(format!("conversation {id}"));
        let conversation = domain.conversations.get(id.as_str()).ok_or_else(not_found)?;
        if let Some(agent_id) = agent.as_deref() {
            let takes_part = domain.agents.get(agent_id).is_some_and(|a| a.holdings.contains_key(id.as_str()));
            if !takes_part {
                return Err(not_found());
            }
        }
        let thread: Vec<_> = conversation
            .thread
            .iter()
            .map(|m| {
                let receipts = m.agent_id.as_ref().and(conversation.agent_messages.get(&m.message_id));
                serde_json::json!({
                    "message_id": m.message_id,
                    "from": if m.agent_id.is_some() { "agent" } else { "customer" },
                    "agent_id": m.agent_id,
                    "text": m.text,
                    "attachments": m.attachments,
                    "at_ms": m.at_ms,
                    "delivered": receipts.map(|r| r.delivered),
                    "read": receipts.map(|r| r.read),
                })
            })
            .collect();
        let status = match conversation.status {
            ConversationStatus::Queued => "queued",
            ConversationStatus::Offered(_) => "offered",
            ConversationStatus::Active => "active",
            ConversationStatus::Ended => "ended",
        };
        Ok(serde_json::json!({
            "conversation_id": id.as_str(),
            "channel": channel::name(conversation.channel),
            "queue_id": conversation.queue_id,
            "status": status,
            "owner": conversation.owner,
            "customer": conversation.customer,
            "source": conversation.source,
            "subject": conversation.subject,
            "arrived_at_ms": conversation.arrived_at_ms,
            "thread": thread,
        }))
    })
    .await
}

fn offer_kind_name(kind: OfferKind) -> &'static str {
    match kind {
        OfferKind::Transfer => "transfer",
        OfferKind::Conference => "conference",
        OfferKind::Routed | OfferKind::Unspecified => "routed",
    }
}

pub(crate) fn status_name(status: AgentStatus) -> &'static str {
    match status {
        AgentStatus::Unspecified => "unspecified",
        AgentStatus::LoggedOut => "logged_out",
        AgentStatus::Available => "available",
        AgentStatus::Idle => "idle",
        AgentStatus::Rona => "rona",
    }
}

/// Bodies of the agent routes: the fields of the matching [`AgentRequest`]
/// that are not in the path.
mod bodies {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct State {
        pub status: String,
        #[serde(default)]
        pub idle_reason: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Message {
        pub message_id: String,
        #[serde(default)]
        pub text: String,
        #[serde(default)]
        pub template_id: String,
        #[serde(default)]
        pub template_parameters: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        pub email: Option<super::agent::EmailRequest>,
        #[serde(default)]
        pub attachments: Vec<super::AttachmentRequest>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Target {
        pub queue_id: Option<String>,
        pub agent_id: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Reasons {
        pub reasons: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Workflow {
        pub workflow_id: String,
        #[serde(default)]
        pub parameters: BTreeMap<String, String>,
    }
}

impl ApiState {
    async fn agent_request(
        &self,
        request: &HttpRequest,
        caller: &Caller,
        agent_request: AgentRequest,
    ) -> Result<HttpResponse, ApiError> {
        let command = agent_request.into_command(caller.agent()?)?;
        self.submit(request, caller.tenant(), command).await
    }
}

async fn set_state(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    body: web::Json<bodies::State>,
) -> Result<HttpResponse, ApiError> {
    let bodies::State { status, idle_reason } = body.into_inner();
    state.agent_request(&request, &caller, AgentRequest::SetState { status, idle_reason }).await
}

async fn accept(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    offer_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.agent_request(&request, &caller, AgentRequest::Accept { offer_id: offer_id.into_inner() }).await
}

async fn send_message(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    conversation_id: web::Path<String>,
    body: web::Json<bodies::Message>,
) -> Result<HttpResponse, ApiError> {
    let bodies::Message { message_id, text, template_id, template_parameters, email, attachments } = body.into_inner();
    let conversation_id = conversation_id.into_inner();
    let agent_request = AgentRequest::SendMessage {
        conversation_id,
        message_id,
        text,
        template_id,
        template_parameters,
        email,
        attachments,
    };
    state.agent_request(&request, &caller, agent_request).await
}

async fn transfer(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    conversation_id: web::Path<String>,
    body: web::Json<bodies::Target>,
) -> Result<HttpResponse, ApiError> {
    let bodies::Target { queue_id, agent_id } = body.into_inner();
    let agent_request = AgentRequest::Transfer { conversation_id: conversation_id.into_inner(), queue_id, agent_id };
    state.agent_request(&request, &caller, agent_request).await
}

async fn request_conference(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    conversation_id: web::Path<String>,
    body: web::Json<bodies::Target>,
) -> Result<HttpResponse, ApiError> {
    let bodies::Target { queue_id, agent_id } = body.into_inner();
    let agent_request =
        AgentRequest::RequestConference { conversation_id: conversation_id.into_inner(), agent_id, queue_id };
    state.agent_request(&request, &caller, agent_request).await
}

async fn leave_conference(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    conversation_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let agent_request = AgentRequest::LeaveConference { conversation_id: conversation_id.into_inner() };
    state.agent_request(&request, &caller, agent_request).await
}

async fn end_conference(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    conversation_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let agent_request = AgentRequest::EndConference { conversation_id: conversation_id.into_inner() };
    state.agent_request(&request, &caller, agent_request).await
}

async fn end_conversation(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    conversation_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let agent_request = AgentRequest::End { conversation_id: conversation_id.into_inner() };
    state.agent_request(&request, &caller, agent_request).await
}

async fn wrap_up(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    conversation_id: web::Path<String>,
    body: web::Json<bodies::Reasons>,
) -> Result<HttpResponse, ApiError> {
    let agent_request =
        AgentRequest::WrapUp { conversation_id: conversation_id.into_inner(), reasons: body.into_inner().reasons };
    state.agent_request(&request, &caller, agent_request).await
}

async fn trigger_workflow(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    conversation_id: web::Path<String>,
    body: web::Json<bodies::Workflow>,
) -> Result<HttpResponse, ApiError> {
    let bodies::Workflow { workflow_id, parameters } = body.into_inner();
    let agent_request =
        AgentRequest::TriggerWorkflow { conversation_id: conversation_id.into_inner(), workflow_id, parameters };
    state.agent_request(&request, &caller, agent_request).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Announcement {
    announcement_id: String,
    text: String,
    #[serde(default)]
    agent_ids: Vec<String>,
}

async fn announce(
    state: Data,
    caller: Caller,
    request: HttpRequest,
    body: web::Json<Announcement>,
) -> Result<HttpResponse, ApiError> {
    let supervisor_id = caller.supervisor()?.to_owned();
    let body = body.into_inner();
    let command = C::PostAnnouncement(PostAnnouncement {
        supervisor_id,
        announcement_id: body.announcement_id,
        text: body.text,
        agent_ids: body.agent_ids,
    });
    state.submit(&request, caller.tenant(), command).await
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::{test, App};
    use switchboard_live::{Engine, EngineOptions};

    use super::*;

    #[actix_web::test]
    async fn every_command_route_reaches_its_handler_and_nothing_else_does() {
        // given the API over a demo engine
        let dir = tempfile::tempdir().unwrap();
        let config = Config::demo();
        let engine = Engine::start(EngineOptions::new(dir.path()), config.configuration_commands()).await.unwrap();
        let state = web::Data::new(ApiState::new(Backend::Embedded(engine.clone()), Arc::new(config), "test".into()));
        let app = test::init_service(App::new().app_data(state).app_data(json_config()).configure(routes)).await;
        let call = |method: actix_web::http::Method, path: &str| {
            test::TestRequest::default().method(method).uri(path).set_json(serde_json::json!({})).to_request()
        };

        // then every command route answers a caller without a token with the handler's 401
        let commands = [
            "/v1/inbound/messages",
            "/v1/inbound/leave",
            "/v1/inbound/receipts",
            "/v1/agents/me/state",
            "/v1/announcements",
            "/v1/offers/o-1/accept",
            "/v1/conversations/c-1/messages",
            "/v1/conversations/c-1/transfer",
            "/v1/conversations/c-1/conference",
            "/v1/conversations/c-1/conference/leave",
            "/v1/conversations/c-1/conference/end",
            "/v1/conversations/c-1/end",
            "/v1/conversations/c-1/wrap-up",
            "/v1/conversations/c-1/workflows",
        ];
        for path in commands {
            let response = test::call_service(&app, call(actix_web::http::Method::POST, path)).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "POST {path}");
            let body: serde_json::Value = test::read_body_json(response).await;
            assert_eq!(body["error"], "unauthorized", "POST {path}");
            // As before the conversation routes shared a scope: another method is no route.
            let response = test::call_service(&app, call(actix_web::http::Method::GET, path)).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "GET {path}");
        }

        // and paths that are no route are not found
        for path in [
            "/v1/conversations/c-1",
            "/v1/conversations/c-1/unknown",
            "/v1/conversations/c-1/end/more",
            "/v1/conversations//end",
            "/v1/offers/o-1",
        ] {
            let response = test::call_service(&app, call(actix_web::http::Method::POST, path)).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "POST {path}");
        }
        engine.shutdown().await.unwrap();
    }
}
