//! A load run: agents log in, customers arrive on schedule (open loop:
//! an arrival never waits for an earlier one), agents answer their offers,
//! and every reply's events drive what happens next.
//!
//! Everything runs as tasks on one single-threaded actix runtime and shares
//! one [`World`] (behind a `RefCell`, never borrowed across an await).
//! Offers are learnt from the events in command replies: routing runs inside
//! every command, so an offer made because a customer wrote, an agent
//! wrapped up or came back appears in that command's reply. The one thing a
//! reply never shows is what a timer did: an offer that lapsed, the agent's
//! RONA and the re-offer of the conversation. With `--ws` the agents'
//! WebSockets bring those; without, an agent who let an offer lapse waits
//! for its deadline, comes back (the reply confirms the RONA), and the
//! customer, left waiting, leaves (which withdraws any re-offer nobody saw).
//!
//! Lifecycle: the customer writes; the offered agent thinks, accepts, sends
//! a message (the customer may answer), talks, then ends the conversation,
//! transfers it to another queue (whoever takes it there ends it), or
//! invites a colleague into a conference (who joins, writes, and either
//! leaves or is ended with the conference); everyone who took part wraps up.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::api::{route, Api, ApiError, Target};
use crate::config::Roster;
use crate::events::{self, Envelope, Event, Offered};
use crate::schedule::{Arrival, Ending, Mix, Plan, Schedule, ScheduleError};
use crate::stats::{RunShape, Stats, Summary};

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The engine.
    pub target: Target,
    /// Customers per second.
    pub rate: f64,
    /// How long customers arrive.
    pub duration: Duration,
    /// The start of the run left out of the per-second rates.
    pub warmup: Duration,
    /// The schedule's seed.
    pub seed: u64,
    /// HTTP connections at most.
    pub connections: usize,
    /// A request's time limit.
    pub request_timeout: Duration,
    /// How long to wait, after the last arrival, for conversations to finish.
    pub drain: Duration,
    /// Agents also listen on their WebSockets.
    pub ws: bool,
    /// Agents send their commands on their WebSockets (with `ws`).
    pub ws_commands: bool,
    /// How conversations behave.
    pub mix: Mix,
    /// How many of the roster's agents to play (all when larger).
    pub agents: usize,
    /// Prefix of conversation ids, unique per run.
    pub run_id: String,
    /// Print a progress line to stderr every second.
    pub progress: bool,
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The schedule cannot be made.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// No agent could log in.
    #[error("no agent could log in (first error: {0})")]
    Login(String),
}

/// How long past an offer's deadline an agent who let it lapse comes back.
const LAPSE_GRACE: Duration = Duration::from_millis(250);
/// How often an agent retries coming back while its lapse is not yet seen.
const RECOVER_ATTEMPTS: u32 = 40;
/// The wait between those attempts.
const RECOVER_PAUSE: Duration = Duration::from_millis(250);
/// How many failures are printed to stderr in full.
const ERRORS_PRINTED: u64 = 10;

/// An agent's part in a conversation, as the client knows it.
#[derive(Debug, Clone, PartialEq)]
enum Role {
    Offered(String),
    Active,
    WrapUp,
}

#[derive(Debug)]
struct Holding {
    channel: Rc<str>,
    role: Role,
}

struct AgentSim {
    id: String,
    token: Rc<str>,
    capacity: HashMap<String, u32>,
    status: i32,
    recovering: bool,
    /// When (engine time, ms) a reply or frame last showed the agent back
    /// from RONA: every lapse with an earlier deadline is over.
    last_return_ms: i64,
    holdings: HashMap<String, Holding>,
}

impl AgentSim {
    fn load(&self, channel: &str) -> u32 {
        self.holdings.values().filter(|h| &*h.channel == channel).count() as u32
    }
}

/// Where a conference stands, from the owner's side.
#[derive(Debug, Clone, PartialEq)]
enum Conference {
    None,
    Requested(usize),
    Joined(usize),
    /// Left, ended, lapsed or refused: the owner carries on alone.
    Over,
}

struct Conversation {
    plan: Plan,
    entry: usize,
    channel: Rc<str>,
    sent_at: Instant,
    offered: bool,
    owner: Option<usize>,
    open_offer: Option<String>,
    ended: bool,
    /// Agents who owe a wrap-up: from their `WrapUpStarted`, or from the
    /// `ConversationEnded` for those who took part (a WebSocket brings the
    /// two as separate frames).
    pending_wrap_ups: Vec<usize>,
    /// Agents whose wrap-up task was started.
    wrap_tasks: Vec<usize>,
    wrap_ups: u32,
    lapsed: bool,
    transferred: bool,
    conference: Conference,
    invitee_done: bool,
    customer_messages: u32,
    agent_messages: u32,
    notify: Option<Rc<Notify>>,
}

impl Conversation {
    fn wake(&self) {
        if let Some(notify) = &self.notify {
            notify.notify_one();
        }
    }
}

/// What an observed event asks of the agents.
enum Action {
    Offer(usize, Offered),
    WrapUp(usize, String),
    /// The agent went to RONA at the given engine time.
    Recover(usize, i64),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Reply,
    Socket,
}

/// Everything the tasks share.
struct World {
    stats: Stats,
    agents: Vec<AgentSim>,
    agent_index: HashMap<String, usize>,
    conversations: HashMap<String, Conversation>,
    offers_seen: HashSet<String>,
    offers_open: HashSet<String>,
    sequences_seen: HashSet<u64>,
    open: u64,
    rng: ChaCha8Rng,
    errors_printed: u64,
}

