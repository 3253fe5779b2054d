//! What agent sessions are pushed: the engine broadcasts each event once it
//! is durable, and the feed's keeper (one task) keeps it in its domain's
//! ring and hands it to exactly the sessions it concerns.
//!
//! The ring lets a session that comes back with `?after=<sequence>` first
//! get what it missed, then live events, with nothing lost or repeated in
//! between: a session registers under the same lock the keeper holds while
//! it keeps and hands out an event. The sessions are indexed by agent and by
//! the conversations they follow, so an event costs the sessions it reaches,
//! not every session connected.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use switchboard_live::Published;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::{Customer, Envelope};
use tokio::sync::{broadcast, mpsc};

use crate::describe::touched;

/// How many recent events of each domain a reconnecting session can resume from.
const RING_EVENTS: usize = 100_000;

/// How many pushes may wait for one session before it is told to resume
/// instead: a session that stops reading must not hold the others up or
/// grow without bound.
const SESSION_OUTBOX: usize = 4096;

/// The recent durable events of every domain, what an offer popover shows
/// about each open conversation, and the connected agent sessions.
pub struct Feed {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rings: HashMap<String, VecDeque<Arc<Envelope>>>,
    arrivals: HashMap<(String, String), Arrival>,
    sessions: HashMap<String, Sessions>,
    next_session: u64,
    /// How many times the keeper fell behind and forgot what it held: a
    /// reader of the state can tell whether events it may not have seen
    /// were lost meanwhile.
    lags: u64,
}

/// How a conversation arrived: what SPEC.md's offer popover shows, by channel
/// (customer name, email or number, source page or number, and the timer,
/// which counts from the arrival, not from the offer).
#[derive(Clone, serde::Serialize)]
pub(super) struct Arrival {
    pub channel: &'static str,
    pub customer: Customer,
    pub source: String,
    pub subject: String,
    pub arrived_at_ms: i64,
}

impl Arrival {
    /// How `conversation` arrived, from the domain's state.
    pub fn of(conversation: &switchboard_domain::state::Conversation) -> Arrival {
        Arrival {
            channel: switchboard_domain::channel::name(conversation.channel),
            customer: conversation.customer.clone(),
            source: conversation.source.clone(),
            subject: conversation.subject.clone(),
            arrived_at_ms: conversation.arrived_at_ms,
        }
    }
}

/// A resume from before what the ring keeps.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("events after {0} are no longer kept: reload the agent's state (GET /v1/agents/me) and reconnect with ?after= its sequence")]
pub(super) struct NotKept(pub u64);

/// One agent session's place in the feed. Dropping it leaves the feed.
pub(super) struct Subscription {
    feed: Arc<Feed>,
    tenant: String,
    id: u64,
    /// The sequence the session starts after: what it saw (`?after=`), or
    /// else the domain's sequence its state was read at.
    pub start: u64,
    /// The concerning events after `start` that the feed had already kept,
    /// to push before `live`.
    pub backlog: Vec<Arc<Envelope>>,
    /// The concerning events from the moment of subscribing on. It ends
    /// when the session fell [`SESSION_OUTBOX`] pushes behind.
    pub live: mpsc::Receiver<Arc<Envelope>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feed.lock().leave(&self.tenant, self.id);
    }
}

impl Feed {
    /// A feed that keeps up with `events` on a task of its own.
    pub fn start(mut events: broadcast::Receiver<Published>) -> Arc<Feed> {
        let feed = Arc::new(Feed { inner: Mutex::new(Inner::default()) });
        let keeper = feed.clone();
        actix_web::rt::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(published) => keeper.keep(&published),
                    // Events were missed: no ring or session may claim to be
                    // complete, so sessions are told to resume, and a resume
                    // from before the gap is refused.
                    Err(broadcast::error::RecvError::Lagged(_)) => keeper.lock().forget_all(),
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        feed
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("feed lock")
    }

