//! A seeded, realistic day of a contact center in virtual time.
//!
//! [`run`] drives the pure domain with a discrete-event loop: every scheduled
//! action (a customer arriving, an agent accepting after some thought, an
//! offer's timer firing, a wrap-up) becomes one [`Command`] decided by
//! [`DomainState::execute`] at the action's virtual time, and the events it
//! returns go to the [`EventSink`] as one batch. Agents and customers react
//! to those events (an offer is answered or left to lapse, a wrap-up is
//! submitted), which schedules further actions. Nothing reads a clock or
//! iterates a hash map, and all randomness comes from one ChaCha8 generator
//! seeded with the seed, so the same seed and scenario give the same event
//! stream, byte for byte.
//!
//! The scenario format is in [`scenario`] and `docs/simulation.md`.

pub mod scenario;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use switchboard_domain::state::{Place, Role};
use switchboard_domain::{channel, DomainState, Rejection};
use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::*;

pub use self::scenario::{Distribution, Scenario, ScenarioError};
use crate::figures::{clock, Figures, FiguresReport};

/// Where the simulated events go: the journal, or memory in tests.
pub trait EventSink {
    /// Stores the events of one command, in order, as one batch; the
    /// simulation goes on only once it returns.
    fn append(&mut self, events: &[Envelope]) -> Result<(), SinkError>;
}

/// Keeps the events in memory, for tests and for callers who write them later.
impl EventSink for Vec<Envelope> {
    fn append(&mut self, events: &[Envelope]) -> Result<(), SinkError> {
        self.extend_from_slice(events);
        Ok(())
    }
}

/// A sink could not store a batch; the simulation stops there.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SinkError(pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl SinkError {
    /// Wraps any error of the sink (an I/O error, a journal error, a message).
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(error.into())
    }
}

/// Why a simulation stopped before the end of its day.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The scenario is inconsistent.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The sink refused a batch.
    #[error("event sink: {0}")]
    Sink(#[from] SinkError),
    /// The domain found its own events inconsistent: a domain bug, to report
    /// with the seed and scenario that found it.
    #[error("domain bug on command {command_id}: {rejection}")]
    DomainBug {
        /// The command whose events broke a rule.
        command_id: String,
        /// The domain's report.
        rejection: Rejection,
    },
    /// Conversations stayed open with nothing left to make them progress.
    #[error("the simulation stalled at {at_ms} with {open} conversations still open (a queue nobody can serve?)")]
    Stalled {
        /// Virtual time when it gave up.
        at_ms: i64,
        /// Conversations not closed.
        open: u64,
    },
}

/// What a simulated day did, and the figures it gave.
#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    /// The seed of the random generator.
    pub seed: u64,
    /// Conversations created (as asked).
    pub conversations: u64,
    /// Commands executed.
    pub commands: u64,
    /// Commands the domain refused (expected: none, or a few races).
    pub rejected: u64,
    /// Refusals by kind of rejection.
    pub rejections: BTreeMap<String, u64>,
    /// Timers that found nothing to do (an accept after a withdrawal, a
    /// receipt after the close, ...) and sent no command.
    pub stale_timers: u64,
    /// Events written.
    pub events: u64,
    /// Batches appended to the sink (commands that caused events).
    pub batches: u64,
    /// Virtual time of the first command.
    pub started_at_ms: i64,
    /// Virtual time of the last command.
    pub ended_at_ms: i64,
    /// From the first command to the last.
    pub virtual_duration_ms: i64,
    /// The supervisors' figures of the day, from its events.
    pub figures: FiguresReport,
}

impl SimulationReport {
    /// The report as aligned lines, figures included.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<30}{}", "seed", self.seed);
        let _ = writeln!(out, "{:<30}{}", "conversations", self.conversations);
        let _ = writeln!(
            out,
            "{:<30}{} (from {} to {} ms)",
            "virtual time",
            clock(self.virtual_duration_ms),
            self.started_at_ms,
            self.ended_at_ms
        );
        let rejections: Vec<String> = self.rejections.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
        let _ = writeln!(
            out,
            "{:<30}{} (rejected {}{}; stale timers {})",
            "commands",
            self.commands,
            self.rejected,
            if rejections.is_empty() { String::new() } else { format!(": {}", rejections.join(", ")) },
            self.stale_timers
        );
        let _ = writeln!(out, "{:<30}{} in {} batches", "events written", self.events, self.batches);
        out.push_str(&self.figures.render_text());
        out
    }
}

/// Runs a simulated day: configures the domain from `scenario`, lets
/// `conversations` customers arrive, and runs until every one of them is
/// closed (all wrap-ups submitted); then logs every agent out.
pub fn run(
    scenario: &Scenario,
    seed: u64,
    conversations: u64,
    sink: &mut dyn EventSink,
) -> Result<SimulationReport, SimulateError> {
    scenario.validate()?;
    let mut sim = Sim::new(scenario, seed, conversations, sink);
    sim.configure()?;
    // A guard against a scenario that cannot finish: a year of virtual time.
    let give_up_at = scenario.start_ms.saturating_add(366 * 24 * 3_600_000);
    while !(sim.created == sim.target && sim.closed == sim.target) {
        let Some(timer) = sim.timers.pop() else {
            return Err(SimulateError::Stalled { at_ms: sim.now, open: sim.created - sim.closed });
        };
        if timer.at_ms > give_up_at {
            return Err(SimulateError::Stalled { at_ms: sim.now, open: sim.created - sim.closed });
        }
        sim.now = timer.at_ms;
        sim.perform(timer.action)?;
    }
    sim.log_everyone_out()?;
    Ok(sim.report(seed))
}