struct Ctx {
    world: RefCell<World>,
    api: Api,
    roster: Roster,
    options: RunOptions,
    start: Cell<Instant>,
    stopped: Cell<bool>,
    /// Wakes the WebSocket listeners when the run stops.
    stop: Notify,
    /// WebSocket listeners still running.
    listening: Cell<usize>,
    /// Which agent a token is, for commands sent on the agent's socket.
    agent_by_token: HashMap<Rc<str>, usize>,
    /// The open sockets' outgoing frames, by agent.
    links: RefCell<HashMap<usize, mpsc::UnboundedSender<String>>>,
    /// Commands sent on a socket and not yet answered, by request id.
    pending: RefCell<HashMap<String, (usize, oneshot::Sender<Answer>)>>,
    /// Makes request ids unique within the run.
    next_request: Cell<u64>,
}

/// The answer to one request: its events, or why there are none.
type Answer = Result<Vec<Envelope>, ApiError>;

type Shared = Rc<Ctx>;

impl Ctx {
    fn in_window(&self, at: Instant) -> bool {
        let start = self.start.get();
        at >= start + self.options.warmup && at <= start + self.options.duration
    }
}

impl World {
    fn agent(&self, id: &str) -> Option<usize> {
        self.agent_index.get(id).copied()
    }

    fn failure(&mut self, what: &str, error: &ApiError) {
        self.stats.error(error.kind());
        if self.errors_printed < ERRORS_PRINTED {
            self.errors_printed += 1;
            eprintln!("error: {what}: {error}");
        }
    }

    /// Folds the events of one reply or frame into the world; returns what
    /// the agents must do about them.
    fn observe(
        &mut self,
        events: &[Envelope],
        source: Source,
        dedupe: bool,
        now: Instant,
        window: bool,
    ) -> Vec<Action> {
        if source == Source::Reply {
            self.stats.events += events.len() as u64;
            if window {
                self.stats.events_in_window += events.len() as u64;
            }
        } else {
            self.stats.ws_events += events.len() as u64;
        }
        let mut actions = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        for envelope in events {
            if dedupe && !self.sequences_seen.insert(envelope.sequence) {
                continue;
            }
            let Some(event) = &envelope.event else { continue };
            self.apply(event, envelope.at_ms, now, &mut actions, &mut touched);
        }
        for conversation_id in touched {
            self.maybe_finish(&conversation_id, window);
        }
        actions
    }

    fn apply(&mut self, event: &Event, at_ms: i64, now: Instant, actions: &mut Vec<Action>, touched: &mut Vec<String>) {
        match event {
            Event::ConversationOffered(offer) => {
                if !self.offers_seen.insert(offer.offer_id.clone()) {
                    return;
                }
                self.stats.offers += 1;
                let (Some(agent), Some(c)) =
                    (self.agent(&offer.agent_id), self.conversations.get_mut(&offer.conversation_id))
                else {
                    self.stats.race("offer_for_unknown_conversation");
                    return;
                };
                if offer.kind == events::OFFER_ROUTED && !c.offered {
                    c.offered = true;
                    self.stats.offer.record(now - c.sent_at);
                }
                if offer.kind != events::OFFER_CONFERENCE {
                    c.open_offer = Some(offer.offer_id.clone());
                }
                let channel = c.channel.clone();
                self.offers_open.insert(offer.offer_id.clone());
                self.agents[agent].holdings.insert(
                    offer.conversation_id.clone(),
                    Holding { channel, role: Role::Offered(offer.offer_id.clone()) },
                );
                actions.push(Action::Offer(agent, offer.clone()));
            }
            Event::OfferAccepted(o) => {
                self.offers_open.remove(&o.offer_id);
                let Some(agent) = self.agent(&o.agent_id) else { return };
                if let Some(h) = self.agents[agent].holdings.get_mut(&o.conversation_id) {
                    h.role = Role::Active;
                }
                if let Some(c) = self.conversations.get_mut(&o.conversation_id) {
                    if o.kind == events::OFFER_CONFERENCE {
                        c.conference = Conference::Joined(agent);
                        c.wake();
                    } else {
                        c.owner = Some(agent);
                        c.open_offer = None;
                    }
                }
            }
            Event::OfferTimedOut(o) | Event::OfferWithdrawn(o) => {
                self.offers_open.remove(&o.offer_id);
                if let Some(agent) = self.agent(&o.agent_id) {
                    let holdings = &mut self.agents[agent].holdings;
                    if holdings.get(&o.conversation_id).is_some_and(|h| h.role == Role::Offered(o.offer_id.clone())) {
                        holdings.remove(&o.conversation_id);
                    }
                }
                if let Some(c) = self.conversations.get_mut(&o.conversation_id) {
                    if o.kind == events::OFFER_CONFERENCE {
                        c.conference = Conference::Over;
                        c.wake();
                    } else if c.open_offer.as_deref() == Some(o.offer_id.as_str()) {
                        c.open_offer = None;
                    }
                }
                touched.push(o.conversation_id.clone());
            }
            Event::AgentStateChanged(s) => {
                let Some(agent) = self.agent(&s.agent_id) else { return };
                self.agents[agent].status = s.to;
                if s.from == events::STATUS_RONA && s.to == events::STATUS_AVAILABLE {
                    let last = &mut self.agents[agent].last_return_ms;
                    *last = (*last).max(at_ms);
                }
                if s.to == events::STATUS_RONA && !self.agents[agent].recovering {
                    actions.push(Action::Recover(agent, at_ms));
                }
            }
            Event::ConversationEnded(e) => {
                if let Some(c) = self.conversations.get_mut(&e.conversation_id) {
                    c.ended = true;
                    c.open_offer = None;
                    // Everyone taking part goes to wrap-up.
                    let joined = match c.conference {
                        Conference::Joined(invitee) => Some(invitee),
                        _ => None,
                    };
                    for agent in c.owner.into_iter().chain(joined) {
                        if !c.pending_wrap_ups.contains(&agent) {
                            c.pending_wrap_ups.push(agent);
                        }
                    }
                    if c.conference != Conference::None {
                        c.conference = Conference::Over;
                    }
                    c.wake();
                }
                touched.push(e.conversation_id.clone());
            }
            Event::WrapUpStarted(w) => {
                let Some(agent) = self.agent(&w.agent_id) else { return };
                let Some(c) = self.conversations.get_mut(&w.conversation_id) else { return };
                if c.wrap_tasks.contains(&agent) {
                    return;
                }
                c.wrap_tasks.push(agent);
                if !c.pending_wrap_ups.contains(&agent) {
                    c.pending_wrap_ups.push(agent);
                }
                if c.owner == Some(agent) {
                    c.owner = None;
                }
                let channel = c.channel.clone();
                self.agents[agent].holdings.insert(w.conversation_id.clone(), Holding { channel, role: Role::WrapUp });
                actions.push(Action::WrapUp(agent, w.conversation_id.clone()));
            }
            Event::WrapUpSubmitted(w) => {
                let Some(agent) = self.agent(&w.agent_id) else { return };
                self.agents[agent].holdings.remove(&w.conversation_id);
                self.stats.wrap_ups += 1;
                if let Some(c) = self.conversations.get_mut(&w.conversation_id) {
                    c.pending_wrap_ups.retain(|a| *a != agent);
                    c.wrap_ups += 1;
                }
                touched.push(w.conversation_id.clone());
            }
            Event::ConferenceJoined(j) => {
                if let (Some(agent), Some(c)) =
                    (self.agent(&j.agent_id), self.conversations.get_mut(&j.conversation_id))
                {
                    c.conference = Conference::Joined(agent);
                    c.wake();
                }
            }
            Event::ConferenceLeft(j) => {
                if let Some(c) = self.conversations.get_mut(&j.conversation_id) {
                    c.conference = Conference::Over;
                    c.wake();
                }
            }
            Event::ConferenceEnded(e) => {
                if let Some(c) = self.conversations.get_mut(&e.conversation_id) {
                    c.conference = Conference::Over;
                    c.wake();
                }
            }
            Event::Other(_) => {}
        }
    }