    /// Keeps the events of one durable append and pushes each to the
    /// sessions it concerns.
    fn keep(&self, published: &[Arc<Envelope>]) {
        let mut inner = self.lock();
        for envelope in published {
            inner.keep(envelope.clone());
        }
    }

    /// Subscribes a session of `agent_id` in `tenant`, which follows the
    /// `held` conversations as of the domain's `current_sequence`. The
    /// session gets every concerning event after `after` (what it saw), or
    /// else after `current_sequence`, once: the feed's keeper may be behind
    /// or ahead of the state the caller read, so events up to the start are
    /// never pushed and those after it come from the ring or live.
    /// `current_sequence` also tells an empty ring (nothing since this
    /// process started) from a gap.
    pub(super) fn subscribe(
        self: &Arc<Self>,
        tenant: &str,
        agent_id: &str,
        held: impl IntoIterator<Item = String>,
        after: Option<u64>,
        current_sequence: u64,
    ) -> Result<Subscription, NotKept> {
        let mut inner = self.lock();
        let mut interest = Interest { agent_id: agent_id.to_owned(), conversations: held.into_iter().collect() };
        let start = after.unwrap_or(current_sequence);
        let kept = match after {
            Some(after) => inner.since(tenant, after, current_sequence).ok_or(NotKept(after))?,
            // A new session was promised nothing from before its state.
            None => inner.since(tenant, start, current_sequence).unwrap_or_default(),
        };
        let backlog = kept
            .into_iter()
            .filter(|e| e.event.as_ref().is_some_and(|event| interest.concerns(event, &touched(event))))
            .collect();
        let (outbox, live) = mpsc::channel(SESSION_OUTBOX);
        let id = inner.next_session;
        inner.next_session += 1;
        inner.sessions.entry(tenant.to_owned()).or_default().join(id, Session { interest, outbox, start });
        Ok(Subscription { feed: self.clone(), tenant: tenant.to_owned(), id, start, backlog, live })
    }

    /// How the conversation of an offer arrived, if it arrived since this
    /// process started and is still open.
    pub(super) fn arrival(&self, domain: &str, conversation_id: &str) -> Option<Arrival> {
        self.lock().arrivals.get(&(domain.to_owned(), conversation_id.to_owned())).cloned()
    }

    /// How many times the keeper has fallen behind so far; see
    /// [`remember_arrival`](Self::remember_arrival).
    pub(super) fn lags(&self) -> u64 {
        self.lock().lags
    }

    /// Keeps how a conversation that arrived before this process started
    /// arrived, as read from a state in which it was open at `as_of`, unless
    /// the feed already has it or has kept its end since: an ending the
    /// keeper passed before this call would otherwise leave the arrival kept
    /// for good. `lags` is [`lags`](Self::lags) from before the state was
    /// read: if the keeper fell behind since, the end may be among what it
    /// missed.
    pub(super) fn remember_arrival(
        &self,
        domain: &str,
        conversation_id: &str,
        arrival: Arrival,
        as_of: u64,
        lags: u64,
    ) {
        let mut inner = self.lock();
        if inner.lags != lags {
            return;
        }
        // The events kept after `as_of` (none if the keeper is behind it);
        // `None` if some are let go: the end may be among them.
        let Some(after) = inner.since(domain, as_of, as_of) else {
            return;
        };
        let ended = after
            .iter()
            .any(|e| matches!(&e.event, Some(Event::ConversationEnded(end)) if end.conversation_id == conversation_id));
        if ended {
            return;
        }
        inner.arrivals.entry((domain.to_owned(), conversation_id.to_owned())).or_insert(arrival);
    }
}

