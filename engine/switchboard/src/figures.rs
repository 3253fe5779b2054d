//! The supervisors' figures, computed from the event stream alone.
//!
//! [`Figures`] folds envelopes one at a time, with constant work per event,
//! so that a replay of any log (or a simulation as it runs) can report
//! service level, speed of answer, handle time and occupancy without a
//! [`DomainState`](switchboard_domain::DomainState). Everything is kept in
//! ordered maps so the same log always gives the same report, byte for byte.
//!
//! The definitions (which conversations count where, which intervals make
//! occupancy) are written out in `docs/simulation.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use serde::Serialize;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::{
    transfer_completed, transfer_requested, AgentStatus, EndedBy, Envelope, OfferKind, TransferOutcome,
};

/// Where a conversation is, as far as the events tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Queued,
    Offered,
    Active,
    WrapUp,
    Closed,
}

/// What the figures need to remember about a conversation that is not
/// closed yet; closed ones are forgotten so memory follows the open work.
#[derive(Debug, Clone)]
struct ConversationTrack {
    created_at_ms: i64,
    place: Place,
    first_accepted_at_ms: Option<i64>,
    ended: bool,
    /// Agents who left it and have not submitted their wrap-up yet.
    owing: u32,
}

/// Running totals of one agent; the open intervals are closed at report time.
#[derive(Debug, Clone, Default)]
struct AgentTrack {
    logged_in_since_ms: Option<i64>,
    logged_in_ms: i64,
    /// Conversations accepted and not yet wrapped up.
    holding: u32,
    busy_since_ms: i64,
    busy_ms: i64,
    offers: u64,
    accepted: u64,
    timed_out: u64,
    wrap_ups: u64,
}

/// Folds events into the supervisors' figures.
#[derive(Debug, Clone)]
pub struct Figures {
    threshold_ms: i64,
    events: u64,
    first_at_ms: Option<i64>,
    last_at_ms: Option<i64>,
    conversations: BTreeMap<String, ConversationTrack>,
    /// When each (conversation, agent) wrap-up started.
    wrap_ups_open: BTreeMap<(String, String), i64>,
    agents: BTreeMap<String, AgentTrack>,
    places: [u64; 5],
    counts: Counts,
}

/// The plain counters, kept in the shape of the report.
#[derive(Debug, Clone, Default)]
struct Counts {
    conversations: ConversationFigures,
    offers: OfferFigures,
    transfers: TransferFigures,
    conferences: ConferenceFigures,
    wrap_ups: WrapUpFigures,
    messages: MessageFigures,
    answered: u64,
    answered_within_threshold: u64,
    speed_of_answer_total_ms: i64,
    handled: u64,
    handle_time_total_ms: i64,
    wrap_ups_timed: u64,
    wrap_up_time_total_ms: i64,
    abandoned: u64,
    abandoned_after_threshold: u64,
}

/// Everything [`Figures`] knows, ready to print or serialize.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiguresReport {
    /// The service level's answer threshold.
    pub service_level_threshold_ms: i64,
    /// Events observed.
    pub events: u64,
    /// Time of the first event observed.
    pub first_event_at_ms: Option<i64>,
    /// Time of the last event observed: open intervals (logged in, busy) end here.
    pub last_event_at_ms: Option<i64>,
    /// Conversations by place and by how they ended.
    pub conversations: ConversationFigures,
    /// Offers by kind and outcome.
    pub offers: OfferFigures,
    /// Transfers by target and outcome.
    pub transfers: TransferFigures,
    /// Conferences through their states.
    pub conferences: ConferenceFigures,
    /// Wrap-ups and their reasons.
    pub wrap_ups: WrapUpFigures,
    /// Messages both ways.
    pub messages: MessageFigures,
    /// Speed of answer, handle time, wrap-up time, abandons, service level.
    pub service: ServiceFigures,
    /// Agent time holding conversations over agent time logged in.
    pub occupancy: OccupancyFigures,
    /// The same per agent, by agent id.
    pub agents: BTreeMap<String, AgentFigures>,
}

/// Conversations: where they are now and how the ended ones ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConversationFigures {
    /// Conversations created.
    pub created: u64,
    /// Created, by channel name.
    pub by_channel: BTreeMap<String, u64>,
    /// Waiting in a queue now (or last).
    pub queued: u64,
    /// Offered to an agent (routed or transferred) now.
    pub offered: u64,
    /// Handled by an agent now.
    pub active: u64,
    /// Ended, with a wrap-up still owed.
    pub wrap_up: u64,
    /// Ended and wrapped up.
    pub closed: u64,
    /// Ended by the customer (abandons included).
    pub ended_by_customer: u64,
    /// Ended by an agent.
    pub ended_by_agent: u64,
    /// Ended because a transfer to an agent lapsed under the drop policy.
    pub ended_by_transfer_dropped: u64,
}

/// Offers: how many were made, and how each ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OfferFigures {
    /// All offers made.
    pub made: u64,
    /// Offers routed from a queue.
    pub routed: u64,
    /// Offers of a transfer to a named agent.
    pub transfer: u64,
    /// Conference invitations.
    pub conference: u64,
    /// Offers accepted.
    pub accepted: u64,
    /// Offers that timed out: each one put its agent in RONA.
    pub timed_out: u64,
    /// Offers taken back (customer left, agent went idle or logged out, ...).
    pub withdrawn: u64,
}