    /// Counts a conversation that is over: ended, and every wrap-up in.
    fn maybe_finish(&mut self, conversation_id: &str, window: bool) {
        let Some(c) = self.conversations.get(conversation_id) else { return };
        if !c.ended || !c.pending_wrap_ups.is_empty() {
            return;
        }
        if c.wrap_ups > 0 {
            self.stats.lifecycles += 1;
            if window {
                self.stats.lifecycles_in_window += 1;
            }
        } else {
            self.stats.abandoned += 1;
        }
        self.conversations.remove(conversation_id);
        self.open = self.open.saturating_sub(1);
    }

    /// Forgets an offer that lapsed where no reply shows it (a timer
    /// expired it): the agent no longer holds it, the conversation no
    /// longer waits on it.
    fn forget_lapsed_offer(&mut self, agent: usize, offer: &Offered) {
        self.offers_open.remove(&offer.offer_id);
        let holdings = &mut self.agents[agent].holdings;
        if holdings.get(&offer.conversation_id).is_some_and(|h| h.role == Role::Offered(offer.offer_id.clone())) {
            holdings.remove(&offer.conversation_id);
        }
        if let Some(c) = self.conversations.get_mut(&offer.conversation_id) {
            if c.open_offer.as_deref() == Some(offer.offer_id.as_str()) {
                c.open_offer = None;
            }
        }
    }

    /// A colleague who could join a conference on `channel` now: available,
    /// with free capacity (one to spare), not `owner`.
    fn pick_invitee(&mut self, owner: usize, channel: &str) -> Option<usize> {
        let n = self.agents.len();
        if n < 2 {
            return None;
        }
        let offset = self.rng.gen_range(0..n);
        (0..n).map(|i| (i + offset) % n).find(|&i| {
            let a = &self.agents[i];
            i != owner
                && a.status == events::STATUS_AVAILABLE
                && !a.recovering
                && a.load(channel) + 1 < a.capacity.get(channel).copied().unwrap_or(0)
        })
    }
}

