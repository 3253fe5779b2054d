//! Per-shard timers: offer deadlines and automatic wrap-ups.
//!
//! They run as a task on a thread of their own, not on the shard's arbiter:
//! actix drains an actor's whole mailbox before anything else on its thread
//! runs, so a busy shard would hold its own timers back. Timers that fall
//! due go to the shard's mailbox together, and each is decided there as an
//! ordinary command against the state of that moment, or dropped if it can
//! no longer change anything (its offer was accepted meanwhile).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::dev::SendError;
use actix::Recipient;
use switchboard_domain::state::Role;
use switchboard_domain::{Command, DomainState, Envelope};
use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::{AutoWrapUp, ExpireOffer};
use tokio::sync::Notify;

use crate::shard::Fire;

/// Something due at a time. Ordered by time first, so a set of them is the
/// timer queue, and arming the same thing twice keeps one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    /// When it is due, in milliseconds since the Unix epoch.
    pub deadline_ms: i64,
    /// The routing domain it belongs to.
    pub domain: String,
    /// What is due.
    pub what: Timer,
}

/// What a timer does when it fires.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// The offer times out (RONA) unless it was answered.
    ExpireOffer {
        /// The offer.
        offer_id: String,
    },
    /// The agent's wrap-up of the conversation is submitted automatically.
    AutoWrapUp {
        /// The agent.
        agent_id: String,
        /// The conversation being wrapped up.
        conversation_id: String,
        /// When the wrap-up began (a later wrap-up is another timer).
        since_ms: i64,
    },
}

impl Due {
    /// The command that carries the timer out. Its id is derived from what
    /// is due, so a timer armed twice (e.g. again after a restart) is
    /// recognised as the same command.
    pub fn command(&self, now_ms: i64) -> Command {
        let (command_id, command) = match &self.what {
            Timer::ExpireOffer { offer_id } => {
                (format!("timer/expire/{offer_id}"), C::ExpireOffer(ExpireOffer { offer_id: offer_id.clone() }))
            }
            Timer::AutoWrapUp { agent_id, conversation_id, since_ms } => (
                format!("timer/auto-wrap-up/{agent_id}/{conversation_id}/{since_ms}"),
                C::AutoWrapUp(AutoWrapUp { agent_id: agent_id.clone(), conversation_id: conversation_id.clone() }),
            ),
        };
        // Never before the deadline: the domain refuses an early expiry.
        Command { command_id, domain: self.domain.clone(), at_ms: now_ms.max(self.deadline_ms), command: Some(command) }
    }

    /// Whether carrying it out could still change `state`: its offer is still
    /// open, or its agent still owes the conversation's wrap-up. A timer that
    /// is not live decides to nothing (its offer was answered, its wrap-up
    /// submitted by hand), so whoever owns the state may drop it instead of
    /// submitting a command only to have it decided as a no-op.
    pub fn is_live(&self, state: &DomainState) -> bool {
        match &self.what {
            Timer::ExpireOffer { offer_id } => state.offers.contains_key(offer_id),
            Timer::AutoWrapUp { agent_id, conversation_id, .. } => state
                .agents
                .get(agent_id)
                .and_then(|agent| agent.holdings.get(conversation_id))
                .is_some_and(|holding| matches!(holding.role, Role::WrapUp { .. })),
        }
    }
}

/// The timers a command's events call for, read against the state after them.
pub fn timers_for(events: &[Arc<Envelope>], state: &DomainState) -> Vec<Due> {
    let mut due = Vec::new();
    for envelope in events {
        match &envelope.event {
            Some(Event::ConversationOffered(offer)) => due.push(Due {
                deadline_ms: offer.deadline_ms,
                domain: state.domain.clone(),
                what: Timer::ExpireOffer { offer_id: offer.offer_id.clone() },
            }),
            Some(Event::WrapUpStarted(w)) => due.extend(wrap_up_due(state, &w.agent_id, &w.conversation_id)),
            // A new auto wrap-up delay applies to the wrap-ups already pending.
            Some(Event::QueueConfigured(q)) => {
                let queue_id = q.queue.as_ref().map(|q| q.queue_id.as_str()).unwrap_or_default();
                due.extend(pending_wrap_ups(state).filter(|(_, queue)| *queue == queue_id).map(|(due, _)| due));
            }
            _ => {}
        }
    }
    due
}