/// Transfers by target and outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TransferFigures {
    /// Transfers requested to a queue.
    pub requested_to_queue: u64,
    /// Transfers requested to a named agent.
    pub requested_to_agent: u64,
    /// Transfers that reached their queue.
    pub completed_to_queue: u64,
    /// Transfers accepted by their target agent.
    pub completed_to_agent: u64,
    /// Lapsed transfers that ended the conversation (drop policy).
    pub failed_dropped: u64,
    /// Lapsed transfers put back in their queue (requeue policy).
    pub failed_requeued: u64,
}

/// Conferences through their states.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConferenceFigures {
    /// Invitations sent.
    pub requested: u64,
    /// Invitations accepted.
    pub joined: u64,
    /// Invitees who left while the chat went on.
    pub left: u64,
    /// Conferences ended by their owner.
    pub ended: u64,
}

/// Wrap-ups and the reasons given.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WrapUpFigures {
    /// Wrap-ups started (an agent left a conversation).
    pub started: u64,
    /// Wrap-ups submitted by the agent.
    pub submitted: u64,
    /// Wrap-ups submitted by the queue's automatic timer.
    pub automatic: u64,
    /// Agent wrap-ups giving each reason; a reason counts once per wrap-up.
    pub by_reason: BTreeMap<String, u64>,
}

/// Messages both ways.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MessageFigures {
    /// Customer messages recorded.
    pub from_customers: u64,
    /// Agent messages sent.
    pub from_agents: u64,
    /// Delivery receipts.
    pub delivered: u64,
    /// Read receipts.
    pub read: u64,
}

/// The time-based figures of the service.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceFigures {
    /// Conversations answered: accepted from a queue at least once.
    pub answered: u64,
    /// Of those, answered within the threshold.
    pub answered_within_threshold: u64,
    /// Creation to first routed accept, averaged over answered conversations.
    pub average_speed_of_answer_ms: Option<f64>,
    /// Conversations answered and then ended.
    pub handled: u64,
    /// First accept to end, averaged over handled conversations.
    pub average_handle_time_ms: Option<f64>,
    /// Wrap-ups with both a start and a submission.
    pub wrap_ups_timed: u64,
    /// Wrap-up start to submission, averaged over those.
    pub average_wrap_up_time_ms: Option<f64>,
    /// Conversations ended by the customer before any accept.
    pub abandoned: u64,
    /// Of those, abandoned after waiting longer than the threshold.
    pub abandoned_after_threshold: u64,
    /// answered within threshold / (answered + abandoned after threshold).
    pub service_level: Option<f64>,
}

/// Occupancy over all agents.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OccupancyFigures {
    /// Agent time holding at least one accepted conversation (until its wrap-up).
    pub busy_ms: i64,
    /// Agent time logged in.
    pub logged_in_ms: i64,
    /// busy / logged in.
    pub occupancy: Option<f64>,
}

/// One agent's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgentFigures {
    /// Offers made to the agent, of any kind.
    pub offers: u64,
    /// Offers the agent accepted.
    pub accepted: u64,
    /// Offers the agent let time out.
    pub timed_out: u64,
    /// Wrap-ups the agent submitted (automatic ones included).
    pub wrap_ups: u64,
    /// Time holding at least one accepted conversation.
    pub busy_ms: i64,
    /// Time logged in.
    pub logged_in_ms: i64,
    /// busy / logged in.
    pub occupancy: Option<f64>,
}

fn place_index(place: Place) -> usize {
    match place {
        Place::Queued => 0,
        Place::Offered => 1,
        Place::Active => 2,
        Place::WrapUp => 3,
        Place::Closed => 4,
    }
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator / denominator)
}

fn average(total_ms: i64, count: u64) -> Option<f64> {
    ratio(total_ms as f64, count as f64)
}

fn transfer_kind(kind: i32) -> bool {
    kind == OfferKind::Routed as i32 || kind == OfferKind::Transfer as i32
}

impl Figures {
    /// Empty figures; `service_level_threshold_ms` is the answer time the
    /// service level counts against (commonly 20 to 60 seconds for chat).
    pub fn new(service_level_threshold_ms: i64) -> Self {
        Self {
            threshold_ms: service_level_threshold_ms,
            events: 0,
            first_at_ms: None,
            last_at_ms: None,
            conversations: BTreeMap::new(),
            wrap_ups_open: BTreeMap::new(),
            agents: BTreeMap::new(),
            places: [0; 5],
            counts: Counts::default(),
        }
    }