/// Runs the load described by `options` against the engine with `roster`'s
/// agents, and returns its figures, the conversations left unfinished and
/// the CPU used (the engine's when `engine_pid` is given). Must run inside
/// an actix system.
pub async fn run(
    roster: Roster,
    options: RunOptions,
    engine_pid: Option<u32>,
) -> Result<(Stats, u64, CpuUse), RunError> {
    let schedule = Schedule::new(options.seed, options.rate, options.duration, &roster.entries, options.mix.clone())?;
    let api = Api::new(&options.target, options.connections, options.request_timeout);
    let played = options.agents.min(roster.agents.len());
    let agents: Vec<AgentSim> = roster.agents[..played]
        .iter()
        .map(|a| AgentSim {
            id: a.id.clone(),
            token: Rc::from(a.token.as_str()),
            capacity: a.capacity.clone().into_iter().collect(),
            status: 0,
            recovering: false,
            last_return_ms: 0,
            holdings: HashMap::new(),
        })
        .collect();
    let agent_index = agents.iter().enumerate().map(|(i, a)| (a.id.clone(), i)).collect();
    let agent_by_token = agents.iter().enumerate().map(|(i, a)| (a.token.clone(), i)).collect();
    let world = World {
        stats: Stats::default(),
        agents,
        agent_index,
        conversations: HashMap::new(),
        offers_seen: HashSet::new(),
        offers_open: HashSet::new(),
        sequences_seen: HashSet::new(),
        open: 0,
        rng: ChaCha8Rng::seed_from_u64(options.seed ^ 0x5eed_a9e7),
        errors_printed: 0,
    };
    let ctx: Shared = Rc::new(Ctx {
        world: RefCell::new(world),
        api,
        roster,
        options,
        start: Cell::new(Instant::now()),
        stopped: Cell::new(false),
        stop: Notify::new(),
        listening: Cell::new(0),
        agent_by_token,
        links: RefCell::new(HashMap::new()),
        pending: RefCell::new(HashMap::new()),
        next_request: Cell::new(0),
    });

    if ctx.options.ws {
        open_sockets(&ctx, played).await;
    }
    log_in(&ctx, played).await?;

    let start = Instant::now();
    ctx.start.set(start);
    let cpu_at_start = cpu_now(engine_pid);
    if ctx.options.progress {
        actix_rt::spawn(progress(ctx.clone()));
    }
    for arrival in schedule {
        let due = start + arrival.at;
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let lag = Instant::now().saturating_duration_since(due);
        ctx.world.borrow_mut().stats.schedule_lag.record(lag);
        actix_rt::spawn(customer(ctx.clone(), arrival));
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(start + ctx.options.duration)).await;

    // Drain: bounded by the drain time.
    let deadline = Instant::now() + ctx.options.drain;
    while ctx.world.borrow().open > 0 && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    ctx.stopped.set(true);
    ctx.stop.notify_waiters();
    let closing = Instant::now() + Duration::from_secs(5);
    while ctx.listening.get() > 0 && Instant::now() < closing {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_at_end = cpu_now(engine_pid);
    let mut world = ctx.world.borrow_mut();
    let unfinished = world.open;
    let cpu = CpuUse {
        engine_s: cpu_at_start.0.zip(cpu_at_end.0).map(|(a, b)| b - a),
        loadtest_s: cpu_at_start.1.zip(cpu_at_end.1).map(|(a, b)| b - a),
    };
    Ok((std::mem::take(&mut world.stats), unfinished, cpu))
}

/// CPU seconds used during a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// By the engine (when its process is known).
    pub engine_s: Option<f64>,
    /// By the load generator.
    pub loadtest_s: Option<f64>,
}

fn cpu_now(engine_pid: Option<u32>) -> (Option<f64>, Option<f64>) {
    (engine_pid.and_then(crate::procfs::cpu_seconds), crate::procfs::cpu_seconds(std::process::id()))
}

/// The shape of a run, for its summary.
pub fn shape(options: &RunOptions, agents: usize) -> RunShape {
    RunShape {
        rate: options.rate,
        duration: options.duration,
        window: options.duration.saturating_sub(options.warmup),
        seed: options.seed,
        agents,
        ws: options.ws,
        ws_commands: options.ws_commands,
    }
}

/// The figures of a finished run.
pub fn summarise(
    options: &RunOptions,
    agents: usize,
    stats: &Stats,
    unfinished: u64,
    rss: Option<u64>,
    cpu: CpuUse,
) -> Summary {
    let mut summary = Summary::new(&shape(options, agents), stats, unfinished, rss);
    summary.set_cpu(cpu.engine_s, cpu.loadtest_s);
    summary
}

async fn progress(ctx: Shared) {
    let start = ctx.start.get();
    let mut tick = 0u64;
    while !ctx.stopped.get() && tick < 100_000 {
        tick += 1;
        tokio::time::sleep_until(tokio::time::Instant::from_std(start + Duration::from_secs(tick))).await;
        let w = ctx.world.borrow();
        eprintln!(
            "t={tick:>3}s arrivals={} lifecycles={} open={} events={} errors={}",
            w.stats.arrivals,
            w.stats.lifecycles,
            w.open,
            w.stats.events,
            w.stats.error_count()
        );
    }
}

/// Sends one request, counts it, folds its events into the world and
/// starts what they call for. Returns the round trip and the events.
async fn call<B: Serialize>(
    ctx: &Shared,
    name: &'static str,
    path: &str,
    token: &str,
    body: Option<&B>,
) -> Result<(Duration, Vec<Envelope>), ApiError> {
    let sent = Instant::now();
    let on_socket = send_on_socket(ctx, name, path, token, body);
    let sent_on_socket = on_socket.is_some();
    let result = match on_socket {
        Some((request_id, answered)) => match tokio::time::timeout(ctx.options.request_timeout, answered).await {
            Ok(answer) => answer.unwrap_or_else(|_| Err(ApiError::Transport("the socket closed".into()))),
            Err(_) => {
                ctx.pending.borrow_mut().remove(&request_id);
                Err(ApiError::Timeout)
            }
        },
        None => ctx.api.post(path, token, body).await,
    };
    let now = Instant::now();
    let elapsed = now - sent;
    let events = result?;
    let actions = {
        let mut w = ctx.world.borrow_mut();
        w.stats.route(name, elapsed);
        w.stats.requests_ok += 1;
        w.stats.requests_on_socket += u64::from(sent_on_socket);
        w.observe(&events, Source::Reply, ctx.options.ws, now, ctx.in_window(now))
    };
    dispatch(ctx, actions);
    Ok((elapsed, events))
}

/// Sends an agent's request on its WebSocket when commands go there and the
/// socket is open, and returns its request id and where its answer comes;
/// `None` to send it over HTTP instead.
fn send_on_socket<B: Serialize>(
    ctx: &Shared,
    name: &str,
    path: &str,
    token: &str,
    body: Option<&B>,
) -> Option<(String, oneshot::Receiver<Answer>)> {
    if !ctx.options.ws_commands {
        return None;
    }
    let agent = *ctx.agent_by_token.get(token)?;
    let link = ctx.links.borrow().get(&agent)?.clone();
    let body = body.map(|b| serde_json::to_value(b).expect("a request body serializes"));
    let mut frame = crate::api::socket_command(name, path, body)?;
    let id = ctx.next_request.get();
    ctx.next_request.set(id + 1);
    let request_id = format!("{}-{id}", ctx.options.run_id);
    frame["request_id"] = request_id.clone().into();
    let (answer, answered) = oneshot::channel();
    link.send(frame.to_string()).ok()?;
    ctx.pending.borrow_mut().insert(request_id.clone(), (agent, answer));
    Some((request_id, answered))
}