/// Every timer the state calls for: each open offer's deadline and each
/// pending automatic wrap-up. Used at start-up, when nothing is armed.
pub fn timers_from_state(state: &DomainState) -> Vec<Due> {
    let offers = state.offers.iter().map(|(offer_id, offer)| Due {
        deadline_ms: offer.deadline_ms,
        domain: state.domain.clone(),
        what: Timer::ExpireOffer { offer_id: offer_id.clone() },
    });
    offers.chain(pending_wrap_ups(state).map(|(due, _)| due)).collect()
}

fn wrap_up_due(state: &DomainState, agent_id: &str, conversation_id: &str) -> Option<Due> {
    let role = &state.agents.get(agent_id)?.holdings.get(conversation_id)?.role;
    let Role::WrapUp { since_ms, queue_id } = role else { return None };
    auto_wrap_up(state, agent_id, conversation_id, *since_ms, queue_id)
}

/// Every pending wrap-up whose queue submits it automatically, with that queue.
fn pending_wrap_ups(state: &DomainState) -> impl Iterator<Item = (Due, &str)> + '_ {
    state.agents.iter().flat_map(move |(agent_id, agent)| {
        agent.holdings.iter().filter_map(move |(conversation_id, holding)| match &holding.role {
            Role::WrapUp { since_ms, queue_id } => {
                auto_wrap_up(state, agent_id, conversation_id, *since_ms, queue_id).map(|due| (due, queue_id.as_str()))
            }
            _ => None,
        })
    })
}

fn auto_wrap_up(
    state: &DomainState,
    agent_id: &str,
    conversation_id: &str,
    since_ms: i64,
    queue_id: &str,
) -> Option<Due> {
    let after = state.queues.get(queue_id)?.config.auto_wrap_up_ms;
    (after > 0).then(|| Due {
        deadline_ms: since_ms.saturating_add(i64::try_from(after).unwrap_or(i64::MAX)),
        domain: state.domain.clone(),
        what: Timer::AutoWrapUp {
            agent_id: agent_id.to_owned(),
            conversation_id: conversation_id.to_owned(),
            since_ms,
        },
    })
}

/// How late a timer may fire: the timers falling due within one step fire
/// together, so the timer thread wakes at most once a step however many
/// offers are out. Offer timeouts and wrap-up delays are seconds; at 2,000
/// offers a second, a wake-up (and a message to the shard) for each had the
/// timer thread and the shard woken ~4,000 more times a second.
pub(crate) const TIMER_STEP_MS: i64 = 10;

/// One shard's armed timers: armed by its writer once the events calling
/// for them are durable (and by its actor at start), fired by [`run_timers`].
#[derive(Default)]
pub(crate) struct Armed {
    queue: Mutex<BTreeSet<Due>>,
    /// Notified when a timer is armed earlier than every other, which may be
    /// before the firing task means to wake. Arming a later one (nearly
    /// always: an offer's deadline comes after those already out) wakes
    /// nobody.
    earlier: Notify,
}

impl Armed {
    /// Arms `dues`; arming one already armed keeps one.
    pub(crate) fn arm(&self, dues: impl IntoIterator<Item = Due>) {
        let mut queue = self.queue();
        let before = queue.first().map(|due| due.deadline_ms);
        queue.extend(dues);
        let after = queue.first().map(|due| due.deadline_ms);
        drop(queue);
        if after.is_some() && (before.is_none() || after < before) {
            self.earlier.notify_one();
        }
    }