    /// Folds one event in. Events of kinds the figures do not use, and
    /// events about conversations they never saw created, only count.
    pub fn observe(&mut self, envelope: &Envelope) {
        let at = envelope.at_ms;
        self.events += 1;
        self.first_at_ms.get_or_insert(at);
        self.last_at_ms = Some(at);
        let Some(event) = &envelope.event else { return };
        let counts = &mut self.counts;
        match event {
            Event::ConversationCreated(e) => {
                counts.conversations.created += 1;
                let channel = switchboard_domain::channel::name(e.channel());
                *counts.conversations.by_channel.entry(channel.to_owned()).or_default() += 1;
                let track = ConversationTrack {
                    created_at_ms: at,
                    place: Place::Queued,
                    first_accepted_at_ms: None,
                    ended: false,
                    owing: 0,
                };
                self.places[place_index(Place::Queued)] += 1;
                if let Some(old) = self.conversations.insert(e.conversation_id.clone(), track) {
                    // A log the domain would refuse; keep the counts whole anyway.
                    self.places[place_index(old.place)] -= 1;
                }
            }
            Event::CustomerMessageReceived(_) => counts.messages.from_customers += 1,
            Event::AgentMessageSent(_) => counts.messages.from_agents += 1,
            Event::MessageDelivered(_) => counts.messages.delivered += 1,
            Event::MessageRead(_) => counts.messages.read += 1,
            Event::ConversationQueued(e) => self.move_to(&e.conversation_id, Place::Queued),
            Event::ConversationOffered(e) => {
                counts.offers.made += 1;
                match e.kind() {
                    OfferKind::Routed => counts.offers.routed += 1,
                    OfferKind::Transfer => counts.offers.transfer += 1,
                    OfferKind::Conference => counts.offers.conference += 1,
                    OfferKind::Unspecified => {}
                }
                self.agents.entry(e.agent_id.clone()).or_default().offers += 1;
                if transfer_kind(e.kind) {
                    self.move_to(&e.conversation_id, Place::Offered);
                }
            }
            Event::OfferAccepted(e) => {
                counts.offers.accepted += 1;
                let agent = self.agents.entry(e.agent_id.clone()).or_default();
                agent.accepted += 1;
                if agent.holding == 0 {
                    agent.busy_since_ms = at;
                }
                agent.holding += 1;
                if transfer_kind(e.kind) {
                    self.move_to(&e.conversation_id, Place::Active);
                }
                if e.kind() == OfferKind::Routed {
                    self.answered(&e.conversation_id, at);
                }
            }
            Event::OfferTimedOut(e) => {
                counts.offers.timed_out += 1;
                self.agents.entry(e.agent_id.clone()).or_default().timed_out += 1;
                // The same command puts it back in a queue or ends it.
                if transfer_kind(e.kind) {
                    self.move_to(&e.conversation_id, Place::Queued);
                }
            }
            Event::OfferWithdrawn(e) => {
                counts.offers.withdrawn += 1;
                if transfer_kind(e.kind) {
                    self.move_to(&e.conversation_id, Place::Queued);
                }
            }
            Event::AgentStateChanged(e) => {
                let agent = self.agents.entry(e.agent_id.clone()).or_default();
                if e.from() == AgentStatus::LoggedOut && e.to() != AgentStatus::LoggedOut {
                    agent.logged_in_since_ms = Some(at);
                } else if e.to() == AgentStatus::LoggedOut {
                    if let Some(since) = agent.logged_in_since_ms.take() {
                        agent.logged_in_ms += at - since;
                    }
                }
            }
            Event::TransferRequested(e) => {
                match e.target {
                    Some(transfer_requested::Target::ToQueueId(_)) => counts.transfers.requested_to_queue += 1,
                    Some(transfer_requested::Target::ToAgentId(_)) => counts.transfers.requested_to_agent += 1,
                    None => {}
                }
                // Between owners: the queue or the target's offer follows.
                self.move_to(&e.conversation_id, Place::Queued);
            }
            Event::TransferCompleted(e) => match e.target {
                Some(transfer_completed::Target::ToQueueId(_)) => counts.transfers.completed_to_queue += 1,
                Some(transfer_completed::Target::ToAgentId(_)) => counts.transfers.completed_to_agent += 1,
                None => {}
            },
            Event::TransferFailed(e) => match e.outcome() {
                TransferOutcome::Dropped => counts.transfers.failed_dropped += 1,
                TransferOutcome::Requeued => counts.transfers.failed_requeued += 1,
                TransferOutcome::Unspecified => {}
            },
            Event::ConferenceRequested(_) => counts.conferences.requested += 1,
            Event::ConferenceJoined(_) => counts.conferences.joined += 1,
            Event::ConferenceLeft(_) => counts.conferences.left += 1,
            Event::ConferenceEnded(_) => counts.conferences.ended += 1,
            Event::ConversationEnded(e) => {
                match e.by() {
                    EndedBy::Customer => counts.conversations.ended_by_customer += 1,
                    EndedBy::Agent => counts.conversations.ended_by_agent += 1,
                    EndedBy::TransferDropped => counts.conversations.ended_by_transfer_dropped += 1,
                    EndedBy::Unspecified => {}
                }
                self.ended(&e.conversation_id, e.by(), at);
            }
            Event::WrapUpStarted(e) => {
                counts.wrap_ups.started += 1;
                self.wrap_ups_open.insert((e.conversation_id.clone(), e.agent_id.clone()), at);
                if let Some(track) = self.conversations.get_mut(&e.conversation_id) {
                    track.owing += 1;
                    if track.ended {
                        self.move_to(&e.conversation_id, Place::WrapUp);
                    }
                }
            }
            Event::WrapUpSubmitted(e) => {
                if e.automatic {
                    counts.wrap_ups.automatic += 1;
                } else {
                    counts.wrap_ups.submitted += 1;
                    let reasons: BTreeSet<&String> = e.reasons.iter().collect();
                    for reason in reasons {
                        *counts.wrap_ups.by_reason.entry(reason.clone()).or_default() += 1;
                    }
                }
                let key = (e.conversation_id.clone(), e.agent_id.clone());
                if let Some(started) = self.wrap_ups_open.remove(&key) {
                    counts.wrap_ups_timed += 1;
                    counts.wrap_up_time_total_ms += at - started;
                }
                let agent = self.agents.entry(e.agent_id.clone()).or_default();
                agent.wrap_ups += 1;
                if agent.holding > 0 {
                    agent.holding -= 1;
                    if agent.holding == 0 {
                        agent.busy_ms += at - agent.busy_since_ms;
                    }
                }
                if let Some(track) = self.conversations.get_mut(&e.conversation_id) {
                    track.owing = track.owing.saturating_sub(1);
                    if track.ended && track.owing == 0 {
                        self.move_to(&e.conversation_id, Place::Closed);
                    }
                }
            }
            Event::QueueConfigured(_)
            | Event::AgentProfileConfigured(_)
            | Event::WrapUpReasonsConfigured(_)
            | Event::IdleReasonsConfigured(_)
            | Event::RetentionConfigured(_)
            | Event::TemplatesConfigured(_)
            | Event::WorkflowsConfigured(_)
            | Event::WorkflowTriggered(_)
            | Event::AnnouncementPosted(_) => {}
        }
    }