/// Answers the request a socket's reply is for.
fn answer(ctx: &Shared, reply_to: &str, answer: Answer) {
    if let Some((_, waiting)) = ctx.pending.borrow_mut().remove(reply_to) {
        let _ = waiting.send(answer);
    }
}

fn dispatch(ctx: &Shared, actions: Vec<Action>) {
    for action in actions {
        match action {
            Action::Offer(agent, offer) => {
                actix_rt::spawn(on_offer(ctx.clone(), agent, offer));
            }
            Action::WrapUp(agent, conversation_id) => {
                actix_rt::spawn(wrap_up(ctx.clone(), agent, conversation_id));
            }
            Action::Recover(agent, since_ms) => {
                let ctx = ctx.clone();
                actix_rt::spawn(async move {
                    recover(ctx, agent, since_ms).await;
                });
            }
        }
    }
}

/// Counts a failed step: a race when the conversation ended under it (the
/// customer left), an error otherwise.
fn step_failed(ctx: &Shared, what: &str, conversation_id: &str, error: &ApiError) {
    let mut w = ctx.world.borrow_mut();
    let ended = w.conversations.get(conversation_id).is_none_or(|c| c.ended);
    if ended && error.api_kind().is_some() {
        w.stats.race(format!("{what}_after_end"));
    } else {
        w.failure(what, error);
    }
}

/// A request that is one step of a conversation; `false` when it failed.
async fn step<B: Serialize>(
    ctx: &Shared,
    name: &'static str,
    path: &str,
    token: &str,
    body: Option<&B>,
    conversation_id: &str,
) -> bool {
    match call(ctx, name, path, token, body).await {
        Ok(_) => true,
        Err(e) => {
            step_failed(ctx, name, conversation_id, &e);
            false
        }
    }
}

async fn sleep(duration: Duration) {
    if !duration.is_zero() {
        actix_rt::time::sleep(duration).await;
    }
}

fn token(ctx: &Shared, agent: usize) -> Rc<str> {
    ctx.world.borrow().agents[agent].token.clone()
}