impl Inner {
    fn keep(&mut self, envelope: Arc<Envelope>) {
        match &envelope.event {
            Some(Event::ConversationCreated(created)) => {
                let arrival = Arrival {
                    channel: switchboard_domain::channel::name(created.channel()),
                    customer: created.customer.clone().unwrap_or_default(),
                    source: created.source.clone(),
                    subject: created.subject.clone(),
                    arrived_at_ms: envelope.at_ms,
                };
                self.arrivals.insert((envelope.domain.clone(), created.conversation_id.clone()), arrival);
            }
            Some(Event::ConversationEnded(ended)) => {
                self.arrivals.remove(&(envelope.domain.clone(), ended.conversation_id.clone()));
            }
            _ => {}
        }
        if let Some(sessions) = self.sessions.get_mut(&envelope.domain) {
            sessions.push(&envelope);
        }
        let ring = self.rings.entry(envelope.domain.clone()).or_default();
        if ring.len() == RING_EVENTS {
            ring.pop_front();
        }
        ring.push_back(envelope);
    }

    /// The kept events of `domain` after `sequence`, or `None` if some of
    /// them are not kept (fell out of the ring, came before this process
    /// started, or were missed).
    fn since(&self, domain: &str, sequence: u64, current_sequence: u64) -> Option<Vec<Arc<Envelope>>> {
        let ring = self.rings.get(domain).filter(|ring| !ring.is_empty());
        let Some(ring) = ring else {
            return (sequence >= current_sequence).then(Vec::new);
        };
        let first_kept = ring.front().map_or(0, |e| e.sequence);
        if first_kept > sequence + 1 {
            return None;
        }
        Some(ring.iter().filter(|e| e.sequence > sequence).cloned().collect())
    }

    fn leave(&mut self, tenant: &str, id: u64) {
        if let Some(sessions) = self.sessions.get_mut(tenant) {
            sessions.leave(id);
            if sessions.by_id.is_empty() {
                self.sessions.remove(tenant);
            }
        }
    }

    fn forget_all(&mut self) {
        self.lags += 1;
        self.rings.clear();
        // Some endings were missed too; offers look arrivals up again.
        self.arrivals.clear();
        for sessions in self.sessions.values_mut() {
            let ids: Vec<u64> = sessions.by_id.keys().copied().collect();
            metrics::counter!("switchboard_agent_sessions_behind_total").increment(ids.len() as u64);
            for id in ids {
                sessions.leave(id);
            }
        }
        self.sessions.clear();
    }
}

/// The connected sessions of one tenant, indexed by what can concern them.
#[derive(Default)]
struct Sessions {
    by_id: HashMap<u64, Session>,
    by_agent: HashMap<String, Vec<u64>>,
    by_conversation: HashMap<String, Vec<u64>>,
}

struct Session {
    interest: Interest,
    outbox: mpsc::Sender<Arc<Envelope>>,
    /// Events up to this sequence are already in the session's state.
    start: u64,
}

impl Sessions {
    fn join(&mut self, id: u64, session: Session) {
        metrics::gauge!("switchboard_agent_sessions").increment(1.0);
        self.by_agent.entry(session.interest.agent_id.clone()).or_default().push(id);
        for conversation in &session.interest.conversations {
            self.by_conversation.entry(conversation.clone()).or_default().push(id);
        }
        self.by_id.insert(id, session);
    }

    fn leave(&mut self, id: u64) {
        let Some(session) = self.by_id.remove(&id) else { return };
        metrics::gauge!("switchboard_agent_sessions").decrement(1.0);
        unindex(&mut self.by_agent, &session.interest.agent_id, id);
        for conversation in &session.interest.conversations {
            unindex(&mut self.by_conversation, conversation, id);
        }
    }