    /// Moves a conversation to `place`, keeping the per-place counts; a
    /// closed conversation is forgotten, as nothing follows its close.
    fn move_to(&mut self, conversation_id: &str, place: Place) {
        let Some(track) = self.conversations.get_mut(conversation_id) else { return };
        self.places[place_index(track.place)] -= 1;
        self.places[place_index(place)] += 1;
        track.place = place;
        if place == Place::Closed {
            self.conversations.remove(conversation_id);
        }
    }

    fn answered(&mut self, conversation_id: &str, at: i64) {
        let Some(track) = self.conversations.get_mut(conversation_id) else { return };
        if track.first_accepted_at_ms.is_some() {
            return;
        }
        track.first_accepted_at_ms = Some(at);
        let waited = at - track.created_at_ms;
        self.counts.answered += 1;
        self.counts.speed_of_answer_total_ms += waited;
        if waited <= self.threshold_ms {
            self.counts.answered_within_threshold += 1;
        }
    }

    fn ended(&mut self, conversation_id: &str, by: EndedBy, at: i64) {
        let Some(track) = self.conversations.get_mut(conversation_id) else { return };
        track.ended = true;
        match track.first_accepted_at_ms {
            Some(accepted) => {
                self.counts.handled += 1;
                self.counts.handle_time_total_ms += at - accepted;
            }
            None if by == EndedBy::Customer => {
                self.counts.abandoned += 1;
                if at - track.created_at_ms > self.threshold_ms {
                    self.counts.abandoned_after_threshold += 1;
                }
            }
            None => {}
        }
        // Agents who take part follow with their WrapUpStarted in the same command.
        let place = if track.owing > 0 { Place::WrapUp } else { Place::Closed };
        self.move_to(conversation_id, place);
    }

    /// The figures so far; intervals still open (an agent logged in or busy)
    /// are counted up to the last event observed.
    pub fn report(&self) -> FiguresReport {
        let c = &self.counts;
        let now = self.last_at_ms.unwrap_or(0);
        let mut conversations = c.conversations.clone();
        conversations.queued = self.places[place_index(Place::Queued)];
        conversations.offered = self.places[place_index(Place::Offered)];
        conversations.active = self.places[place_index(Place::Active)];
        conversations.wrap_up = self.places[place_index(Place::WrapUp)];
        conversations.closed = self.places[place_index(Place::Closed)];
        let agents: BTreeMap<String, AgentFigures> = self
            .agents
            .iter()
            .map(|(id, a)| {
                let logged_in_ms = a.logged_in_ms + a.logged_in_since_ms.map_or(0, |since| now - since);
                let busy_ms = a.busy_ms + if a.holding > 0 { now - a.busy_since_ms } else { 0 };
                let figures = AgentFigures {
                    offers: a.offers,
                    accepted: a.accepted,
                    timed_out: a.timed_out,
                    wrap_ups: a.wrap_ups,
                    busy_ms,
                    logged_in_ms,
                    occupancy: ratio(busy_ms as f64, logged_in_ms as f64),
                };
                (id.clone(), figures)
            })
            .collect();
        let busy_ms: i64 = agents.values().map(|a| a.busy_ms).sum();
        let logged_in_ms: i64 = agents.values().map(|a| a.logged_in_ms).sum();
        FiguresReport {
            service_level_threshold_ms: self.threshold_ms,
            events: self.events,
            first_event_at_ms: self.first_at_ms,
            last_event_at_ms: self.last_at_ms,
            conversations,
            offers: c.offers.clone(),
            transfers: c.transfers.clone(),
            conferences: c.conferences.clone(),
            wrap_ups: c.wrap_ups.clone(),
            messages: c.messages.clone(),
            service: ServiceFigures {
                answered: c.answered,
                answered_within_threshold: c.answered_within_threshold,
                average_speed_of_answer_ms: average(c.speed_of_answer_total_ms, c.answered),
                handled: c.handled,
                average_handle_time_ms: average(c.handle_time_total_ms, c.handled),
                wrap_ups_timed: c.wrap_ups_timed,
                average_wrap_up_time_ms: average(c.wrap_up_time_total_ms, c.wrap_ups_timed),
                abandoned: c.abandoned,
                abandoned_after_threshold: c.abandoned_after_threshold,
                service_level: ratio(
                    c.answered_within_threshold as f64,
                    (c.answered + c.abandoned_after_threshold) as f64,
                ),
            },
            occupancy: OccupancyFigures {
                busy_ms,
                logged_in_ms,
                occupancy: ratio(busy_ms as f64, logged_in_ms as f64),
            },
            agents,
        }
    }
}