async fn open_sockets(ctx: &Shared, played: usize) {
    let connected = Rc::new(Cell::new(0usize));
    for agent in 0..played {
        actix_rt::spawn(listen(ctx.clone(), agent, connected.clone()));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while connected.get() < played && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One agent's WebSocket: every frame's event is folded in like a reply's
/// (duplicates of reply events are recognised by their sequence). Reconnects
/// a few times, resuming after the last sequence seen; closes the socket
/// politely when the run stops.
async fn listen(ctx: Shared, agent: usize, connected: Rc<Cell<usize>>) {
    let token = token(&ctx, agent);
    let mut after: Option<u64> = None;
    let mut first = true;
    ctx.listening.set(ctx.listening.get() + 1);
    for _attempt in 0..5 {
        if ctx.stopped.get() {
            break;
        }
        let socket = ctx.api.agent_socket(&token, after).await;
        if first {
            first = false;
            connected.set(connected.get() + 1);
        }
        let mut socket = match socket {
            Ok(socket) => socket,
            Err(e) => {
                ctx.world.borrow_mut().failure("websocket connect", &e);
                actix_rt::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let (link, mut outgoing) = mpsc::unbounded_channel::<String>();
        ctx.links.borrow_mut().insert(agent, link);
        loop {
            if ctx.stopped.get() {
                socket.close().await;
                ctx.links.borrow_mut().remove(&agent);
                ctx.listening.set(ctx.listening.get() - 1);
                return;
            }
            let frame = tokio::select! {
                frame = socket.next_text() => frame,
                Some(request) = outgoing.recv() => {
                    if let Err(e) = socket.send_text(request).await {
                        ctx.world.borrow_mut().failure("websocket send", &e);
                        break;
                    }
                    continue;
                }
                () = ctx.stop.notified() => continue,
            };
            let Some(frame) = frame else { break };
            let text = match frame {
                Ok(text) => text,
                Err(e) => {
                    ctx.world.borrow_mut().failure("websocket", &e);
                    break;
                }
            };
            let frame: events::Frame = match serde_json::from_slice(&text) {
                Ok(frame) => frame,
                Err(e) => {
                    ctx.world.borrow_mut().failure("websocket frame", &ApiError::Decode(e.to_string()));
                    continue;
                }
            };
            if let Some(reply_to) = frame.reply_to {
                let result = match (frame.events, frame.error) {
                    (_, Some(refusal)) => Err(ApiError::Refused { kind: refusal.error, message: refusal.message }),
                    (Some(events), None) => Ok(events),
                    (None, None) => Err(ApiError::Decode("a reply with neither events nor error".into())),
                };
                answer(&ctx, &reply_to, result);
                continue;
            }
            let Some(event) = frame.event else { continue };
            after = Some(after.map_or(frame.sequence, |a| a.max(frame.sequence)));
            let now = Instant::now();
            let actions = ctx.world.borrow_mut().observe(&[event], Source::Socket, true, now, ctx.in_window(now));
            dispatch(&ctx, actions);
        }
        // Whatever was sent on this socket will not be answered on it.
        ctx.links.borrow_mut().remove(&agent);
        let unanswered: Vec<String> =
            ctx.pending.borrow().iter().filter(|(_, (a, _))| *a == agent).map(|(id, _)| id.clone()).collect();
        for id in unanswered {
            answer(&ctx, &id, Err(ApiError::Transport("the socket closed before answering".into())));
        }
    }
    ctx.listening.set(ctx.listening.get() - 1);
}

async fn log_in(ctx: &Shared, played: usize) -> Result<(), RunError> {
    let done = Rc::new(Cell::new(0usize));
    let first_error: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let ok = Rc::new(Cell::new(0usize));
    for agent in 0..played {
        let (ctx, done, ok, first_error) = (ctx.clone(), done.clone(), ok.clone(), first_error.clone());
        actix_rt::spawn(async move {
            let token = token(&ctx, agent);
            match call(&ctx, route::STATE, "/agents/me/state", &token, Some(&json!({ "status": "available" }))).await {
                Ok(_) => {
                    ctx.world.borrow_mut().agents[agent].status = events::STATUS_AVAILABLE;
                    ok.set(ok.get() + 1);
                }
                Err(e) => {
                    first_error.borrow_mut().get_or_insert_with(|| e.to_string());
                    ctx.world.borrow_mut().failure("log in", &e);
                }
            }
            done.set(done.get() + 1);
        });
    }
    let deadline = Instant::now() + ctx.options.request_timeout + Duration::from_secs(5);
    while done.get() < played && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    if ok.get() == 0 {
        let first = first_error.borrow().clone().unwrap_or_else(|| "no answer".into());
        return Err(RunError::Login(first));
    }
    Ok(())
}

/// A customer writes in, starting a conversation.
async fn customer(ctx: Shared, arrival: Arrival) {
    let entry = &ctx.roster.entries[arrival.entry];
    let conversation_id = format!("{}-{}", ctx.options.run_id, arrival.index);
    {
        let mut w = ctx.world.borrow_mut();
        w.stats.arrivals += 1;
        w.open += 1;
        w.conversations.insert(
            conversation_id.clone(),
            Conversation {
                plan: arrival.plan,
                entry: arrival.entry,
                channel: Rc::from(entry.channel.as_str()),
                sent_at: Instant::now(),
                offered: false,
                owner: None,
                open_offer: None,
                ended: false,
                pending_wrap_ups: Vec::new(),
                wrap_tasks: Vec::new(),
                wrap_ups: 0,
                lapsed: false,
                transferred: false,
                conference: Conference::None,
                invitee_done: false,
                customer_messages: 1,
                agent_messages: 0,
                notify: None,
            },
        );
    }
    let body = json!({
        "channel": entry.channel,
        "address": entry.address,
        "conversation_id": conversation_id,
        "sender_message_id": "m1",
        "customer": {
            "name": format!("Customer {}", arrival.index),
            "email": format!("customer{}@example.com", arrival.index),
        },
        "subject": "Order question",
        "text": "Hello, I have a question about my order.",
    });
    if let Err(e) = call(&ctx, route::ARRIVAL, "/inbound/messages", &ctx.roster.supervisor_token, Some(&body)).await {
        let mut w = ctx.world.borrow_mut();
        w.failure("customer message", &e);
        if w.conversations.remove(&conversation_id).is_some() {
            w.open = w.open.saturating_sub(1);
        }
    }
}

/// The customer answers the agent.
async fn customer_reply(ctx: &Shared, conversation_id: &str) {
    let (entry, n) = {
        let mut w = ctx.world.borrow_mut();
        let Some(c) = w.conversations.get_mut(conversation_id) else { return };
        c.customer_messages += 1;
        (c.entry, c.customer_messages)
    };
    let entry = &ctx.roster.entries[entry];
    let body = json!({
        "channel": entry.channel,
        "address": entry.address,
        "conversation_id": conversation_id,
        "sender_message_id": format!("m{n}"),
        "text": "Thanks, that helps.",
    });
    step(ctx, route::CUSTOMER_REPLY, "/inbound/messages", &ctx.roster.supervisor_token, Some(&body), conversation_id)
        .await;
}

/// The customer gives up.
async fn customer_leaves(ctx: &Shared, conversation_id: &str) {
    let body = json!({ "conversation_id": conversation_id });
    step(ctx, route::LEAVE, "/inbound/leave", &ctx.roster.supervisor_token, Some(&body), conversation_id).await;
}

fn offer_open(ctx: &Shared, offer_id: &str) -> bool {
    ctx.world.borrow().offers_open.contains(offer_id)
}

/// An agent was offered a conversation.
async fn on_offer(ctx: Shared, agent: usize, offer: Offered) {
    let (plan, lapse) = {
        let mut w = ctx.world.borrow_mut();
        let Some(c) = w.conversations.get_mut(&offer.conversation_id) else { return };
        let lapse = c.plan.lapse && !c.lapsed && offer.kind == events::OFFER_ROUTED;
        if lapse {
            c.lapsed = true;
        }
        let plan = c.plan.clone();
        if lapse {
            w.stats.lapses += 1;
        }
        (plan, lapse)
    };
    if lapse {
        return let_lapse(&ctx, agent, &offer).await;
    }
    sleep(plan.think).await;
    if !offer_open(&ctx, &offer.offer_id) {
        return; // Withdrawn meanwhile: the customer left.
    }
    let token = token(&ctx, agent);
    let path = format!("/offers/{}/accept", offer.offer_id);
    match call::<()>(&ctx, route::ACCEPT, &path, &token, None).await {
        Ok((elapsed, _)) => ctx.world.borrow_mut().stats.ack.record(elapsed),
        Err(e) => return accept_failed(&ctx, agent, &offer, &e).await,
    }
    if offer.kind == events::OFFER_CONFERENCE {
        join_conference(&ctx, agent, &offer.conversation_id, &plan).await;
    } else {
        own(&ctx, agent, &offer.conversation_id, &plan).await;
    }
}

/// The accept came too late (the offer lapsed or was withdrawn).
async fn accept_failed(ctx: &Shared, agent: usize, offer: &Offered, error: &ApiError) {
    let ended = {
        let mut w = ctx.world.borrow_mut();
        let ended = w.conversations.get(&offer.conversation_id).is_none_or(|c| c.ended);
        if ended && error.api_kind().is_some() {
            w.stats.race("accept_after_end");
        } else {
            w.failure("accept", error);
        }
        if offer.kind == events::OFFER_CONFERENCE {
            if let Some(c) = w.conversations.get_mut(&offer.conversation_id) {
                c.conference = Conference::Over;
                c.wake();
            }
        }
        ended
    };
    if ended || error.api_kind() != Some("offer_not_open") {
        return;
    }
    // The offer lapsed under the agent: it is in RONA now.
    ctx.world.borrow_mut().forget_lapsed_offer(agent, offer);
    recover(ctx.clone(), agent, offer.deadline_ms).await;
    if !ctx.options.ws && offer.kind == events::OFFER_ROUTED {
        abandon_if_unseen(ctx, &offer.conversation_id).await;
    }
}

/// After a lapse seen only by its deadline: the conversation went back to
/// its queue and may have been offered again by the timer, which no reply
/// shows. Unless someone visibly has it, the customer leaves.
async fn abandon_if_unseen(ctx: &Shared, conversation_id: &str) {
    let visible = {
        let w = ctx.world.borrow();
        match w.conversations.get(conversation_id) {
            None => return,
            Some(c) => c.ended || c.owner.is_some() || c.open_offer.is_some(),
        }
    };
    if !visible {
        customer_leaves(ctx, conversation_id).await;
    }
}

/// The agent lets the offer lapse, then comes back.
async fn let_lapse(ctx: &Shared, agent: usize, offer: &Offered) {
    if ctx.options.ws {
        // The WebSocket brings OfferTimedOut and the RONA (which starts the
        // agent's return) and the re-offer, to whoever it goes.
        return;
    }
    ctx.world.borrow_mut().agents[agent].status = events::STATUS_RONA;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let wait = Duration::from_millis(u64::try_from(offer.deadline_ms - now_ms).unwrap_or(0)) + LAPSE_GRACE;
    sleep(wait).await;
    recover(ctx.clone(), agent, offer.deadline_ms).await;
    // Past its deadline the offer is gone, whether or not the return was seen.
    ctx.world.borrow_mut().forget_lapsed_offer(agent, offer);
    abandon_if_unseen(ctx, &offer.conversation_id).await;
}

/// The agent sets itself Available again after a RONA from an offer due at
/// `deadline_ms`; retried while no reply shows a return from RONA at or
/// after that deadline (the lapse's timer has not fired yet). One agent
/// returns once for several offers that lapsed together. `true` once seen.
async fn recover(ctx: Shared, agent: usize, deadline_ms: i64) -> bool {
    let returned = |ctx: &Shared| ctx.world.borrow().agents[agent].last_return_ms >= deadline_ms;
    // Another task of the agent's may be bringing it back already.
    let mut waited = 0;
    while ctx.world.borrow().agents[agent].recovering && waited < RECOVER_ATTEMPTS * 2 {
        waited += 1;
        sleep(RECOVER_PAUSE).await;
    }
    if returned(&ctx) {
        return true;
    }
    ctx.world.borrow_mut().agents[agent].recovering = true;
    let token = token(&ctx, agent);
    let body = json!({ "status": "available" });
    let mut confirmed = false;
    for attempt in 0..RECOVER_ATTEMPTS {
        if attempt > 0 {
            sleep(RECOVER_PAUSE).await;
        }
        match call(&ctx, route::STATE, "/agents/me/state", &token, Some(&body)).await {
            // With the WebSocket, RONA was seen there: no change means it is over already.
            Ok(_) if returned(&ctx) || ctx.options.ws => {
                confirmed = true;
                break;
            }
            Ok(_) => {}
            Err(e) => ctx.world.borrow_mut().failure("set available", &e),
        }
    }
    let mut w = ctx.world.borrow_mut();
    w.agents[agent].recovering = false;
    if !confirmed {
        w.stats.error("lapse_not_seen");
        if w.errors_printed < ERRORS_PRINTED {
            w.errors_printed += 1;
            let agent_id = &w.agents[agent].id;
            eprintln!("error: agent {agent_id} let an offer lapse, but no reply showed it back from RONA");
        }
    }
    confirmed
}

/// The agent owns the conversation: writes, maybe hears back, then ends,
/// transfers or confers.
async fn own(ctx: &Shared, agent: usize, conversation_id: &str, plan: &Plan) {
    let token = token(ctx, agent);
    if !agent_message(ctx, agent, &token, conversation_id).await {
        return;
    }
    if plan.customer_reply {
        customer_reply(ctx, conversation_id).await;
    }
    sleep(plan.talk).await;
    let (transferred, conferred, entry) = {
        let w = ctx.world.borrow();
        let Some(c) = w.conversations.get(conversation_id) else { return };
        if c.ended {
            return;
        }
        (c.transferred, c.conference != Conference::None, c.entry)
    };
    match plan.ending {
        Ending::Transfer if !transferred => {
            if let Some(queue_id) = ctx.roster.entries[entry].transfer_to.clone() {
                if let Some(c) = ctx.world.borrow_mut().conversations.get_mut(conversation_id) {
                    c.transferred = true;
                }
                let path = format!("/conversations/{conversation_id}/transfer");
                if step(ctx, route::TRANSFER, &path, &token, Some(&json!({ "queue_id": queue_id })), conversation_id)
                    .await
                {
                    return; // Whoever takes it in the other queue ends it.
                }
            }
        }
        Ending::Conference { invitee_leaves } if !conferred => {
            return confer(ctx, agent, &token, conversation_id, invitee_leaves).await;
        }
        _ => {}
    }
    end(ctx, &token, conversation_id).await;
}

async fn agent_message(ctx: &Shared, agent: usize, token: &str, conversation_id: &str) -> bool {
    let n = {
        let mut w = ctx.world.borrow_mut();
        let Some(c) = w.conversations.get_mut(conversation_id) else { return false };
        c.agent_messages += 1;
        c.agent_messages
    };
    let path = format!("/conversations/{conversation_id}/messages");
    let body = json!({ "message_id": format!("a{agent}-{n}"), "text": "Hello, let me look into that for you." });
    step(ctx, route::MESSAGE, &path, token, Some(&body), conversation_id).await
}

async fn end(ctx: &Shared, token: &str, conversation_id: &str) {
    let path = format!("/conversations/{conversation_id}/end");
    step::<()>(ctx, route::END, &path, token, None, conversation_id).await;
}

/// Waits, at most `limit`, until `done` holds for the conversation (or it
/// is gone); `false` on time-out.
async fn wait_for(ctx: &Shared, conversation_id: &str, limit: Duration, done: impl Fn(&Conversation) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let notify = {
            let w = ctx.world.borrow();
            match w.conversations.get(conversation_id) {
                None => return true,
                Some(c) if done(c) => return true,
                Some(c) => c.notify.clone(),
            }
        };
        let Some(notify) = notify else { return false };
        if tokio::time::timeout_at(deadline, notify.notified()).await.is_err() {
            return false;
        }
    }
}

/// The owner invites a colleague, waits for them to join and write, then
/// ends the conference or waits for the colleague to leave and ends the
/// conversation.
async fn confer(ctx: &Shared, owner: usize, token: &str, conversation_id: &str, invitee_leaves: bool) {
    let invitee = {
        let mut w = ctx.world.borrow_mut();
        let Some(channel) = w.conversations.get(conversation_id).map(|c| c.channel.clone()) else { return };
        let invitee = w.pick_invitee(owner, &channel);
        match (invitee, w.conversations.get_mut(conversation_id)) {
            (Some(invitee), Some(c)) => {
                c.conference = Conference::Requested(invitee);
                c.notify = Some(Rc::new(Notify::new()));
                Some(w.agents[invitee].id.clone())
            }
            _ => {
                w.stats.race("no_free_colleague");
                None
            }
        }
    };
    let Some(invitee_id) = invitee else { return end(ctx, token, conversation_id).await };
    let path = format!("/conversations/{conversation_id}/conference");
    if let Err(e) = call(ctx, route::CONFERENCE, &path, token, Some(&json!({ "agent_id": invitee_id }))).await {
        {
            let mut w = ctx.world.borrow_mut();
            if e.api_kind() == Some("target_unavailable") {
                w.stats.race("conference_target_unavailable");
            } else {
                w.failure("conference", &e);
            }
            if let Some(c) = w.conversations.get_mut(conversation_id) {
                c.conference = Conference::Over;
            }
        }
        return end(ctx, token, conversation_id).await;
    }
    let limit = Duration::from_millis(ctx.roster.max_offer_timeout_ms()) + Duration::from_secs(5);
    wait_for(ctx, conversation_id, limit, |c| !matches!(c.conference, Conference::Requested(_))).await;
    let joined = {
        let w = ctx.world.borrow();
        match w.conversations.get(conversation_id) {
            None => return,
            Some(c) if c.ended => return,
            Some(c) => matches!(c.conference, Conference::Joined(_)),
        }
    };
    if !joined {
        return end(ctx, token, conversation_id).await;
    }
    // The colleague writes, and may leave; the owner waits for that.
    let limit = Duration::from_secs(60);
    if !wait_for(ctx, conversation_id, limit, |c| c.invitee_done || c.conference == Conference::Over).await {
        ctx.world.borrow_mut().stats.error("conference_stalled");
    }
    let conference_on = {
        let w = ctx.world.borrow();
        match w.conversations.get(conversation_id) {
            None => return,
            Some(c) if c.ended => return,
            Some(c) => matches!(c.conference, Conference::Joined(_)),
        }
    };
    if conference_on && !invitee_leaves {
        let path = format!("/conversations/{conversation_id}/conference/end");
        step::<()>(ctx, route::CONFERENCE_END, &path, token, None, conversation_id).await;
    } else {
        if conference_on {
            wait_for(ctx, conversation_id, limit, |c| c.conference == Conference::Over).await;
        }
        end(ctx, token, conversation_id).await;
    }
}

/// The colleague joined: writes, then leaves or waits to be ended with the
/// conference.
async fn join_conference(ctx: &Shared, agent: usize, conversation_id: &str, plan: &Plan) {
    let token = token(ctx, agent);
    let written = agent_message(ctx, agent, &token, conversation_id).await;
    let leaves = matches!(plan.ending, Ending::Conference { invitee_leaves: true });
    if written && leaves {
        sleep(plan.talk / 2).await;
        let path = format!("/conversations/{conversation_id}/conference/leave");
        step::<()>(ctx, route::CONFERENCE_LEAVE, &path, &token, None, conversation_id).await;
    }
    if let Some(c) = ctx.world.borrow_mut().conversations.get_mut(conversation_id) {
        c.invitee_done = true;
        c.wake();
    }
}

/// The agent wraps up, after a while.
async fn wrap_up(ctx: Shared, agent: usize, conversation_id: String) {
    let (wrap, reason) = {
        let mut w = ctx.world.borrow_mut();
        let Some(wrap) = w.conversations.get(&conversation_id).map(|c| c.plan.wrap) else { return };
        let i = w.rng.gen_range(0..ctx.roster.wrap_up_reasons.len());
        (wrap, ctx.roster.wrap_up_reasons[i].clone())
    };
    sleep(wrap).await;
    let token = token(&ctx, agent);
    let path = format!("/conversations/{conversation_id}/wrap-up");
    if let Err(e) = call(&ctx, route::WRAP_UP, &path, &token, Some(&json!({ "reasons": [reason] }))).await {
        ctx.world.borrow_mut().failure("wrap-up", &e);
    }
}
