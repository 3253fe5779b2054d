//! The shard actor: owns its routing domains' states and decides commands.
//!
//! It never waits for the disk. A decision's events are applied to the
//! state at once (so the next command is decided against them) and handed
//! to the shard's writer with a completion that replies; every answer,
//! rejections and repeats included, goes through the writer, so nobody hears
//! of a state the log does not hold yet.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{mpsc, Arc, OnceLock};

use actix::dev::SendError;
use actix::{Actor, Addr, Context, Handler, Message, MessageResult};
use switchboard_domain::{Command, DomainState, Envelope, Rejection, Violation};
use switchboard_journal::JournalError;
use switchboard_proto::v1::command::Command as C;
use tokio::sync::oneshot;

use crate::error::{Outage, SubmitError};
use crate::snapshot::{LoadedDomain, ToSnapshots};
use crate::timer::{timers_for, timers_from_state, Armed, Due};
use crate::writer::Job;

/// A routing domain as its owner (a shard, or a Kafka partition's worker)
/// holds it.
#[derive(Clone)]
pub struct DomainEntry {
    /// The domain's state.
    pub state: DomainState,
    /// Its most recent commands' events.
    pub recent: Recent,
    /// Set when `execute` reported an internal error: the state may no
    /// longer match the log, so the domain takes no commands until a
    /// restart rebuilds it.
    broken: Option<String>,
}

impl DomainEntry {
    /// An empty domain remembering up to `window` recent commands.
    pub fn new(domain: &str, window: usize) -> DomainEntry {
        DomainEntry { state: DomainState::new(domain), recent: Recent::new(window), broken: None }
    }

    /// Folds one event read back from the log into its domain in `domains`
    /// (made on the domain's first event), remembering its command for the
    /// idempotency window: how recovery, the snapshot thread's replica and
    /// a Kafka partition's rebuild follow the log alike.
    pub fn fold_logged(
        domains: &mut BTreeMap<String, DomainEntry>,
        envelope: Arc<Envelope>,
        window: usize,
    ) -> Result<(), Violation> {
        let entry =
            domains.entry(envelope.domain.clone()).or_insert_with(|| DomainEntry::new(&envelope.domain, window));
        entry.state.apply(&envelope)?;
        entry.recent.record(envelope);
        Ok(())
    }

    /// A domain as a snapshot kept it.
    pub(crate) fn restored(loaded: LoadedDomain, window: usize) -> DomainEntry {
        let mut recent = Recent::new(window);
        for (command_id, events) in loaded.recent {
            recent.insert(command_id, events.into_iter().map(Arc::new).collect());
        }
        DomainEntry { state: loaded.state, recent, broken: None }
    }
}

/// The events of a domain's most recent commands, by command id, so that a
/// retried command is answered with its original events instead of being
/// executed twice. Holds at most `limit` commands; the oldest goes first.
/// Rejected commands are not kept (a retry is decided again).
#[derive(Clone)]
pub struct Recent {
    limit: usize,
    order: VecDeque<String>,
    events: HashMap<String, Vec<Arc<Envelope>>>,
}

impl Recent {
    fn new(limit: usize) -> Recent {
        Recent { limit, order: VecDeque::new(), events: HashMap::new() }
    }

    /// The events of a remembered command.
    pub fn get(&self, command_id: &str) -> Option<&Vec<Arc<Envelope>>> {
        self.events.get(command_id)
    }

    /// Remembers a command's events, forgetting the oldest beyond the limit.
    pub fn insert(&mut self, command_id: String, events: Vec<Arc<Envelope>>) {
        if self.limit == 0 {
            return;
        }
        // An id seen again (a start-up configuration may reuse one) counts as
        // its latest use; rare, so the linear search does not matter.
        if self.events.insert(command_id.clone(), events).is_some() {
            self.order.retain(|id| *id != command_id);
        }
        self.order.push_back(command_id);
        if self.order.len() > self.limit {
            let oldest = self.order.pop_front().expect("over the limit, so not empty");
            self.events.remove(&oldest);
        }
    }