/// Seconds with one decimal, or a dash when there is nothing to average.
fn seconds(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |ms| format!("{:.1} s", ms / 1000.0))
}

/// A share as a percentage with one decimal, or a dash.
fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |share| format!("{:.1} %", share * 100.0))
}

/// A duration as hours, minutes and seconds, for long agent totals.
pub(crate) fn clock(ms: i64) -> String {
    let total = ms / 1000;
    format!("{}h{:02}m{:02}s", total / 3600, (total / 60) % 60, total % 60)
}

/// The width of the label column, so values line up.
const LABEL_WIDTH: usize = 30;

fn line(out: &mut String, label: &str, value: impl fmt::Display) {
    let _ = writeln!(out, "{label:<LABEL_WIDTH$}{value}");
}

impl FiguresReport {
    /// The figures as aligned lines, for a terminal.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let c = &self.conversations;
        let s = &self.service;
        line(&mut out, "service level", {
            let within = s.answered_within_threshold;
            let counted = s.answered + s.abandoned_after_threshold;
            let threshold = self.service_level_threshold_ms as f64 / 1000.0;
            format!("{} ({within} of {counted} within {threshold} s)", percent(s.service_level))
        });
        line(
            &mut out,
            "average speed of answer",
            format!("{} ({} answered)", seconds(s.average_speed_of_answer_ms), s.answered),
        );
        line(&mut out, "average handle time", format!("{} ({} handled)", seconds(s.average_handle_time_ms), s.handled));
        line(
            &mut out,
            "average wrap-up time",
            format!("{} ({} wrap-ups)", seconds(s.average_wrap_up_time_ms), s.wrap_ups_timed),
        );
        line(&mut out, "abandoned", format!("{} ({} after the threshold)", s.abandoned, s.abandoned_after_threshold));
        line(
            &mut out,
            "occupancy",
            format!(
                "{} (busy {} of {} logged in)",
                percent(self.occupancy.occupancy),
                clock(self.occupancy.busy_ms),
                clock(self.occupancy.logged_in_ms)
            ),
        );
        let by_channel: Vec<String> = c.by_channel.iter().map(|(channel, n)| format!("{channel} {n}")).collect();
        line(&mut out, "conversations created", format!("{} ({})", c.created, by_channel.join(", ")));
        line(
            &mut out,
            "conversations now",
            format!(
                "queued {}, offered {}, active {}, wrap-up {}, closed {}",
                c.queued, c.offered, c.active, c.wrap_up, c.closed
            ),
        );
        line(
            &mut out,
            "ended by",
            format!(
                "customer {}, agent {}, transfer dropped {}",
                c.ended_by_customer, c.ended_by_agent, c.ended_by_transfer_dropped
            ),
        );
        let o = &self.offers;
        line(
            &mut out,
            "offers",
            format!(
                "{} (routed {}, transfer {}, conference {}): accepted {}, timed out (RONA) {}, withdrawn {}",
                o.made, o.routed, o.transfer, o.conference, o.accepted, o.timed_out, o.withdrawn
            ),
        );
        let t = &self.transfers;
        line(
            &mut out,
            "transfers to a queue",
            format!("requested {}, completed {}", t.requested_to_queue, t.completed_to_queue),
        );
        line(
            &mut out,
            "transfers to an agent",
            format!(
                "requested {}, completed {}, failed {} (dropped {}, requeued {})",
                t.requested_to_agent,
                t.completed_to_agent,
                t.failed_dropped + t.failed_requeued,
                t.failed_dropped,
                t.failed_requeued
            ),
        );
        let k = &self.conferences;
        line(
            &mut out,
            "conferences",
            format!("requested {}, joined {}, left {}, ended {}", k.requested, k.joined, k.left, k.ended),
        );
        let w = &self.wrap_ups;
        line(
            &mut out,
            "wrap-ups",
            format!("started {}, submitted {}, automatic {}", w.started, w.submitted, w.automatic),
        );
        for (reason, n) in &w.by_reason {
            line(&mut out, &format!("  reason {reason}"), n);
        }
        let m = &self.messages;
        line(
            &mut out,
            "messages",
            format!(
                "from customers {}, from agents {}, delivered {}, read {}",
                m.from_customers, m.from_agents, m.delivered, m.read
            ),
        );
        line(&mut out, "events", self.events);
        if !self.agents.is_empty() {
            let _ = writeln!(
                out,
                "{:<LABEL_WIDTH$}{:>7} {:>9} {:>6} {:>9} {:>11} {:>11} {:>9}",
                "agent", "offers", "accepted", "RONA", "wrap-ups", "busy", "logged in", "occupancy"
            );
            for (id, a) in &self.agents {
                let _ = writeln!(
                    out,
                    "{:<LABEL_WIDTH$}{:>7} {:>9} {:>6} {:>9} {:>11} {:>11} {:>9}",
                    format!("  {id}"),
                    a.offers,
                    a.accepted,
                    a.timed_out,
                    a.wrap_ups,
                    clock(a.busy_ms),
                    clock(a.logged_in_ms),
                    percent(a.occupancy)
                );
            }
        }
        out
    }
}