    /// Hands `envelope` to the sessions it concerns. Only the sessions of
    /// the agents it names, the sessions following its conversation and,
    /// for an announcement, every session can be concerned (see
    /// [`Interest::concerns`]), so only those are asked.
    fn push(&mut self, envelope: &Arc<Envelope>) {
        let Some(event) = &envelope.event else { return };
        let touched = touched(event);
        let (conversation, agents) = &touched;
        let conversation = *conversation;
        let mut asked: Vec<u64> = if matches!(event, Event::AnnouncementPosted(_)) {
            self.by_id.keys().copied().collect()
        } else {
            let named = agents.iter().filter_map(|agent| self.by_agent.get(*agent)).flatten();
            let following = conversation.and_then(|c| self.by_conversation.get(c)).into_iter().flatten();
            named.chain(following).copied().collect()
        };
        asked.sort_unstable();
        asked.dedup();
        let mut behind = Vec::new();
        for id in asked {
            let Some(session) = self.by_id.get_mut(&id) else { continue };
            if envelope.sequence <= session.start {
                continue;
            }
            let followed = |s: &Session| conversation.is_some_and(|c| s.interest.conversations.contains(c));
            let followed_before = followed(session);
            let concerned = session.interest.concerns(event, &touched);
            let followed_after = followed(session);
            if concerned && session.outbox.try_send(envelope.clone()).is_err() {
                behind.push(id);
            }
            if let (Some(conversation), true) = (conversation, followed_before != followed_after) {
                if followed_after {
                    self.by_conversation.entry(conversation.to_owned()).or_default().push(id);
                } else {
                    unindex(&mut self.by_conversation, conversation, id);
                }
            }
        }
        // Dropping a session's outbox ends its live stream: it is told to
        // resume from the last event it was sent, which the ring still holds.
        for id in behind {
            metrics::counter!("switchboard_agent_sessions_behind_total").increment(1);
            self.leave(id);
        }
    }
}