    /// The remembered commands and their events, oldest first: what a
    /// snapshot keeps.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Arc<Envelope>])> {
        self.order.iter().map(|id| (id.as_str(), self.events.get(id).map_or(&[][..], Vec::as_slice)))
    }

    /// Adds a recovered event: consecutive events of one command id are
    /// one command's events.
    pub fn record(&mut self, envelope: Arc<Envelope>) {
        match self.order.back() {
            Some(last) if *last == envelope.command_id => {
                self.events.get_mut(last).expect("ordered ids are kept").push(envelope);
            }
            _ => self.insert(envelope.command_id.clone(), vec![envelope]),
        }
    }
}

/// How a command is treated before it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A repeated command id is answered from [`Recent`].
    Normal,
    /// Start-up configuration: skipped if it would change nothing, and never
    /// answered from [`Recent`] (the same id may carry a changed setting).
    Configuration,
}

/// What an answer waits on: the writer's completion.
pub(crate) type Pending<T> = oneshot::Receiver<Result<T, SubmitError>>;

/// Decide a command; the answer goes to `reply` once its events are durable.
///
/// The answer has its own channel rather than being the message's result:
/// a result would wake the caller's thread once when the shard takes the
/// command and again when the answer is durable, and each wake of another
/// thread is a system call on both sides. Use [`Submit::hand_over`].
pub(crate) struct Submit {
    pub(crate) command: Command,
    pub(crate) mode: Mode,
    reply: oneshot::Sender<Result<Vec<Arc<Envelope>>, SubmitError>>,
}

impl Message for Submit {
    type Result = ();
}

impl Submit {
    /// Hands `command` to `shard` and returns where its answer will come.
    /// Waits only when the shard's mailbox is full; a stopped shard drops
    /// the command, and the answer's channel then reports it gone.
    pub(crate) async fn hand_over(
        shard: &Addr<ShardActor>,
        command: Command,
        mode: Mode,
    ) -> Pending<Vec<Arc<Envelope>>> {
        let (reply, pending) = oneshot::channel();
        if let Err(SendError::Full(submit)) = shard.try_send(Submit { command, mode, reply }) {
            // `send` queues it behind the full mailbox and waits until the
            // shard has handled it, which holds the caller back. On this
            // path alone a caller that goes away (a client disconnecting)
            // has its command skipped, as actix skips a request nobody
            // awaits; a command that `try_send` took is decided either way.
            let _ = shard.send(submit).await;
        }
        pending
    }
}

/// Carry out the timers that fell due `now_ms` (from
/// [`crate::timer::run_timers`]): each that is still live is decided as its
/// command; the others decide to nothing (their offer answered, their
/// wrap-up submitted: every accepted offer leaves one behind) and are
/// dropped undecided. Nobody waits for the outcome: the events are published
/// like any others, and a refusal is only logged.
pub(crate) struct Fire {
    pub(crate) due: Vec<Due>,
    pub(crate) now_ms: i64,
}

impl Message for Fire {
    type Result = ();
}

/// What a read takes from the chosen states, on the shard's thread, so
/// that a caller copies only what it needs, not whole states.
pub(crate) type View = Box<dyn FnOnce(Vec<(&String, &DomainState)>) -> Box<dyn Any + Send> + Send>;

/// Read the states (one domain, or all) through a view, as of everything durable.
pub(crate) struct States {
    pub(crate) domain: Option<String>,
    pub(crate) view: View,
}

impl Message for States {
    type Result = Pending<Box<dyn Any + Send>>;
}

/// Take a snapshot now (sent by the snapshot thread when this shard's
/// newest one lags the journal).
pub(crate) struct TakeSnapshot;

impl Message for TakeSnapshot {
    type Result = ();
}

/// Arm every timer the recovered state calls for; returns the commands for
/// those already due, for the engine to carry out before it is ready.
pub(crate) struct StartTimers {
    pub(crate) now_ms: i64,
}

impl Message for StartTimers {
    type Result = Vec<Command>;
}