impl fmt::Display for FiguresReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_text())
    }
}

#[cfg(test)]
mod tests {
    use switchboard_proto::v1::*;

    use super::*;

    /// Builds envelopes in order, each at its own sequence.
    struct Log {
        envelopes: Vec<Envelope>,
    }

    impl Log {
        fn new() -> Self {
            Self { envelopes: Vec::new() }
        }

        fn at(&mut self, at_ms: i64, event: Event) -> &mut Self {
            let sequence = self.envelopes.len() as u64 + 1;
            self.envelopes.push(Envelope {
                domain: "acme".into(),
                sequence,
                event_id: format!("acme/{sequence}"),
                at_ms,
                command_id: format!("cmd-{sequence}"),
                event: Some(event),
            });
            self
        }

        fn created(&mut self, at_ms: i64, conversation: &str) -> &mut Self {
            self.at(
                at_ms,
                Event::ConversationCreated(ConversationCreated {
                    conversation_id: conversation.into(),
                    channel: Channel::Webchat as i32,
                    queue_id: "chat".into(),
                    ..Default::default()
                }),
            )
            .at(
                at_ms,
                Event::ConversationQueued(ConversationQueued {
                    conversation_id: conversation.into(),
                    queue_id: "chat".into(),
                    reason: QueueReason::Arrived as i32,
                    arrived_at_ms: at_ms,
                    priority: 0,
                }),
            )
        }

        fn offered(&mut self, at_ms: i64, conversation: &str, agent: &str, offer: &str, kind: OfferKind) -> &mut Self {
            self.at(
                at_ms,
                Event::ConversationOffered(ConversationOffered {
                    offer_id: offer.into(),
                    conversation_id: conversation.into(),
                    agent_id: agent.into(),
                    queue_id: "chat".into(),
                    kind: kind as i32,
                    deadline_ms: at_ms + 30_000,
                    decision: None,
                }),
            )
        }

        fn accepted(&mut self, at_ms: i64, conversation: &str, agent: &str, offer: &str, kind: OfferKind) -> &mut Self {
            self.at(
                at_ms,
                Event::OfferAccepted(OfferAccepted {
                    offer_id: offer.into(),
                    conversation_id: conversation.into(),
                    agent_id: agent.into(),
                    kind: kind as i32,
                }),
            )
        }

        fn ended(&mut self, at_ms: i64, conversation: &str, by: EndedBy) -> &mut Self {
            self.at(
                at_ms,
                Event::ConversationEnded(ConversationEnded {
                    conversation_id: conversation.into(),
                    by: by as i32,
                    agent_id: String::new(),
                }),
            )
        }

        fn wrap_up_started(&mut self, at_ms: i64, conversation: &str, agent: &str) -> &mut Self {
            self.at(
                at_ms,
                Event::WrapUpStarted(WrapUpStarted { conversation_id: conversation.into(), agent_id: agent.into() }),
            )
        }

        fn wrap_up_submitted(&mut self, at_ms: i64, conversation: &str, agent: &str, reasons: &[&str]) -> &mut Self {
            self.at(
                at_ms,
                Event::WrapUpSubmitted(WrapUpSubmitted {
                    conversation_id: conversation.into(),
                    agent_id: agent.into(),
                    reasons: reasons.iter().map(|r| r.to_string()).collect(),
                    automatic: reasons.is_empty(),
                }),
            )
        }

        fn agent_state(&mut self, at_ms: i64, agent: &str, from: AgentStatus, to: AgentStatus) -> &mut Self {
            self.at(
                at_ms,
                Event::AgentStateChanged(AgentStateChanged {
                    agent_id: agent.into(),
                    from: from as i32,
                    to: to as i32,
                    idle_reason: String::new(),
                    cause: StateChangeCause::Agent as i32,
                }),
            )
        }

        fn figures(&self, threshold_ms: i64) -> FiguresReport {
            let mut figures = Figures::new(threshold_ms);
            for envelope in &self.envelopes {
                figures.observe(envelope);
            }
            figures.report()
        }
    }