/// One thing to do at one virtual time.
#[derive(Debug)]
struct Timer {
    at_ms: i64,
    /// Insertion order: actions due at the same time run in the order they
    /// were scheduled, so ties never depend on the heap's internals.
    sequence: u64,
    action: Action,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.sequence) == (other.at_ms, other.sequence)
    }
}

impl Eq for Timer {}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timer {
    /// Reversed, so that the max-heap pops the earliest timer first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_ms, other.sequence).cmp(&(self.at_ms, self.sequence))
    }
}

/// Agents and conversations are named by their index in the simulator's
/// tables; offers by the domain's id.
#[derive(Debug)]
enum Action {
    Login { agent: usize },
    Arrival { stream: usize },
    Abandon { conversation: usize },
    Accept { agent: usize, offer_id: String },
    Expire { offer_id: String },
    Step { conversation: usize, epoch: u32, step: Step },
    Receipt { conversation: usize, message_id: String, read: bool },
    SubmitWrapUp { agent: usize, conversation: usize },
    AutoWrapUp { agent: usize, conversation: usize },
    BackFromRona { agent: usize },
    BreakStart { agent: usize },
    BreakEnd { agent: usize },
}

/// The next move in a conversation's script.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The owner's first message after accepting.
    Greet,
    CustomerWrites,
    AgentReplies,
    /// The owner ends, transfers or invites, as planned.
    Finish,
    /// The conference invitee's first message.
    InviteeSpeaks,
    /// The invitee leaves, or the owner ends the conference.
    ConferenceOutcome,
}

/// How the current owner will finish with the conversation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    End,
    TransferToQueue,
    TransferToAgent,
    Conference { invitee_leaves: bool },
}

/// What the simulator remembers of a conversation: its customer and the
/// script of its current owner.
#[derive(Debug)]
struct Script {
    id: String,
    stream: usize,
    channel: Channel,
    customer: Customer,
    subject: String,
    /// Bumped whenever the owner changes or the conversation ends, so that
    /// steps scheduled for an earlier owner find themselves stale.
    epoch: u32,
    owner: Option<usize>,
    invitee: Option<usize>,
    exchanges_left: u32,
    plan: Plan,
    customer_ends: bool,
    /// Transferred once already: not transferred again, so no ping-pong.
    transferred: bool,
    messages: u32,
    /// The customer's last email Message-ID, for the agent's In-Reply-To.
    last_customer_email: String,
    closed: bool,
}

/// Words for message texts; a few with non-ASCII letters, since compose
/// limits count characters, not bytes.
const WORDS: [&str; 32] = [
    "hello", "order", "delivery", "refund", "account", "thanks", "please", "tracking", "number", "invoice", "café",
    "password", "reset", "today", "tomorrow", "package", "address", "payment", "card", "help", "naïve", "question",
    "return", "size", "colour", "warranty", "store", "déjà", "vu", "soon", "🙂", "ok",
];

const FIRST_NAMES: [&str; 12] =
    ["Kim", "Lee", "Ana", "Omar", "Yuki", "Ines", "Tom", "Zoe", "Ravi", "Mia", "Jon", "Eva"];
const LAST_NAMES: [&str; 8] = ["Park", "Silva", "Haddad", "Sato", "Moreau", "Novak", "Okafor", "Berg"];
const SUBJECTS: [&str; 6] = [
    "Where is my order?",
    "Refund request",
    "Invoice question",
    "Cannot log in",
    "Change of address",
    "Warranty claim",
];
const SERVICE_ADDRESS: &str = "support@example.com";

/// Delivery and read receipts follow agent messages after these delays (ms).
const DELIVERY_DELAY_MS: (i64, i64) = (200, 3_000);
const READ_DELAY_MS: (i64, i64) = (2_000, 60_000);

struct Sim<'a> {
    scenario: &'a Scenario,
    sink: &'a mut dyn EventSink,
    state: DomainState,
    rng: ChaCha8Rng,
    timers: BinaryHeap<Timer>,
    timer_sequence: u64,
    now: i64,
    figures: Figures,
    agents: Vec<String>,
    agent_index: BTreeMap<String, usize>,
    scripts: Vec<Script>,
    script_index: BTreeMap<String, usize>,
    target: u64,
    created: u64,
    closed: u64,
    commands: u64,
    rejected: u64,
    rejections: BTreeMap<String, u64>,
    stale_timers: u64,
    events: u64,
    batches: u64,
}

/// The rejection's variant name, for counting refusals by kind.
fn rejection_kind(rejection: &Rejection) -> String {
    let debug = format!("{rejection:?}");
    debug.split(|c: char| !c.is_alphanumeric()).next().unwrap_or_default().to_owned()
}