/// Take a last snapshot, stop deciding, let the writer finish what was
/// decided, stop the actor.
pub(crate) struct Stop;

impl Message for Stop {
    type Result = ();
}

/// One shard: its domains, and the way to its writer and timers.
pub(crate) struct ShardActor {
    domains: BTreeMap<String, DomainEntry>,
    window: usize,
    /// `None` once stopping: dropping it lets the writer finish and exit.
    writer: Option<mpsc::Sender<Job>>,
    timers: Arc<Armed>,
    failed: Arc<OnceLock<JournalError>>,
    /// `None` when snapshots are disabled.
    snapshots: Option<Snapshots>,
}

/// A shard's side of the snapshots.
pub(crate) struct Snapshots {
    /// This shard's index.
    pub(crate) shard: usize,
    /// Events between snapshots (`EngineOptions::snapshot_every`, not 0).
    pub(crate) every: u64,
    /// To the snapshot thread.
    pub(crate) sender: mpsc::Sender<ToSnapshots>,
    /// Events decided since the last snapshot.
    pub(crate) since: u64,
}

impl ShardActor {
    pub(crate) fn new(
        domains: BTreeMap<String, DomainEntry>,
        window: usize,
        writer: mpsc::Sender<Job>,
        timers: Arc<Armed>,
        failed: Arc<OnceLock<JournalError>>,
        snapshots: Option<Snapshots>,
    ) -> ShardActor {
        ShardActor { domains, window, writer: Some(writer), timers, failed, snapshots }
    }

    /// Counts `events` just decided; takes a snapshot once there were enough.
    fn decided(&mut self, events: usize) {
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.since += events as u64;
            if snapshots.since >= snapshots.every {
                self.take_snapshot();
            }
        }
    }

    /// Queues a barrier behind what was decided so far: once all of that is
    /// durable, the writer tells the covered offset, and the snapshot
    /// thread writes its replica of this shard as of that offset (see
    /// [`crate::snapshot`]). Nothing is copied on this thread.
    fn take_snapshot(&mut self) {
        if self.available().is_err() {
            return;
        }
        let Some(snapshots) = &mut self.snapshots else { return };
        snapshots.since = 0;
        let (shard, sender) = (snapshots.shard, snapshots.sender.clone());
        self.write(Job {
            events: Vec::new(),
            timers: Vec::new(),
            done: Box::new(move |written| {
                // Not durable, no snapshot: a failed append already stopped the shard.
                if let Ok(covered) = written {
                    let _ = sender.send(ToSnapshots::Due { shard, covered, taken_at_ms: crate::now_ms() });
                }
            }),
        });
    }

    fn available(&self) -> Result<(), Outage> {
        match (self.failed.get(), &self.writer) {
            (Some(e), _) => Err(Outage::JournalFailed(e.clone())),
            (None, None) => Err(Outage::Stopped),
            (None, Some(_)) => Ok(()),
        }
    }

    /// Hands a job to the writer, or fails it at once if there is none.
    fn write(&self, job: Job) {
        let Some(writer) = &self.writer else {
            return (job.done)(Err(JournalError::CommitterStopped)); // Unreachable: callers check `available`.
        };
        if let Err(unsent) = writer.send(job) {
            // The writer is gone (it panicked): nothing decided from now on could be made durable.
            let _ = self.failed.set(JournalError::CommitterStopped);
            (unsent.0.done)(Err(JournalError::CommitterStopped));
        }
    }

    /// Decides `command` and hands its events to the writer; `answer` gets
    /// the outcome once they are durable (or why they cannot be).
    fn carry_out(
        &mut self,
        command: Command,
        mode: Mode,
        answer: impl FnOnce(Result<Vec<Arc<Envelope>>, SubmitError>) + Send + 'static,
    ) {
        match self.decide(command, mode) {
            Err(outage) => answer(Err(SubmitError::Unavailable(outage))),
            Ok(Decision { events, timers, answer: outcome }) => {
                let count = events.len();
                self.write(Job {
                    events,
                    timers,
                    done: Box::new(move |written| {
                        answer(match written {
                            Err(e) => Err(SubmitError::Unavailable(Outage::JournalFailed(e))),
                            Ok(_) => outcome.map_err(SubmitError::Rejected),
                        });
                    }),
                });
                // After the job: the snapshot's barrier must follow the events it holds.
                self.decided(count);
            }
        }
    }

    /// Decides `command`: returns the events to write (already applied), the
    /// timers they call for, and the answer to give once they are durable.
    fn decide(&mut self, command: Command, mode: Mode) -> Result<Decision, Outage> {
        self.available()?;
        if command.domain.is_empty() {
            return Ok(Decision::answer(Err(Rejection::Invalid("domain is required".into()))));
        }
        let is_new = !self.domains.contains_key(&command.domain);
        let entry = self
            .domains
            .entry(command.domain.clone())
            .or_insert_with(|| DomainEntry::new(&command.domain, self.window));
        let domain = command.domain.clone();
        let decision = entry.decide(command, mode, crate::now_ms())?;
        // A domain exists once it has an event, as in a replay of the log.
        if is_new && decision.events.is_empty() {
            self.domains.remove(&domain);
        }
        Ok(decision)
    }
}