    #[test]
    fn answered_abandoned_and_waiting_conversations_give_places_averages_and_service_level() {
        let mut log = Log::new();
        log.agent_state(0, "amy", AgentStatus::LoggedOut, AgentStatus::Available);
        // c1: answered after 10 s, handled for 60 s, wrapped up in 10 s.
        log.created(0, "c1").offered(0, "c1", "amy", "o1", OfferKind::Routed);
        log.accepted(10_000, "c1", "amy", "o1", OfferKind::Routed);
        log.ended(70_000, "c1", EndedBy::Agent).wrap_up_started(70_000, "c1", "amy");
        log.wrap_up_submitted(80_000, "c1", "amy", &["sale", "sale", "support"]);
        // c2: the customer gave up after 95 s, past the 60 s threshold.
        log.created(5_000, "c2").ended(100_000, "c2", EndedBy::Customer);
        // c3: a short abandon, which the service level leaves out.
        log.created(90_000, "c3").ended(95_000, "c3", EndedBy::Customer);
        // c4: still waiting.
        log.created(99_000, "c4");
        let report = log.figures(60_000);

        let c = &report.conversations;
        assert_eq!((c.created, c.queued, c.offered, c.active, c.wrap_up, c.closed), (4, 1, 0, 0, 0, 3));
        assert_eq!((c.ended_by_agent, c.ended_by_customer), (1, 2));
        assert_eq!(c.by_channel["webchat"], 4);
        let s = &report.service;
        assert_eq!(s.average_speed_of_answer_ms, Some(10_000.0));
        assert_eq!(s.average_handle_time_ms, Some(60_000.0));
        assert_eq!(s.average_wrap_up_time_ms, Some(10_000.0));
        assert_eq!((s.abandoned, s.abandoned_after_threshold), (2, 1));
        assert_eq!(s.service_level, Some(0.5), "1 answered in time of 1 answered + 1 abandoned late");
        let reasons: Vec<_> = report.wrap_ups.by_reason.iter().map(|(r, n)| (r.as_str(), *n)).collect();
        assert_eq!(reasons, [("sale", 1), ("support", 1)], "a reason counts once per wrap-up");
        assert_eq!(report.offers.made, 1);
        assert_eq!(report.offers.accepted, 1);
    }

    #[test]
    fn a_conversation_is_in_wrap_up_until_every_agent_who_left_it_submits() {
        let mut log = Log::new();
        log.created(0, "c1").offered(0, "c1", "amy", "o1", OfferKind::Routed);
        log.accepted(1_000, "c1", "amy", "o1", OfferKind::Routed);
        // Amy transfers to Bob, who lets it lapse: the drop policy ends it.
        log.at(
            2_000,
            Event::TransferRequested(TransferRequested {
                conversation_id: "c1".into(),
                from_agent_id: "amy".into(),
                target: Some(transfer_requested::Target::ToAgentId("bob".into())),
            }),
        );
        log.wrap_up_started(2_000, "c1", "amy").offered(2_000, "c1", "bob", "o2", OfferKind::Transfer);
        let in_transfer = log.figures(60_000);
        assert_eq!((in_transfer.conversations.offered, in_transfer.conversations.active), (1, 0));
        log.at(
            32_000,
            Event::OfferTimedOut(OfferTimedOut {
                offer_id: "o2".into(),
                conversation_id: "c1".into(),
                agent_id: "bob".into(),
                kind: OfferKind::Transfer as i32,
            }),
        );
        log.at(
            32_000,
            Event::TransferFailed(TransferFailed {
                conversation_id: "c1".into(),
                to_agent_id: "bob".into(),
                outcome: TransferOutcome::Dropped as i32,
                queue_id: String::new(),
            }),
        );
        log.ended(32_000, "c1", EndedBy::TransferDropped);
        let dropped = log.figures(60_000);
        assert_eq!((dropped.conversations.wrap_up, dropped.conversations.closed), (1, 0), "amy still owes");
        assert_eq!(dropped.conversations.ended_by_transfer_dropped, 1);
        assert_eq!((dropped.transfers.requested_to_agent, dropped.transfers.failed_dropped), (1, 1));
        assert_eq!((dropped.offers.timed_out, dropped.agents["bob"].timed_out), (1, 1));
        log.wrap_up_submitted(40_000, "c1", "amy", &[]);
        let closed = log.figures(60_000);
        assert_eq!((closed.conversations.wrap_up, closed.conversations.closed), (0, 1));
        assert_eq!((closed.wrap_ups.automatic, closed.wrap_ups.submitted), (1, 0));
        assert!(closed.wrap_ups.by_reason.is_empty(), "automatic wrap-ups give no reason");
        assert_eq!(closed.service.average_handle_time_ms, Some(31_000.0), "first accept to the end");
    }