fn unindex(index: &mut HashMap<String, Vec<u64>>, key: &str, id: u64) {
    if let Some(ids) = index.get_mut(key) {
        ids.retain(|&i| i != id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

/// What concerns one agent: events naming them, and events of the
/// conversations they take part in.
struct Interest {
    agent_id: String,
    conversations: BTreeSet<String>,
}

impl Interest {
    /// Whether `event` is pushed to the agent; follows the conversations
    /// the agent is offered until its part in them ends. Only events that
    /// name the agent change what it follows. `touched` is the event's
    /// conversation and named agents ([`touched`]), worked out once per
    /// event by the caller rather than once per session asked.
    fn concerns(&mut self, event: &Event, touched: &(Option<&str>, Vec<&str>)) -> bool {
        let (conversation, agents) = touched;
        let conversation = *conversation;
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

#[cfg(test)]
mod tests {
    use switchboard_proto::v1::*;

    use super::*;

    fn feed() -> Arc<Feed> {
        Arc::new(Feed { inner: Mutex::new(Inner::default()) })
    }

    /// Keeps `event` as the next event of tenant "t".
    fn keep(feed: &Feed, event: Event) -> u64 {
        let mut inner = feed.lock();
        let sequence = inner.rings.get("t").and_then(|r| r.back()).map_or(1, |e| e.sequence + 1);
        inner.keep(Arc::new(Envelope { domain: "t".into(), sequence, event: Some(event), ..Default::default() }));
        sequence
    }

    fn offered(conversation: &str, agent: &str) -> Event {
        Event::ConversationOffered(ConversationOffered {
            conversation_id: conversation.into(),
            agent_id: agent.into(),
            offer_id: format!("o-{conversation}-{agent}"),
            ..Default::default()
        })
    }

    fn customer_wrote(conversation: &str) -> Event {
        Event::CustomerMessageReceived(CustomerMessageReceived {
            conversation_id: conversation.into(),
            ..Default::default()
        })
    }

    fn wrapped_up(conversation: &str, agent: &str) -> Event {
        Event::WrapUpSubmitted(WrapUpSubmitted {
            conversation_id: conversation.into(),
            agent_id: agent.into(),
            ..Default::default()
        })
    }

    fn received(subscription: &mut Subscription) -> Vec<u64> {
        std::iter::from_fn(|| subscription.live.try_recv().ok()).map(|e| e.sequence).collect()
    }

    #[test]
    fn an_event_reaches_exactly_the_sessions_it_concerns() {
        // given sessions of ana (two of them), bo, and cy who holds c0 already
        let feed = feed();
        let mut ana = feed.subscribe("t", "ana", [], None, 0).unwrap();
        let mut ana_too = feed.subscribe("t", "ana", [], None, 0).unwrap();
        let mut bo = feed.subscribe("t", "bo", [], None, 0).unwrap();
        let mut cy = feed.subscribe("t", "cy", ["c0".to_owned()], None, 0).unwrap();

        // when c1 is offered to ana, its customer writes, c0's customer
        // writes, ana wraps c1 up, c1's customer writes again, and an
        // announcement goes to bo only, then to everyone
        let offer = keep(&feed, offered("c1", "ana"));
        let c1_message = keep(&feed, customer_wrote("c1"));
        let c0_message = keep(&feed, customer_wrote("c0"));
        let wrap_up = keep(&feed, wrapped_up("c1", "ana"));
        keep(&feed, customer_wrote("c1"));
        let to_bo = keep(
            &feed,
            Event::AnnouncementPosted(AnnouncementPosted { agent_ids: vec!["bo".into()], ..Default::default() }),
        );
        let to_all = keep(&feed, Event::AnnouncementPosted(AnnouncementPosted::default()));

        // then each session got what concerns its agent, and nothing after ana's part in c1 ended
        assert_eq!(received(&mut ana), [offer, c1_message, wrap_up, to_all]);
        assert_eq!(received(&mut ana_too), [offer, c1_message, wrap_up, to_all]);
        assert_eq!(received(&mut bo), [to_bo, to_all]);
        assert_eq!(received(&mut cy), [c0_message, to_all]);
        // and c1 is no longer indexed for anyone
        assert!(!feed.lock().sessions["t"].by_conversation.contains_key("c1"));
    }

    #[test]
    fn a_resumed_session_gets_what_it_missed_then_live_events_without_gap_or_repeat() {
        // given events kept while ana was away
        let feed = feed();
        let before = keep(&feed, customer_wrote("c1"));
        let offer = keep(&feed, offered("c1", "ana"));
        let message = keep(&feed, customer_wrote("c1"));

        // when ana resumes after the first one, and another arrives
        let mut ana = feed.subscribe("t", "ana", [], Some(before), message).unwrap();
        let live = keep(&feed, customer_wrote("c1"));

        // then the backlog is what concerns her since, and the live stream follows on
        assert_eq!(ana.backlog.iter().map(|e| e.sequence).collect::<Vec<_>>(), [offer, message]);
        assert_eq!(received(&mut ana), [live]);
    }

    #[test]
    fn a_new_session_gets_every_event_after_the_state_it_read_once_whether_the_keeper_is_ahead_or_behind() {
        // given a keeper ahead of the state: ana's offer (2) kept, her state read at 1
        let feed = feed();
        keep(&feed, customer_wrote("c1"));
        let offer = keep(&feed, offered("c1", "ana"));
        let mut ana = feed.subscribe("t", "ana", [], None, 1).unwrap();
        // then the offer comes from the ring, and what follows live
        assert_eq!(ana.backlog.iter().map(|e| e.sequence).collect::<Vec<_>>(), [offer]);
        let message = keep(&feed, customer_wrote("c1"));
        assert_eq!(received(&mut ana), [message]);

        // given a keeper behind the state: bo's state, read at 6, already holds c9
        let mut bo = feed.subscribe("t", "bo", ["c9".to_owned()], None, 6).unwrap();
        assert!(bo.backlog.is_empty());
        // when events 4 to 7 of c9 reach the keeper
        let sequences: Vec<u64> = (4..=7).map(|_| keep(&feed, customer_wrote("c9"))).collect();
        // then only the one after his state is pushed
        assert_eq!(sequences, [4, 5, 6, 7]);
        assert_eq!(received(&mut bo), [7]);
    }

    #[test]
    fn a_resume_from_before_what_is_kept_is_refused() {
        // given a feed that started after the domain reached sequence 10
        let feed = feed();
        // then resuming after 7 with nothing kept is refused, after 10 is fine
        assert_eq!(feed.subscribe("t", "ana", [], Some(7), 10).err(), Some(NotKept(7)));
        assert!(feed.subscribe("t", "ana", [], Some(10), 10).unwrap().backlog.is_empty());

        // and once events from 11 on are kept, resuming after 9 is still refused
        let mut inner = feed.lock();
        inner.keep(Arc::new(Envelope {
            domain: "t".into(),
            sequence: 11,
            event: Some(customer_wrote("c1")),
            ..Default::default()
        }));
        assert!(inner.since("t", 9, 11).is_none());
        assert_eq!(inner.since("t", 10, 11).map(|e| e.len()), Some(1));
    }

    #[test]
    fn a_session_that_stops_reading_is_ended_and_the_others_go_on() {
        // given ana, who reads nothing, and bo, who reads
        let feed = feed();
        let mut ana = feed.subscribe("t", "ana", [], None, 0).unwrap();
        let mut bo = feed.subscribe("t", "bo", [], None, 0).unwrap();

        // when more announcements than a session's outbox holds are posted
        for _ in 0..=SESSION_OUTBOX {
            keep(&feed, Event::AnnouncementPosted(AnnouncementPosted::default()));
            received(&mut bo);
        }

        // then ana's live stream ends after what fitted, and she has left the feed
        assert_eq!(received(&mut ana).len(), SESSION_OUTBOX);
        assert_eq!(ana.live.try_recv().err(), Some(mpsc::error::TryRecvError::Disconnected));
        assert_eq!(feed.lock().sessions["t"].by_id.len(), 1);
        // and bo still gets events
        keep(&feed, Event::AnnouncementPosted(AnnouncementPosted::default()));
        assert_eq!(received(&mut bo).len(), 1);
    }

    #[test]
    fn an_arrival_read_before_its_conversation_ended_is_not_kept_once_the_end_is() {
        let arrival = || Arrival {
            channel: "webchat",
            customer: Default::default(),
            source: String::new(),
            subject: String::new(),
            arrived_at_ms: 0,
        };
        let ended = |conversation: &str| {
            Event::ConversationEnded(ConversationEnded { conversation_id: conversation.into(), ..Default::default() })
        };
        let kept = |feed: &Feed, conversation: &str| feed.arrival("t", conversation).is_some();
        // given a keeper that has kept events 1 to 3, c1 ending at 2
        let feed = feed();
        keep(&feed, customer_wrote("c9"));
        keep(&feed, ended("c1"));
        keep(&feed, customer_wrote("c9"));

        // when c1's arrival is remembered from a state read at 1, before its end
        feed.remember_arrival("t", "c1", arrival(), 1, 0);
        // then it is not kept: the end it missed has passed
        assert!(!kept(&feed, "c1"));

        // and an open conversation read at 1, or one read ahead of the keeper, is kept
        feed.remember_arrival("t", "c2", arrival(), 1, 0);
        feed.remember_arrival("t", "c3", arrival(), 7, 0);
        assert!(kept(&feed, "c2") && kept(&feed, "c3"));
        // until its end comes
        keep(&feed, ended("c3"));
        assert!(!kept(&feed, "c3"));

        // and a state read before what the keeper still holds is not trusted
        let late = self::feed();
        late.lock().rings.entry("t".into()).or_default().push_back(Arc::new(Envelope {
            domain: "t".into(),
            sequence: 10,
            event: Some(customer_wrote("c9")),
            ..Default::default()
        }));
        late.remember_arrival("t", "c4", arrival(), 5, 0);
        assert!(!kept(&late, "c4"));

        // and nor is one read before the keeper fell behind and forgot what it held
        let lagged = self::feed();
        let lags = lagged.lags();
        lagged.lock().forget_all();
        lagged.remember_arrival("t", "c5", arrival(), 5, lags);
        assert!(!kept(&lagged, "c5"));
        lagged.remember_arrival("t", "c5", arrival(), 5, lagged.lags());
        assert!(kept(&lagged, "c5"));
    }

    #[test]
    fn a_session_that_is_dropped_leaves_every_index() {
        let feed = feed();
        let ana = feed.subscribe("t", "ana", ["c0".to_owned()], None, 0).unwrap();
        drop(ana);
        assert!(feed.lock().sessions.is_empty());
    }
}