impl DomainEntry {
    /// Decides `command` against this domain: the events to write (already
    /// applied), the timers they call for, and the answer to give once they
    /// are durable. `now_ms` stamps a command without a time. Shared by the
    /// embedded engine's shards and the Kafka worker, so both decide alike.
    pub fn decide(&mut self, mut command: Command, mode: Mode, now_ms: i64) -> Result<Decision, Outage> {
        if let Some(reason) = &self.broken {
            return Err(Outage::DomainBroken { domain: command.domain, reason: reason.clone() });
        }
        let decision = match mode {
            Mode::Normal if self.recent.get(&command.command_id).is_some() => {
                Decision::answer(Ok(self.recent.get(&command.command_id).cloned().unwrap_or_default()))
            }
            Mode::Configuration if changes_nothing(&self.state, &command) => Decision::answer(Ok(Vec::new())),
            _ => {
                if command.at_ms == 0 {
                    command.at_ms = now_ms;
                }
                // The engine's time never goes back: a late clock or caller
                // is taken to mean "now", after the last event.
                command.at_ms = command.at_ms.max(self.state.last_at_ms);
                match self.state.execute(&command) {
                    Ok(events) => {
                        let events: Vec<Arc<Envelope>> = events.into_iter().map(Arc::new).collect();
                        let timers = timers_for(&events, &self.state);
                        self.recent.insert(command.command_id, events.clone());
                        Decision { events: events.clone(), timers, answer: Ok(events) }
                    }
                    Err(Rejection::Internal(violation)) => {
                        tracing::error!(domain = %command.domain, %violation, "internal error: domain out of service");
                        self.broken = Some(violation.to_string());
                        Decision::answer(Err(Rejection::Internal(violation)))
                    }
                    Err(rejection) => Decision::answer(Err(rejection)),
                }
            }
        };
        Ok(decision)
    }
}

/// What deciding one command did: see [`DomainEntry::decide`].
pub struct Decision {
    /// The events to write, already applied to the state.
    pub events: Vec<Arc<Envelope>>,
    /// The timers those events call for.
    pub timers: Vec<Due>,
    /// The answer to give once the events are durable: the command's events
    /// (the original ones for a repeated command), or why it was refused.
    pub answer: Result<Vec<Arc<Envelope>>, Rejection>,
}

impl Decision {
    fn answer(answer: Result<Vec<Arc<Envelope>>, Rejection>) -> Decision {
        Decision { events: Vec::new(), timers: Vec::new(), answer }
    }
}