    #[test]
    fn occupancy_is_time_holding_a_conversation_over_time_logged_in() {
        let mut log = Log::new();
        log.agent_state(0, "amy", AgentStatus::LoggedOut, AgentStatus::Available);
        log.agent_state(50_000, "bob", AgentStatus::LoggedOut, AgentStatus::Available);
        log.created(10_000, "c1").offered(10_000, "c1", "amy", "o1", OfferKind::Routed);
        log.created(20_000, "c2").offered(20_000, "c2", "amy", "o2", OfferKind::Routed);
        // Amy holds from 10 s to 80 s: two overlapping conversations count once.
        log.accepted(10_000, "c1", "amy", "o1", OfferKind::Routed);
        log.accepted(20_000, "c2", "amy", "o2", OfferKind::Routed);
        log.ended(30_000, "c2", EndedBy::Customer).wrap_up_started(30_000, "c2", "amy");
        log.wrap_up_submitted(40_000, "c2", "amy", &["other"]);
        log.ended(60_000, "c1", EndedBy::Agent).wrap_up_started(60_000, "c1", "amy");
        log.wrap_up_submitted(80_000, "c1", "amy", &["sale"]);
        log.agent_state(100_000, "amy", AgentStatus::Available, AgentStatus::LoggedOut);
        let report = log.figures(60_000);
        assert_eq!((report.agents["amy"].busy_ms, report.agents["amy"].logged_in_ms), (70_000, 100_000));
        assert_eq!(report.agents["amy"].occupancy, Some(0.7));
        // Bob is still logged in: his time runs to the last event.
        assert_eq!((report.agents["bob"].busy_ms, report.agents["bob"].logged_in_ms), (0, 50_000));
        assert_eq!((report.occupancy.busy_ms, report.occupancy.logged_in_ms), (70_000, 150_000));
        assert_eq!(report.service.answered, 2);
        assert_eq!(report.conversations.closed, 2);
    }

    #[test]
    fn conferences_and_queue_transfers_are_counted_and_the_invitee_is_busy_until_their_wrap_up() {
        let mut log = Log::new();
        log.created(0, "c1").offered(0, "c1", "amy", "o1", OfferKind::Routed);
        log.accepted(1_000, "c1", "amy", "o1", OfferKind::Routed);
        log.at(
            2_000,
            Event::ConferenceRequested(ConferenceRequested {
                conversation_id: "c1".into(),
                owner_agent_id: "amy".into(),
                invitee_agent_id: "bob".into(),
                ..Default::default()
            }),
        );
        log.offered(2_000, "c1", "bob", "o2", OfferKind::Conference);
        log.accepted(3_000, "c1", "bob", "o2", OfferKind::Conference);
        log.at(
            3_000,
            Event::ConferenceJoined(ConferenceJoined { conversation_id: "c1".into(), agent_id: "bob".into() }),
        );
        let joined = log.figures(60_000);
        assert_eq!(joined.conversations.active, 1, "an invitation does not move the conversation");
        assert_eq!(joined.service.answered, 1, "only routed accepts answer");
        log.at(5_000, Event::ConferenceLeft(ConferenceLeft { conversation_id: "c1".into(), agent_id: "bob".into() }));
        log.wrap_up_started(5_000, "c1", "bob").wrap_up_submitted(9_000, "c1", "bob", &["support"]);
        log.at(
            10_000,
            Event::TransferRequested(TransferRequested {
                conversation_id: "c1".into(),
                from_agent_id: "amy".into(),
                target: Some(transfer_requested::Target::ToQueueId("chat".into())),
            }),
        );
        log.wrap_up_started(10_000, "c1", "amy");
        log.at(
            10_000,
            Event::ConversationQueued(ConversationQueued {
                conversation_id: "c1".into(),
                queue_id: "chat".into(),
                reason: QueueReason::Transferred as i32,
                arrived_at_ms: 0,
                priority: 0,
            }),
        );
        log.at(
            10_000,
            Event::TransferCompleted(TransferCompleted {
                conversation_id: "c1".into(),
                target: Some(transfer_completed::Target::ToQueueId("chat".into())),
            }),
        );
        let report = log.figures(60_000);
        assert_eq!(report.conversations.queued, 1);
        assert_eq!((report.transfers.requested_to_queue, report.transfers.completed_to_queue), (1, 1));
        let k = &report.conferences;
        assert_eq!((k.requested, k.joined, k.left, k.ended), (1, 1, 1, 0));
        assert_eq!(report.offers.conference, 1);
        assert_eq!(report.agents["bob"].busy_ms, 6_000, "from accepting the invitation to the wrap-up");
        assert_eq!(report.agents["amy"].busy_ms, 9_000, "still in wrap-up: counted to the last event");
    }

    #[test]
    fn the_report_serializes_to_json_and_renders_aligned_lines() {
        let mut log = Log::new();
        log.agent_state(0, "amy", AgentStatus::LoggedOut, AgentStatus::Available);
        log.created(0, "c1").offered(0, "c1", "amy", "o1", OfferKind::Routed);
        log.accepted(12_000, "c1", "amy", "o1", OfferKind::Routed);
        let report = log.figures(20_000);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["service"]["service_level"], 1.0);
        assert_eq!(json["conversations"]["active"], 1);
        let text = report.render_text();
        assert!(text.contains("service level                 100.0 % (1 of 1 within 20 s)"), "{text}");
        assert!(text.contains("average speed of answer       12.0 s (1 answered)"), "{text}");
        for l in text.lines().filter(|l| !l.starts_with(' ') && !l.starts_with("agent")) {
            let bytes = l.as_bytes();
            assert!(bytes[LABEL_WIDTH - 1] == b' ' && bytes[LABEL_WIDTH] != b' ', "values start in one column: {l:?}");
        }
        assert_eq!(format!("{report}"), text);
        assert_eq!(Figures::new(1).report().service.service_level, None, "nothing to measure yet");
    }
}