/// A message text of exactly `chars` characters, made of words.
fn text(rng: &mut ChaCha8Rng, chars: usize) -> String {
    let mut out = String::with_capacity(chars + 8);
    let mut count = 0;
    while count < chars {
        if count > 0 {
            out.push(' ');
            count += 1;
        }
        for c in WORDS.choose(rng).expect("words").chars() {
            if count == chars {
                break;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

impl<'a> Sim<'a> {
    fn new(scenario: &'a Scenario, seed: u64, target: u64, sink: &'a mut dyn EventSink) -> Self {
        let agents: Vec<String> = scenario.agent_roster().into_iter().map(|(id, _, _)| id).collect();
        let agent_index = agents.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        Self {
            scenario,
            sink,
            state: DomainState::new(scenario.domain.clone()),
            rng: ChaCha8Rng::seed_from_u64(seed),
            timers: BinaryHeap::new(),
            timer_sequence: 0,
            now: scenario.start_ms,
            figures: Figures::new(scenario.service_level_threshold_ms),
            agents,
            agent_index,
            scripts: Vec::new(),
            script_index: BTreeMap::new(),
            target,
            created: 0,
            closed: 0,
            commands: 0,
            rejected: 0,
            rejections: BTreeMap::new(),
            stale_timers: 0,
            events: 0,
            batches: 0,
        }
    }

    fn schedule(&mut self, at_ms: i64, action: Action) {
        self.timer_sequence += 1;
        self.timers.push(Timer { at_ms: at_ms.max(self.now), sequence: self.timer_sequence, action });
    }

    fn schedule_after(&mut self, distribution: &Distribution, action: Action) {
        let delay = distribution.sample_ms(&mut self.rng);
        self.schedule(self.now.saturating_add(delay), action);
    }

    fn stale(&mut self) -> Result<bool, SimulateError> {
        self.stale_timers += 1;
        Ok(false)
    }

    /// Decides one command at the current virtual time; its events go to
    /// the sink, the figures and the simulated people. Returns whether the
    /// domain accepted it.
    fn execute(&mut self, body: C) -> Result<bool, SimulateError> {
        self.commands += 1;
        let command = Command {
            command_id: format!("sim-{}", self.commands),
            domain: self.scenario.domain.clone(),
            at_ms: self.now,
            command: Some(body),
        };
        match self.state.execute(&command) {
            Ok(events) => {
                if !events.is_empty() {
                    self.sink.append(&events)?;
                    self.batches += 1;
                    self.events += events.len() as u64;
                }
                for envelope in &events {
                    self.figures.observe(envelope);
                }
                for envelope in &events {
                    self.react(envelope);
                }
                Ok(true)
            }
            Err(Rejection::Internal(violation)) => Err(SimulateError::DomainBug {
                command_id: command.command_id,
                rejection: Rejection::Internal(violation),
            }),
            Err(rejection) => {
                self.rejected += 1;
                *self.rejections.entry(rejection_kind(&rejection)).or_default() += 1;
                Ok(false)
            }
        }
    }

    /// The configuration commands, then the timers that start the day.
    fn configure(&mut self) -> Result<(), SimulateError> {
        let scenario = self.scenario;
        for queue in &scenario.queues {
            self.configuration(C::ConfigureQueue(ConfigureQueue { queue: Some(queue.queue_config()) }))?;
        }
        let reasons = scenario.wrap_up_reasons.clone();
        self.configuration(C::ConfigureWrapUpReasons(ConfigureWrapUpReasons { reasons }))?;
        let reasons = scenario.idle_reasons.clone();
        self.configuration(C::ConfigureIdleReasons(ConfigureIdleReasons { reasons }))?;
        // First messages name this template (the agent writes the text).
        let greeting = MessageTemplate {
            template_id: "greeting".into(),
            name: "Greeting".into(),
            text: "Hello {{customer_name}}, this is {{agent_name}}.".into(),
            ..MessageTemplate::default()
        };
        self.configuration(C::ConfigureTemplates(ConfigureTemplates { templates: vec![greeting] }))?;
        for (agent_id, name, group) in scenario.agent_roster() {
            let capacities = group
                .capacities
                .iter()
                .map(|(channel, max)| ChannelCapacity { channel: channel.channel() as i32, max: *max })
                .collect();
            let profile = AgentProfile { agent_id, name, capacities, queue_ids: group.queues.clone() };
            self.configuration(C::ConfigureAgent(ConfigureAgent { profile: Some(profile) }))?;
        }
        for agent in 0..self.agents.len() {
            let spread = Distribution::Uniform { min: 0.0, max: scenario.login_spread_ms as f64 };
            self.schedule_after(&spread, Action::Login { agent });
        }
        if self.target > 0 {
            for stream in 0..scenario.arrivals.len() {
                self.schedule_next_arrival(stream);
            }
        }
        Ok(())
    }

    /// A configuration the domain refuses is a scenario the validation
    /// missed: stop rather than simulate a different day.
    fn configuration(&mut self, body: C) -> Result<(), SimulateError> {
        let what = format!("{body:?}");
        if self.execute(body)? {
            Ok(())
        } else {
            Err(ScenarioError::Invalid(format!("the domain refused the configuration {what}")).into())
        }
    }

    fn schedule_next_arrival(&mut self, stream: usize) {
        let mean = 3_600_000.0 / self.scenario.arrivals[stream].per_hour;
        self.schedule_after(&Distribution::Exponential { mean }, Action::Arrival { stream });
    }

    fn perform(&mut self, action: Action) -> Result<bool, SimulateError> {
        match action {
            Action::Login { agent } => {
                let every = self.scenario.breaks.every_ms.clone();
                self.schedule_after(&every, Action::BreakStart { agent });
                self.set_state(agent, AgentStatus::Available, String::new())
            }
            Action::Arrival { stream } => self.arrive(stream),
            Action::Abandon { conversation } => {
                let id = &self.scripts[conversation].id;
                let waiting = self.state.conversations.get(id).is_some_and(|c| {
                    c.first_accepted_at_ms.is_none() && matches!(c.place(), Place::Queued | Place::Offered)
                });
                if !waiting {
                    return self.stale();
                }
                let conversation_id = id.clone();
                self.execute(C::CustomerLeave(CustomerLeave { conversation_id }))
            }
            Action::Accept { agent, offer_id } => {
                let open = self.state.offers.get(&offer_id).is_some_and(|o| o.agent_id == self.agents[agent]);
                if !open {
                    return self.stale();
                }
                let agent_id = self.agents[agent].clone();
                self.execute(C::AcceptOffer(AcceptOffer { agent_id, offer_id }))
            }
            Action::Expire { offer_id } => {
                if !self.state.offers.contains_key(&offer_id) {
                    return self.stale(); // Accepted or withdrawn in time.
                }
                self.execute(C::ExpireOffer(ExpireOffer { offer_id }))
            }
            Action::Step { conversation, epoch, step } => {
                let script = &self.scripts[conversation];
                if script.epoch != epoch || script.closed {
                    return self.stale();
                }
                self.step(conversation, step)
            }
            Action::Receipt { conversation, message_id, read } => {
                let id = &self.scripts[conversation].id;
                let known =
                    self.state.conversations.get(id).is_some_and(|c| c.agent_messages.contains_key(&message_id));
                if !known {
                    return self.stale();
                }
                let conversation_id = id.clone();
                self.execute(C::RecordReceipt(RecordReceipt { conversation_id, message_id, read }))
            }
            Action::SubmitWrapUp { agent, conversation } => {
                if self.wrap_up_owed_since(agent, conversation).is_none() {
                    return self.stale(); // Submitted automatically first.
                }
                let reasons = self.wrap_up_reasons();
                let (agent_id, conversation_id) = (self.agents[agent].clone(), self.scripts[conversation].id.clone());
                self.execute(C::SubmitWrapUp(SubmitWrapUp { agent_id, conversation_id, reasons }))
            }
            Action::AutoWrapUp { agent, conversation } => {
                let Some(since_ms) = self.wrap_up_owed_since(agent, conversation) else {
                    return self.stale(); // Submitted by hand first.
                };
                let due =
                    self.auto_wrap_up_ms(agent, conversation).is_some_and(|after| self.now >= since_ms + after as i64);
                if !due {
                    return self.stale();
                }
                let (agent_id, conversation_id) = (self.agents[agent].clone(), self.scripts[conversation].id.clone());
                self.execute(C::AutoWrapUp(AutoWrapUp { agent_id, conversation_id }))
            }
            Action::BackFromRona { agent } => {
                if self.status(agent) != AgentStatus::Rona {
                    return self.stale(); // Already back, or gone on a break.
                }
                self.set_state(agent, AgentStatus::Available, String::new())
            }
            Action::BreakStart { agent } => {
                let breaks = &self.scenario.breaks;
                if self.status(agent) != AgentStatus::Available {
                    let every = breaks.every_ms.clone();
                    self.schedule_after(&every, Action::BreakStart { agent });
                    return self.stale();
                }
                let duration = breaks.duration_ms.clone();
                self.schedule_after(&duration, Action::BreakEnd { agent });
                let reason =
                    self.scenario.idle_reasons.choose(&mut self.rng).cloned().unwrap_or_else(|| "break".into());
                self.set_state(agent, AgentStatus::Idle, reason)
            }
            Action::BreakEnd { agent } => {
                let every = self.scenario.breaks.every_ms.clone();
                self.schedule_after(&every, Action::BreakStart { agent });
                if self.status(agent) != AgentStatus::Idle {
                    return self.stale();
                }
                self.set_state(agent, AgentStatus::Available, String::new())
            }
        }
    }

    fn status(&self, agent: usize) -> AgentStatus {
        self.state.agents.get(&self.agents[agent]).map_or(AgentStatus::LoggedOut, |a| a.status)
    }

    fn set_state(&mut self, agent: usize, status: AgentStatus, idle_reason: String) -> Result<bool, SimulateError> {
        let agent_id = self.agents[agent].clone();
        self.execute(C::SetAgentState(SetAgentState { agent_id, status: status as i32, idle_reason }))
    }

    fn wrap_up_owed_since(&self, agent: usize, conversation: usize) -> Option<i64> {
        let holding = self.state.agents.get(&self.agents[agent])?.holdings.get(&self.scripts[conversation].id)?;
        match holding.role {
            Role::WrapUp { since_ms, .. } => Some(since_ms),
            _ => None,
        }
    }

    /// The automatic wrap-up delay of the queue the agent handled the
    /// conversation for, if the agent owes a wrap-up and that queue has one.
    fn auto_wrap_up_ms(&self, agent: usize, conversation: usize) -> Option<u64> {
        let holding = self.state.agents.get(&self.agents[agent])?.holdings.get(&self.scripts[conversation].id)?;
        let Role::WrapUp { queue_id, .. } = &holding.role else {
            return None;
        };
        let after = self.state.queues.get(queue_id)?.config.auto_wrap_up_ms;
        (after > 0).then_some(after)
    }

    fn wrap_up_reasons(&mut self) -> Vec<String> {
        let reasons = &self.scenario.wrap_up_reasons;
        let count = if reasons.len() > 1 && self.rng.gen_bool(self.scenario.wrap_up.multiple_reasons_probability) {
            self.rng.gen_range(2..=reasons.len().min(3))
        } else {
            1
        };
        reasons.choose_multiple(&mut self.rng, count).cloned().collect()
    }

    fn arrive(&mut self, stream: usize) -> Result<bool, SimulateError> {
        if self.created >= self.target {
            return self.stale();
        }
        self.created += 1;
        if self.created < self.target {
            self.schedule_next_arrival(stream);
        }
        let arrival = &self.scenario.arrivals[stream];
        let n = self.created;
        let id = format!("c-{n:06}");
        let channel = arrival.channel.channel();
        let first = FIRST_NAMES.choose(&mut self.rng).expect("names");
        let last = LAST_NAMES.choose(&mut self.rng).expect("names");
        let name = format!("{first} {last}");
        let email = format!("{}.{}{n}@mail.example.net", first.to_lowercase(), last.to_lowercase());
        let number = format!("+1555{:07}", n % 10_000_000);
        let (customer, source) = match channel {
            Channel::Sms => (Customer { number, ..Default::default() }, "+15550100"),
            Channel::Whatsapp => (Customer { name, number, ..Default::default() }, "+15550101"),
            Channel::Messenger => {
                (Customer { name, handle: format!("psid-{n}"), ..Default::default() }, "Example Store page")
            }
            Channel::Email => (Customer { name, email, ..Default::default() }, SERVICE_ADDRESS),
            _ => (Customer { name, email, ..Default::default() }, "www.example.com"),
        };
        let subject = if channel == Channel::Email {
            SUBJECTS.choose(&mut self.rng).expect("subjects").to_string()
        } else {
            String::new()
        };
        let index = self.scripts.len();
        self.script_index.insert(id.clone(), index);
        self.scripts.push(Script {
            id: id.clone(),
            stream,
            channel,
            customer: customer.clone(),
            subject: subject.clone(),
            epoch: 0,
            owner: None,
            invitee: None,
            exchanges_left: 0,
            plan: Plan::End,
            customer_ends: false,
            transferred: false,
            messages: 0,
            last_customer_email: String::new(),
            closed: false,
        });
        let (message_id, external_id, text, email) = self.customer_words(index);
        let priority = arrival.priority;
        let queue_id = arrival.queue.clone();
        if self.rng.gen_bool(self.scenario.abandon.probability) {
            let patience = self.scenario.abandon.patience_ms.clone();
            self.schedule_after(&patience, Action::Abandon { conversation: index });
        }
        let accepted = self.execute(C::ReceiveCustomerMessage(ReceiveCustomerMessage {
            conversation_id: id,
            channel: channel as i32,
            queue_id,
            customer: Some(customer),
            source: source.into(),
            subject,
            priority,
            message_id,
            external_id,
            text,
            attachments: Vec::new(),
            email,
        }))?;
        if !accepted {
            // Never created: count it as done so the day can still end.
            self.scripts[index].closed = true;
            self.closed += 1;
        }
        Ok(accepted)
    }

    /// The next customer message of a conversation: ids, text, email headers.
    fn customer_words(&mut self, conversation: usize) -> (String, String, String, Option<EmailHeaders>) {
        let chars = self.scenario.conversation.customer_message_chars.sample(&mut self.rng).round();
        let text = text(&mut self.rng, chars.clamp(1.0, 4_000.0) as usize);
        let script = &mut self.scripts[conversation];
        script.messages += 1;
        let message_id = format!("{}-m{}", script.id, script.messages);
        let external_id = format!("{}-x{}", script.id, script.messages);
        let email = (script.channel == Channel::Email).then(|| {
            let header_id = format!("<{}-x{}@mail.example.net>", script.id, script.messages);
            let in_reply_to = std::mem::replace(&mut script.last_customer_email, header_id.clone());
            EmailHeaders {
                message_id: header_id,
                references: if in_reply_to.is_empty() { Vec::new() } else { vec![in_reply_to.clone()] },
                in_reply_to,
                from: script.customer.email.clone(),
                to: vec![SERVICE_ADDRESS.into()],
                cc: Vec::new(),
                subject: script.subject.clone(),
                mode: EmailMode::Unspecified as i32,
            }
        });
        (message_id, external_id, text, email)
    }

    fn customer_message(&mut self, conversation: usize) -> Result<bool, SimulateError> {
        let (message_id, external_id, text, email) = self.customer_words(conversation);
        let script = &self.scripts[conversation];
        self.execute(C::ReceiveCustomerMessage(ReceiveCustomerMessage {
            conversation_id: script.id.clone(),
            channel: script.channel as i32,
            queue_id: self.scenario.arrivals[script.stream].queue.clone(),
            customer: Some(script.customer.clone()),
            message_id,
            external_id,
            text,
            email,
            ..Default::default()
        }))
    }

    /// An agent's message, no longer than the channel allows.
    fn agent_message(&mut self, conversation: usize, agent: usize, greeting: bool) -> Result<bool, SimulateError> {
        let limit = channel::policy(self.scripts[conversation].channel).and_then(|p| p.compose_limit);
        let chars = self.scenario.conversation.agent_message_chars.sample(&mut self.rng).round() as usize;
        let text = text(&mut self.rng, chars.clamp(1, limit.unwrap_or(20_000)));
        let script = &mut self.scripts[conversation];
        script.messages += 1;
        let message_id = format!("{}-m{}", script.id, script.messages);
        let email = (script.channel == Channel::Email).then(|| EmailHeaders {
            message_id: format!("<{}-a{}@example.com>", script.id, script.messages),
            in_reply_to: script.last_customer_email.clone(),
            references: vec![script.last_customer_email.clone()],
            from: SERVICE_ADDRESS.into(),
            to: vec![script.customer.email.clone()],
            cc: Vec::new(),
            subject: format!("Re: {}", script.subject),
            mode: EmailMode::Reply as i32,
        });
        let conversation_id = script.id.clone();
        self.execute(C::SendAgentMessage(SendAgentMessage {
            agent_id: self.agents[agent].clone(),
            conversation_id,
            message_id,
            text,
            attachments: Vec::new(),
            template_id: if greeting { "greeting".into() } else { String::new() },
            email,
            template_parameters: Default::default(),
        }))
    }

    fn step(&mut self, conversation: usize, step: Step) -> Result<bool, SimulateError> {
        let script = &self.scripts[conversation];
        let (epoch, owner, invitee) = (script.epoch, script.owner, script.invitee);
        let Some(owner) = owner else {
            return self.stale();
        };
        let behaviour = &self.scenario.conversation;
        let at = |step| Action::Step { conversation, epoch, step };
        match step {
            Step::Greet | Step::AgentReplies => {
                let sent = self.agent_message(conversation, owner, matches!(step, Step::Greet))?;
                let script = &mut self.scripts[conversation];
                if matches!(step, Step::AgentReplies) {
                    script.exchanges_left = script.exchanges_left.saturating_sub(1);
                }
                let (next, wait) = if script.exchanges_left > 0 {
                    (Step::CustomerWrites, behaviour.customer_reply_ms.clone())
                } else if script.customer_ends {
                    (Step::Finish, behaviour.customer_reply_ms.clone())
                } else {
                    (Step::Finish, behaviour.agent_reply_ms.clone())
                };
                self.schedule_after(&wait, at(next));
                Ok(sent)
            }
            Step::CustomerWrites => {
                let wait = behaviour.agent_reply_ms.clone();
                self.schedule_after(&wait, at(Step::AgentReplies));
                self.customer_message(conversation)
            }
            Step::Finish => self.finish(conversation, owner),
            Step::InviteeSpeaks => {
                let Some(invitee) = invitee else { return self.stale() };
                let duration = self.scenario.conferences.duration_ms.clone();
                self.schedule_after(&duration, at(Step::ConferenceOutcome));
                self.agent_message(conversation, invitee, false)
            }
            Step::ConferenceOutcome => {
                let Some(invitee) = invitee else { return self.stale() };
                let conversation_id = self.scripts[conversation].id.clone();
                if self.scripts[conversation].plan == (Plan::Conference { invitee_leaves: true }) {
                    let agent_id = self.agents[invitee].clone();
                    let left = self.execute(C::LeaveConference(LeaveConference { agent_id, conversation_id }))?;
                    if left {
                        self.conference_over(conversation);
                    }
                    Ok(left)
                } else {
                    let agent_id = self.agents[owner].clone();
                    self.execute(C::EndConference(EndConference { agent_id, conversation_id }))
                }
            }
        }
    }

    /// The owner is done: end, transfer or invite, as the plan says.
    fn finish(&mut self, conversation: usize, owner: usize) -> Result<bool, SimulateError> {
        let script = &self.scripts[conversation];
        let (conversation_id, agent_id) = (script.id.clone(), self.agents[owner].clone());
        match script.plan {
            Plan::End => self.end(conversation, owner),
            Plan::TransferToQueue => self.transfer_to_queue(conversation, owner),
            Plan::TransferToAgent => {
                let Some(target) = self.pick_available_agent(conversation) else {
                    // Nobody on the target list is available: a queue then.
                    return self.transfer_to_queue(conversation, owner);
                };
                let target = transfer::Target::ToAgentId(self.agents[target].clone());
                self.transfer(conversation, Transfer { agent_id, conversation_id, target: Some(target) })
            }
            Plan::Conference { .. } => {
                let Some(invitee) = self.pick_available_agent(conversation) else {
                    return self.end(conversation, owner);
                };
                let invitee_agent_id = self.agents[invitee].clone();
                self.execute(C::RequestConference(RequestConference {
                    agent_id,
                    conversation_id,
                    invitee_agent_id,
                    ..Default::default()
                }))
            }
        }
    }

    fn end(&mut self, conversation: usize, owner: usize) -> Result<bool, SimulateError> {
        let conversation_id = self.scripts[conversation].id.clone();
        if self.scripts[conversation].customer_ends {
            self.execute(C::CustomerLeave(CustomerLeave { conversation_id }))
        } else {
            let agent_id = self.agents[owner].clone();
            self.execute(C::EndConversation(EndConversation { agent_id, conversation_id }))
        }
    }

    /// To another queue of the same channel when there is one, else back to
    /// the same queue (to be picked up by someone else).
    fn transfer_to_queue(&mut self, conversation: usize, owner: usize) -> Result<bool, SimulateError> {
        let script = &self.scripts[conversation];
        let current = self.state.conversations.get(&script.id).map(|c| c.queue_id.clone()).unwrap_or_default();
        let same_channel: Vec<&String> =
            self.state.queues.iter().filter(|(_, q)| q.channel() == script.channel).map(|(id, _)| id).collect();
        let others: Vec<&String> = same_channel.iter().copied().filter(|id| **id != current).collect();
        let target = others.choose(&mut self.rng).map_or(current.clone(), |id| (*id).clone());
        let transfer = Transfer {
            agent_id: self.agents[owner].clone(),
            conversation_id: script.id.clone(),
            target: Some(transfer::Target::ToQueueId(target)),
        };
        self.transfer(conversation, transfer)
    }

    fn transfer(&mut self, conversation: usize, transfer: Transfer) -> Result<bool, SimulateError> {
        let done = self.execute(C::Transfer(transfer))?;
        if done {
            let script = &mut self.scripts[conversation];
            script.transferred = true;
            script.owner = None;
            script.epoch += 1;
        }
        Ok(done)
    }

    /// Someone the target list shows as able to take the conversation now:
    /// Available, with room on the channel, not already in it.
    fn pick_available_agent(&mut self, conversation: usize) -> Option<usize> {
        let script = &self.scripts[conversation];
        let candidates: Vec<usize> = (0..self.agents.len())
            .filter(|&i| {
                self.state.agents.get(&self.agents[i]).is_some_and(|a| {
                    a.status == AgentStatus::Available
                        && a.load(script.channel) < a.capacity(script.channel)
                        && !a.holdings.contains_key(&script.id)
                })
            })
            .collect();
        candidates.choose(&mut self.rng).copied()
    }

    /// The invitee is gone (left, or never came): the owner goes on with
    /// one more exchange, then ends.
    fn conference_over(&mut self, conversation: usize) {
        let script = &mut self.scripts[conversation];
        script.invitee = None;
        script.plan = Plan::End;
        script.exchanges_left = 1;
        let epoch = script.epoch;
        let wait = self.scenario.conversation.customer_reply_ms.clone();
        self.schedule_after(&wait, Action::Step { conversation, epoch, step: Step::CustomerWrites });
    }

    /// How the new owner will finish: transfer (once per conversation),
    /// conference, or end, within what the channel allows.
    fn draw_plan(&mut self, conversation: usize) -> Plan {
        let script = &self.scripts[conversation];
        let policy = channel::policy(script.channel).expect("scenario channels are real");
        let (transfers, conferences) = (&self.scenario.transfers, &self.scenario.conferences);
        let draw: f64 = self.rng.gen();
        if !script.transferred && draw < transfers.probability {
            if policy.transfer_to_agent && self.rng.gen_bool(transfers.to_agent_share) {
                Plan::TransferToAgent
            } else {
                Plan::TransferToQueue
            }
        } else if policy.conference
            && draw >= transfers.probability
            && draw < transfers.probability + conferences.probability
        {
            Plan::Conference { invitee_leaves: self.rng.gen_bool(conferences.invitee_leaves_share) }
        } else {
            Plan::End
        }
    }

    /// The simulated people notice an event and schedule what they do next.
    fn react(&mut self, envelope: &Envelope) {
        let Some(event) = &envelope.event else { return };
        match event {
            Event::ConversationOffered(offer) => {
                let agent = self.agent_index[&offer.agent_id];
                self.schedule(offer.deadline_ms, Action::Expire { offer_id: offer.offer_id.clone() });
                let behaviour = &self.scenario.offers;
                let lapse = match offer.kind() {
                    OfferKind::Transfer => behaviour.transfer_lapse_probability,
                    OfferKind::Conference => behaviour.conference_lapse_probability,
                    _ => behaviour.lapse_probability,
                };
                if self.rng.gen_bool(lapse) {
                    return;
                }
                let think = behaviour.accept_after_ms.sample_ms(&mut self.rng);
                let at_ms = self.now.saturating_add(think);
                if at_ms < offer.deadline_ms {
                    self.schedule(at_ms, Action::Accept { agent, offer_id: offer.offer_id.clone() });
                }
            }
            Event::OfferAccepted(accepted) => {
                let conversation = self.script_index[&accepted.conversation_id];
                let agent = self.agent_index[&accepted.agent_id];
                if accepted.kind() == OfferKind::Conference {
                    self.scripts[conversation].invitee = Some(agent);
                    let epoch = self.scripts[conversation].epoch;
                    let wait = self.scenario.conversation.agent_reply_ms.clone();
                    self.schedule_after(&wait, Action::Step { conversation, epoch, step: Step::InviteeSpeaks });
                    return;
                }
                let arrival = &self.scenario.arrivals[self.scripts[conversation].stream];
                let (min, max) = self.scenario.exchanges(arrival);
                let first_reply =
                    arrival.first_reply_ms.clone().unwrap_or_else(|| self.scenario.conversation.first_reply_ms.clone());
                let exchanges = self.rng.gen_range(min..=max);
                let customer_ends = self.rng.gen_bool(self.scenario.conversation.customer_ends_probability);
                let plan = self.draw_plan(conversation);
                let script = &mut self.scripts[conversation];
                script.owner = Some(agent);
                script.invitee = None;
                script.epoch += 1;
                script.exchanges_left = exchanges;
                script.customer_ends = customer_ends;
                script.plan = plan;
                let epoch = script.epoch;
                self.schedule_after(&first_reply, Action::Step { conversation, epoch, step: Step::Greet });
            }
            Event::OfferTimedOut(timed_out) => {
                let agent = self.agent_index[&timed_out.agent_id];
                let recovery = self.scenario.offers.rona_recovery_ms.clone();
                self.schedule_after(&recovery, Action::BackFromRona { agent });
                if timed_out.kind() == OfferKind::Conference {
                    self.conference_over(self.script_index[&timed_out.conversation_id]);
                }
            }
            Event::OfferWithdrawn(withdrawn) => {
                let invitee_gone =
                    matches!(withdrawn.reason(), WithdrawReason::AgentWentIdle | WithdrawReason::AgentLoggedOut);
                if withdrawn.kind() == OfferKind::Conference && invitee_gone {
                    self.conference_over(self.script_index[&withdrawn.conversation_id]);
                }
            }
            Event::AgentMessageSent(sent) => {
                let conversation = self.script_index[&sent.conversation_id];
                let policy = channel::policy(self.scripts[conversation].channel).expect("real channel");
                if policy.delivery_receipts {
                    let delay = self.rng.gen_range(DELIVERY_DELAY_MS.0..=DELIVERY_DELAY_MS.1);
                    let message_id = sent.message_id.clone();
                    self.schedule(self.now + delay, Action::Receipt { conversation, message_id, read: false });
                }
                if policy.read_receipts {
                    let delay = self.rng.gen_range(READ_DELAY_MS.0..=READ_DELAY_MS.1);
                    let message_id = sent.message_id.clone();
                    self.schedule(self.now + delay, Action::Receipt { conversation, message_id, read: true });
                }
            }
            Event::WrapUpStarted(started) => {
                let conversation = self.script_index[&started.conversation_id];
                let agent = self.agent_index[&started.agent_id];
                let duration = self.scenario.wrap_up.duration_ms.clone();
                self.schedule_after(&duration, Action::SubmitWrapUp { agent, conversation });
                if let Some(after) = self.auto_wrap_up_ms(agent, conversation) {
                    self.schedule(self.now.saturating_add(after as i64), Action::AutoWrapUp { agent, conversation });
                }
                let script = &mut self.scripts[conversation];
                if script.invitee == Some(agent) {
                    script.invitee = None;
                }
            }
            Event::ConversationEnded(ended) => {
                let conversation = self.script_index[&ended.conversation_id];
                let script = &mut self.scripts[conversation];
                script.epoch += 1;
                script.owner = None;
                script.invitee = None;
                self.note_if_closed(conversation);
            }
            Event::WrapUpSubmitted(submitted) => {
                let conversation = self.script_index[&submitted.conversation_id];
                self.note_if_closed(conversation);
            }
            _ => {}
        }
    }

    fn note_if_closed(&mut self, conversation: usize) {
        let script = &mut self.scripts[conversation];
        if script.closed {
            return;
        }
        if self.state.conversations.get(&script.id).is_some_and(|c| c.place() == Place::Closed) {
            script.closed = true;
            self.closed += 1;
        }
    }

    /// The end of the day: everyone logs out, so a replay ends with nothing open.
    fn log_everyone_out(&mut self) -> Result<(), SimulateError> {
        for agent in 0..self.agents.len() {
            if self.status(agent) != AgentStatus::LoggedOut {
                self.set_state(agent, AgentStatus::LoggedOut, String::new())?;
            }
        }
        Ok(())
    }

    fn report(&self, seed: u64) -> SimulationReport {
        SimulationReport {
            seed,
            conversations: self.created,
            commands: self.commands,
            rejected: self.rejected,
            rejections: self.rejections.clone(),
            stale_timers: self.stale_timers,
            events: self.events,
            batches: self.batches,
            started_at_ms: self.scenario.start_ms,
            ended_at_ms: self.now,
            virtual_duration_ms: self.now - self.scenario.start_ms,
            figures: self.figures.report(),
        }
    }
}