/// Whether a configuration command would leave the state as it is, so that
/// a restart given the same configuration appends nothing.
pub fn changes_nothing(state: &DomainState, command: &Command) -> bool {
    match &command.command {
        Some(C::ConfigureQueue(c)) => {
            c.queue.as_ref().is_some_and(|q| state.queues.get(&q.queue_id).is_some_and(|queue| queue.config == *q))
        }
        Some(C::ConfigureAgent(c)) => c.profile.as_ref().is_some_and(|p| {
            state.agents.get(&p.agent_id).is_some_and(|agent| {
                agent.name == p.name
                    && agent.capacities == p.capacities.iter().map(|c| (c.channel, c.max)).collect()
                    && agent.queues == p.queue_ids.iter().cloned().collect()
            })
        }),
        Some(C::ConfigureWrapUpReasons(c)) => state.wrap_up_reasons == c.reasons,
        Some(C::ConfigureIdleReasons(c)) => state.idle_reasons == c.reasons,
        Some(C::ConfigureRetention(c)) => state.closed_retention_ms == c.closed_conversation_ms,
        Some(C::ConfigureTemplates(c)) => same_by_id(&state.templates, &c.templates, |t| &t.template_id),
        Some(C::ConfigureWorkflows(c)) => same_by_id(&state.workflows, &c.workflows, |w| &w.workflow_id),
        _ => false,
    }
}

/// Whether `given` lists exactly what `kept` holds. The state keeps such
/// lists by id, not in the order given, so they are compared as such.
fn same_by_id<T: PartialEq>(kept: &BTreeMap<String, T>, given: &[T], id: impl Fn(&T) -> &String) -> bool {
    kept.len() == given.len() && given.iter().all(|item| kept.get(id(item)) == Some(item))
}

/// Whether a command is configuration (may be given at every start).
pub fn is_configuration(command: &Command) -> bool {
    matches!(
        command.command,
        Some(
            C::ConfigureQueue(_)
                | C::ConfigureAgent(_)
                | C::ConfigureWrapUpReasons(_)
                | C::ConfigureIdleReasons(_)
                | C::ConfigureRetention(_)
                | C::ConfigureTemplates(_)
                | C::ConfigureWorkflows(_)
        )
    )
}

impl Actor for ShardActor {
    type Context = Context<Self>;
}

impl Handler<Submit> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        let reply = msg.reply;
        self.carry_out(msg.command, msg.mode, move |result| {
            let _ = reply.send(result);
        });
    }
}

impl Handler<Fire> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: Fire, _: &mut Context<Self>) -> Self::Result {
        for due in msg.due {
            if self.domains.get(&due.domain).is_some_and(|entry| !due.is_live(&entry.state)) {
                continue;
            }
            let command = due.command(msg.now_ms);
            self.carry_out(command, Mode::Normal, move |result| {
                if let Err(e) = result {
                    tracing::debug!(?due, error = %e, "timer command produced nothing");
                }
            });
        }
    }
}

impl Handler<States> for ShardActor {
    type Result = MessageResult<States>;

    fn handle(&mut self, msg: States, _: &mut Context<Self>) -> Self::Result {
        let (reply, pending) = oneshot::channel();
        let chosen: Vec<(&String, &DomainEntry)> = match &msg.domain {
            Some(domain) => self.domains.get_key_value(domain).into_iter().collect(),
            None => self.domains.iter().collect(),
        };
        let broken = chosen.iter().find_map(|(domain, entry)| Some((domain, entry.broken.as_ref()?)));
        let snapshot = match (self.available(), broken) {
            (Err(outage), _) => Err(outage),
            (Ok(()), Some((domain, reason))) => {
                Err(Outage::DomainBroken { domain: domain.to_string(), reason: reason.clone() })
            }
            (Ok(()), None) => Ok((msg.view)(chosen.into_iter().map(|(d, entry)| (d, &entry.state)).collect())),
        };
        match snapshot {
            Err(outage) => {
                let _ = reply.send(Err(SubmitError::Unavailable(outage)));
            }
            // The states include events still being written: answer once they are durable.
            Ok(states) => self.write(Job {
                events: Vec::new(),
                timers: Vec::new(),
                done: Box::new(move |written| {
                    let _ = reply
                        .send(written.map(|_| states).map_err(|e| SubmitError::Unavailable(Outage::JournalFailed(e))));
                }),
            }),
        }
        MessageResult(pending)
    }
}