    /// The earliest deadline armed.
    fn next_deadline(&self) -> Option<i64> {
        self.queue().first().map(|due| due.deadline_ms)
    }

    /// Takes every timer due by `now_ms`, earliest first.
    fn take_due(&self, now_ms: i64) -> Vec<Due> {
        let mut queue = self.queue();
        let mut due = Vec::new();
        while queue.first().is_some_and(|first| first.deadline_ms <= now_ms) {
            due.extend(queue.pop_first());
        }
        due
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, BTreeSet<Due>> {
        // A panic while holding the lock leaves the set itself whole.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// When to wake for a deadline: the end of its [`TIMER_STEP_MS`] step.
fn wake_at(deadline_ms: i64) -> i64 {
    deadline_ms.div_euclid(TIMER_STEP_MS).saturating_add(1).saturating_mul(TIMER_STEP_MS)
}

/// One shard's timer task: sleeps until the end of the step of the earliest
/// armed deadline (or until an earlier one is armed), then hands the shard
/// every timer due by then in one [`Fire`]. Ends when the shard stops or
/// when its arbiter does.
pub(crate) async fn run_timers(armed: Arc<Armed>, shard: Recipient<Fire>) {
    loop {
        let wait = armed.next_deadline().map(|deadline_ms| {
            Duration::from_millis(u64::try_from(wake_at(deadline_ms).saturating_sub(crate::now_ms())).unwrap_or(0))
        });
        tokio::select! {
            () = armed.earlier.notified() => continue,
            () = sleep(wait) => {}
        }
        let now_ms = crate::now_ms();
        let due = armed.take_due(now_ms);
        if due.is_empty() {
            continue;
        }
        match shard.try_send(Fire { due, now_ms }) {
            Ok(()) => {}
            // Queued behind the full mailbox; the next timers wait for room, as commands do.
            Err(SendError::Full(fire)) => {
                if shard.send(fire).await.is_err() {
                    return;
                }
            }
            Err(SendError::Closed(_)) => return, // The shard stopped.
        }
    }
}

/// Sleeps `wait`; with nothing to wait for, until cancelled.
async fn sleep(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_domain::testing::{agent, available, customer_message, webchat_queue};
    use switchboard_proto::v1::*;

    fn at(at_ms: i64, command_id: &str, command: C) -> Command {
        Command { command_id: command_id.into(), domain: "d".into(), at_ms, command: Some(command) }
    }

    /// A domain where agent a1 owns conversation c1 in queue sales.
    fn owned(auto_wrap_up_ms: u64) -> DomainState {
        let mut state = DomainState::new("d");
        state.execute(&at(1_000, "q", webchat_queue("sales", 30_000, auto_wrap_up_ms))).unwrap();
        state.execute(&at(1_000, "p", agent("a1", Channel::Webchat as i32, &["sales"]))).unwrap();
        state.execute(&at(1_000, "s", available("a1"))).unwrap();
        state.execute(&at(2_000, "m", customer_message("c1", "sales", "m1"))).unwrap();
        let offer_id = state.offers.keys().next().unwrap().clone();
        state.execute(&at(3_000, "a", C::AcceptOffer(AcceptOffer { agent_id: "a1".into(), offer_id }))).unwrap();
        state
    }

    /// Conversation c2 arrives in queue sales at `at_ms`: its events.
    fn second_arrives(state: &mut DomainState, at_ms: i64) -> Vec<Envelope> {
        state.execute(&at(at_ms, "m2", customer_message("c2", "sales", "m2"))).unwrap()
    }

    #[test]
    fn an_offer_arms_its_deadline_and_is_rearmed_from_state() {
        let mut state = owned(0);
        let events: Vec<_> = second_arrives(&mut state, 5_000).into_iter().map(Arc::new).collect();
        let armed = timers_for(&events, &state);
        assert_eq!(armed.len(), 1);
        assert_eq!(armed[0].deadline_ms, 35_000);
        assert!(matches!(&armed[0].what, Timer::ExpireOffer { .. }));
        assert_eq!(timers_from_state(&state), armed);
    }

    #[test]
    fn wrap_up_is_armed_only_for_queues_with_automatic_wrap_up() {
        for (auto, expected) in [(0, None), (10_000, Some(14_000))] {
            let mut state = owned(auto);
            let end = EndConversation { agent_id: "a1".into(), conversation_id: "c1".into() };
            let events = state.execute(&at(4_000, "e", C::EndConversation(end))).unwrap();
            let events: Vec<_> = events.into_iter().map(Arc::new).collect();
            let armed = timers_for(&events, &state);
            assert_eq!(armed.first().map(|d| d.deadline_ms), expected);
            assert_eq!(timers_from_state(&state), armed);
            if let Some(due) = armed.first() {
                // The command is not refused as early, and the domain carries it out.
                let command = due.command(due.deadline_ms - 5);
                assert_eq!(command.at_ms, due.deadline_ms);
                assert!(!state.execute(&command).unwrap().is_empty());
            }
        }
    }

    #[test]
    fn a_timer_is_live_exactly_while_carrying_it_out_would_change_the_state() {
        // given an offer's deadline and a pending automatic wrap-up, each armed
        let mut state = owned(10_000);
        let offered = second_arrives(&mut state, 4_000);
        let end = EndConversation { agent_id: "a1".into(), conversation_id: "c1".into() };
        let ended = state.execute(&at(4_000, "e", C::EndConversation(end))).unwrap();
        let armed: Vec<Arc<Envelope>> = offered.into_iter().chain(ended).map(Arc::new).collect();
        let armed = timers_for(&armed, &state);
        let [expire, wrap_up] = armed.as_slice() else { panic!("expected two timers, got {armed:?}") };
        assert!(matches!(expire.what, Timer::ExpireOffer { .. }) && matches!(wrap_up.what, Timer::AutoWrapUp { .. }));

        // then both are live while their offer is open and the wrap-up owed,
        // and carrying out a copy of each changes the state
        assert!(expire.is_live(&state) && wrap_up.is_live(&state));
        for due in [expire, wrap_up] {
            assert!(!state.clone().execute(&due.command(due.deadline_ms)).unwrap().is_empty());
        }

        // when the offer is accepted and the wrap-up submitted by hand
        let Timer::ExpireOffer { offer_id } = &expire.what else { unreachable!() };
        let accept = AcceptOffer { agent_id: "a1".into(), offer_id: offer_id.clone() };
        state.execute(&at(5_000, "a2", C::AcceptOffer(accept))).unwrap();
        let by_hand =
            SubmitWrapUp { agent_id: "a1".into(), conversation_id: "c1".into(), reasons: vec!["resolved".into()] };
        state.execute(&at(5_000, "w", C::SubmitWrapUp(by_hand))).unwrap();

        // then neither is live, and carrying either out would decide to nothing
        assert!(!expire.is_live(&state) && !wrap_up.is_live(&state));
        for due in [expire, wrap_up] {
            assert!(state.clone().execute(&due.command(due.deadline_ms)).unwrap().is_empty());
        }
    }

    #[test]
    fn reconfiguring_a_queue_rearms_its_pending_wrap_ups() {
        let mut state = owned(10_000);
        let end = EndConversation { agent_id: "a1".into(), conversation_id: "c1".into() };
        state.execute(&at(4_000, "e", C::EndConversation(end))).unwrap();
        let events = state.execute(&at(5_000, "q2", webchat_queue("sales", 30_000, 20_000))).unwrap();
        let events: Vec<_> = events.into_iter().map(Arc::new).collect();
        let armed = timers_for(&events, &state);
        assert_eq!(armed.iter().map(|d| d.deadline_ms).collect::<Vec<_>>(), vec![24_000]);
    }
    fn expiry(deadline_ms: i64, offer_id: &str) -> Due {
        Due { deadline_ms, domain: "d".into(), what: Timer::ExpireOffer { offer_id: offer_id.into() } }
    }

    fn offer_ids(due: &[Due]) -> Vec<&str> {
        due.iter()
            .map(|due| match &due.what {
                Timer::ExpireOffer { offer_id } => offer_id.as_str(),
                Timer::AutoWrapUp { .. } => "wrap-up",
            })
            .collect()
    }

    #[test]
    fn timers_are_taken_when_due_earliest_first_and_each_step_ends_after_its_deadlines() {
        let armed = Armed::default();
        armed.arm([expiry(30, "c"), expiry(10, "a"), expiry(20, "b"), expiry(10, "a")]);
        assert_eq!(armed.next_deadline(), Some(10));
        assert!(armed.take_due(9).is_empty());
        assert_eq!(offer_ids(&armed.take_due(20)), ["a", "b"]);
        assert_eq!(offer_ids(&armed.take_due(1_000)), ["c"]);
        assert_eq!(armed.next_deadline(), None);
        // every deadline of a step wakes at its end, after all of them
        assert_eq!(wake_at(0), TIMER_STEP_MS);
        assert_eq!(wake_at(TIMER_STEP_MS - 1), TIMER_STEP_MS);
        assert_eq!(wake_at(TIMER_STEP_MS), 2 * TIMER_STEP_MS);
    }

    #[actix_rt::test]
    async fn only_a_timer_armed_earlier_than_all_others_wakes_the_firing_task() {
        async fn woken(armed: &Armed) -> bool {
            tokio::time::timeout(Duration::from_millis(50), armed.earlier.notified()).await.is_ok()
        }
        let armed = Armed::default();
        armed.arm([expiry(1_000, "first")]);
        assert!(woken(&armed).await, "the first timer armed");
        armed.arm([expiry(2_000, "later")]);
        assert!(!woken(&armed).await, "a later timer");
        armed.arm([expiry(500, "earlier")]);
        assert!(woken(&armed).await, "an earlier timer");
    }

    /// Stands for the shard: hands on what it is told to fire.
    struct Collector(tokio::sync::mpsc::UnboundedSender<Fire>);

    impl actix::Actor for Collector {
        type Context = actix::Context<Self>;
    }

    impl actix::Handler<Fire> for Collector {
        type Result = ();
        fn handle(&mut self, fire: Fire, _: &mut actix::Context<Self>) {
            let _ = self.0.send(fire);
        }
    }

    #[actix_rt::test]
    async fn timers_due_in_one_step_fire_together_even_when_armed_while_the_task_sleeps_for_a_later_one() {
        use actix::Actor;
        let (sender, mut fired) = tokio::sync::mpsc::unbounded_channel();
        let shard = Collector(sender).start().recipient();
        let armed = Arc::new(Armed::default());
        let now = crate::now_ms();
        // given the task asleep until a timer a minute away
        armed.arm([expiry(now + 60_000, "late")]);
        actix_rt::spawn(run_timers(armed.clone(), shard));
        tokio::time::sleep(Duration::from_millis(20)).await;

        // when two timers are armed that fall due within one step, soon
        let step = (now + 200).div_euclid(TIMER_STEP_MS) * TIMER_STEP_MS;
        armed.arm([expiry(step + TIMER_STEP_MS - 1, "b"), expiry(step + 1, "a")]);

        // then they are fired together, not before they are due, and the late one stays armed
        let fire = tokio::time::timeout(Duration::from_secs(5), fired.recv()).await.expect("fired").unwrap();
        assert_eq!(offer_ids(&fire.due), ["a", "b"]);
        assert!(fire.now_ms >= step + TIMER_STEP_MS - 1, "fired at {} for {}", fire.now_ms, step + TIMER_STEP_MS - 1);
        assert_eq!(armed.next_deadline(), Some(now + 60_000));
    }
}