impl Handler<StartTimers> for ShardActor {
    type Result = Vec<Command>;

    fn handle(&mut self, msg: StartTimers, _: &mut Context<Self>) -> Vec<Command> {
        let mut overdue = Vec::new();
        let mut later = Vec::new();
        for entry in self.domains.values().filter(|entry| entry.broken.is_none()) {
            for due in timers_from_state(&entry.state) {
                if due.deadline_ms <= msg.now_ms {
                    overdue.push(due.command(msg.now_ms));
                } else {
                    later.push(due);
                }
            }
        }
        self.timers.arm(later);
        overdue
    }
}

impl Handler<TakeSnapshot> for ShardActor {
    type Result = ();

    fn handle(&mut self, _: TakeSnapshot, _: &mut Context<Self>) {
        self.take_snapshot();
    }
}

impl Handler<Stop> for ShardActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        // Covers everything this shard decided: the next start reads almost nothing of the journal.
        self.take_snapshot();
        self.writer = None;
        actix::ActorContext::stop(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(sequence: u64, command_id: &str) -> Arc<Envelope> {
        Arc::new(Envelope { domain: "d".into(), sequence, command_id: command_id.into(), ..Default::default() })
    }

    #[test]
    fn recent_commands_are_bounded_and_the_oldest_goes_first() {
        let mut recent = Recent::new(2);
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            recent.insert(id.into(), vec![envelope(i as u64 + 1, id)]);
        }
        assert!(recent.get("a").is_none());
        assert_eq!(recent.get("b").unwrap()[0].sequence, 2);
        assert_eq!(recent.get("c").unwrap()[0].sequence, 3);
    }

    #[test]
    fn recovered_events_of_one_command_are_kept_together() {
        let mut recent = Recent::new(8);
        for (sequence, id) in [(1, "a"), (2, "a"), (3, "b"), (4, "a")] {
            recent.record(envelope(sequence, id));
        }
        // "a" again after "b" is a later command with the same id: the later one is kept.
        assert_eq!(recent.get("a").unwrap().iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![4]);
        assert_eq!(recent.get("b").unwrap().len(), 1);
    }

    #[test]
    fn templates_given_again_in_another_order_change_nothing() {
        use switchboard_proto::v1::{ConfigureTemplates, MessageTemplate};
        let template = |id: &str| MessageTemplate { template_id: id.into(), text: "Hi".into(), ..Default::default() };
        let command = Command {
            command_id: "config/acme/templates".into(),
            domain: "acme".into(),
            at_ms: 1,
            command: Some(C::ConfigureTemplates(ConfigureTemplates { templates: vec![template("b"), template("a")] })),
        };
        let mut state = DomainState::new("acme");
        state.execute(&command).unwrap();
        assert!(changes_nothing(&state, &command), "a restart with the same file must append nothing");
        let fewer = Command {
            command: Some(C::ConfigureTemplates(ConfigureTemplates { templates: vec![template("a")] })),
            ..command.clone()
        };
        assert!(!changes_nothing(&state, &fewer));
    }

    #[test]
    fn workflows_given_again_in_another_order_change_nothing() {
        use switchboard_proto::v1::{ConfigureWorkflows, Workflow};
        let workflow = |id: &str| Workflow { workflow_id: id.into(), ..Default::default() };
        let command = Command {
            command_id: "config/acme/workflows".into(),
            domain: "acme".into(),
            at_ms: 1,
            command: Some(C::ConfigureWorkflows(ConfigureWorkflows { workflows: vec![workflow("b"), workflow("a")] })),
        };
        let mut state = DomainState::new("acme");
        state.execute(&command).unwrap();
        assert!(changes_nothing(&state, &command), "a restart with the same file must append nothing");
        let renamed = Workflow { name: "B".into(), ..workflow("b") };
        let changed = Command {
            command: Some(C::ConfigureWorkflows(ConfigureWorkflows { workflows: vec![renamed, workflow("a")] })),
            ..command.clone()
        };
        assert!(!changes_nothing(&state, &changed));
    }
}
