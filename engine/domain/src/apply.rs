//! The fold: `apply` turns one event into a change of state. It trusts
//! nothing: an event the state cannot explain (an offer to an agent in RONA,
//! an accept of a closed offer, an email transferred to an agent, a message
//! over its limit) is a [`Violation`], reported before anything changes.

use std::collections::{BTreeMap, BTreeSet};

use litemap::LiteMap;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::{transfer_requested, AgentStatus, Channel, Envelope, OfferKind, StateChangeCause};

use crate::channel;
use crate::invariants::Violation;
use crate::state::{
    Agent, Conference, Conversation, ConversationStatus, DomainState, Holding, Offer, Queue, Receipts, Role,
    ThreadMessage,
};

/// Builds violations that name the event being applied.
struct Blame<'a> {
    envelope: &'a Envelope,
}

impl Blame<'_> {
    fn fail<T>(&self, rule: &'static str, detail: impl Into<String>) -> Result<T, Violation> {
        Err(Violation {
            sequence: self.envelope.sequence,
            event_id: self.envelope.event_id.clone(),
            rule,
            detail: detail.into(),
        })
    }
}

impl DomainState {
    /// Folds one event into the state, or reports the rule it breaks and
    /// leaves the state as it was. Events of a kind this version does not
    /// know (written by a newer one) only advance the sequence.
    pub fn apply(&mut self, envelope: &Envelope) -> Result<(), Violation> {
        let blame = Blame { envelope };
        if envelope.domain != self.domain {
            return blame
                .fail("one domain per log", format!("event of domain {} in domain {}", envelope.domain, self.domain));
        }
        if envelope.sequence != self.last_sequence + 1 {
            return blame.fail(
                "gapless sequence",
                format!("expected sequence {}, found {}", self.last_sequence + 1, envelope.sequence),
            );
        }
        if let Some(event) = &envelope.event {
            self.apply_event(event, envelope.at_ms, envelope.sequence, &blame)?;
        }
        // After the event, which may itself concern a conversation that is
        // due to be forgotten: its decision saw the conversation.
        self.forget_closed_up_to(envelope.at_ms.saturating_sub(self.closed_retention_ms));
        self.last_sequence = envelope.sequence;
        self.last_at_ms = envelope.at_ms;
        Ok(())
    }

    fn apply_event(&mut self, event: &Event, at_ms: i64, sequence: u64, blame: &Blame) -> Result<(), Violation> {
        match event {
            Event::QueueConfigured(e) => {
                let Some(config) = &e.queue else {
                    return blame.fail("well-formed event", "queue configuration without a queue");
                };
                match self.queues.get_mut(&config.queue_id) {
                    Some(queue) => {
                        if queue.config.channel != config.channel && !queue.waiting.is_empty() {
                            return blame.fail(
                                "one channel per queue",
                                format!("queue {} changed channel with conversations waiting", config.queue_id),
                            );
                        }
                        queue.config = config.clone();
                    }
                    None => {
                        self.queues.insert(
                            config.queue_id.clone(),
                            Queue {
                                config: config.clone(),
                                waiting: BTreeSet::new(),
                                members: BTreeSet::new(),
                                last_offered: None,
                            },
                        );
                    }
                }
            }
            Event::AgentProfileConfigured(e) => {
                let Some(profile) = &e.profile else {
                    return blame.fail("well-formed event", "agent configuration without a profile");
                };
                if let Some(missing) = profile.queue_ids.iter().find(|q| !self.queues.contains_key(*q)) {
                    return blame
                        .fail("known queues", format!("agent {} names unknown queue {missing}", profile.agent_id));
                }
                let capacities: BTreeMap<i32, u32> = profile.capacities.iter().map(|c| (c.channel, c.max)).collect();
                let agent = self.agents.entry(profile.agent_id.clone()).or_insert_with(|| Agent {
                    name: String::new(),
                    capacities: BTreeMap::new(),
                    queues: BTreeSet::new(),
                    status: AgentStatus::LoggedOut,
                    idle_reason: String::new(),
                    free_since_ms: at_ms,
                    holdings: BTreeMap::new(),
                    loads: BTreeMap::new(),
                });
                let mut reduced = agent.clone();
                reduced.capacities = capacities.clone();
                if let Some(channel) = channel::ALL.into_iter().find(|c| reduced.load(*c) > reduced.capacity(*c)) {
                    return blame.fail(
                        "capacity per channel",
                        format!(
                            "agent {} capacity for {} below what they hold",
                            profile.agent_id,
                            channel::name(channel)
                        ),
                    );
                }
                let new_queues: BTreeSet<String> = profile.queue_ids.iter().cloned().collect();
                for old in agent.queues.difference(&new_queues) {
                    if let Some(queue) = self.queues.get_mut(old) {
                        queue.members.remove(&profile.agent_id);
                    }
                }
                for queue_id in &new_queues {
                    if let Some(queue) = self.queues.get_mut(queue_id) {
                        queue.members.insert(profile.agent_id.clone());
                    }
                }
                agent.name = profile.name.clone();
                agent.capacities = capacities;
                agent.queues = new_queues;
                self.refresh_free(&profile.agent_id);
            }
            Event::WrapUpReasonsConfigured(e) => self.wrap_up_reasons = e.reasons.clone(),
            Event::IdleReasonsConfigured(e) => self.idle_reasons = e.reasons.clone(),
            Event::TemplatesConfigured(e) => {
                if let Some(problem) = e.templates.iter().find_map(|t| crate::template::validate(t).err()) {
                    return blame.fail("well-formed templates", problem);
                }
                self.templates = e.templates.iter().map(|t| (t.template_id.clone(), t.clone())).collect();
            }
            Event::WorkflowsConfigured(e) => {
                self.workflows = e.workflows.iter().map(|w| (w.workflow_id.clone(), w.clone())).collect();
            }
            Event::RetentionConfigured(e) => {
                if e.closed_conversation_ms < 0 {
                    return blame.fail("retention", format!("negative retention {} ms", e.closed_conversation_ms));
                }
                self.closed_retention_ms = e.closed_conversation_ms;
            }
            Event::ConversationCreated(e) => {
                if self.conversations.contains_key(&e.conversation_id) {
                    return blame
                        .fail("unique conversations", format!("conversation {} created twice", e.conversation_id));
                }
                let Some(queue) = self.queues.get(&e.queue_id) else {
                    return blame.fail("known queues", format!("conversation created in unknown queue {}", e.queue_id));
                };
                if queue.config.channel != e.channel || channel::policy(e.channel()).is_none() {
                    return blame.fail(
                        "one channel per queue",
                        format!("{} conversation in queue {}", channel::name(e.channel()), e.queue_id),
                    );
                }
                self.conversations.insert(
                    e.conversation_id.clone(),
                    Box::new(Conversation {
                        channel: e.channel(),
                        queue_id: e.queue_id.clone(),
                        customer: e.customer.clone().unwrap_or_default(),
                        source: e.source.clone(),
                        subject: e.subject.clone(),
                        priority: e.priority,
                        arrived_at_ms: at_ms,
                        created_sequence: sequence,
                        // Not waiting yet: the ConversationQueued of the same command puts it there.
                        status: ConversationStatus::Queued,
                        owner: None,
                        conference: None,
                        wrapping_up: BTreeSet::new(),
                        first_accepted_at_ms: None,
                        external_ids: BTreeSet::new(),
                        agent_messages: LiteMap::new(),
                        customer_messages: 0,
                        thread: Vec::new(),
                        email: (e.channel() == Channel::Email).then(|| {
                            Box::new(crate::email::EmailThread {
                                customer_address: e.customer.as_ref().map(|c| c.email.clone()).unwrap_or_default(),
                                ..Default::default()
                            })
                        }),
                    }),
                );
            }
            Event::CustomerMessageReceived(e) => {
                let conversation = self.open_conversation(&e.conversation_id, blame)?;
                if !e.external_id.is_empty() && conversation.external_ids.contains(&e.external_id) {
                    return blame.fail("idempotent intake", format!("message {} recorded twice", e.external_id));
                }
                if !e.external_id.is_empty() {
                    conversation.external_ids.insert(e.external_id.clone());
                }
                conversation.customer_messages += 1;
                if let (Some(thread), Some(headers)) = (conversation.email.as_mut(), e.email.as_ref()) {
                    thread.record(headers, true);
                }
                conversation.thread.push(ThreadMessage {
                    message_id: e.message_id.clone(),
                    agent_id: None,
                    text: e.text.clone(),
                    attachments: e.attachments.clone(),
                    at_ms,
                });
            }
            Event::ConversationQueued(e) => {
                let Some(queue) = self.queues.get(&e.queue_id) else {
                    return blame.fail("known queues", format!("queued in unknown queue {}", e.queue_id));
                };
                let queue_channel = queue.config.channel;
                let conversation = self.open_conversation(&e.conversation_id, blame)?;
                if conversation.channel as i32 != queue_channel {
                    return blame.fail(
                        "one channel per queue",
                        format!("conversation {} queued in queue {} of another channel", e.conversation_id, e.queue_id),
                    );
                }
                if conversation.status != ConversationStatus::Queued {
                    return blame.fail(
                        "one place per conversation",
                        format!("conversation {} queued while {:?}", e.conversation_id, conversation.status),
                    );
                }
                let old_key = conversation.waiting_key(&e.conversation_id);
                if self.queues.values().any(|q| q.waiting.contains(&old_key)) {
                    return blame.fail(
                        "one place per conversation",
                        format!("conversation {} queued twice", e.conversation_id),
                    );
                }
                let conversation = self.conversations.get_mut(&e.conversation_id).expect("checked above");
                conversation.queue_id = e.queue_id.clone();
                let key = conversation.waiting_key(&e.conversation_id);
                self.queues.get_mut(&e.queue_id).expect("checked above").waiting.insert(key);
            }
            Event::ConversationOffered(e) => self.apply_offered(e, at_ms, blame)?,
            Event::OfferAccepted(e) => {
                let offer = self.close_offer(&e.offer_id, blame)?;
                if offer.agent_id != e.agent_id {
                    return blame.fail(
                        "offers accepted by their agent",
                        format!("offer {} to {} accepted by {}", e.offer_id, offer.agent_id, e.agent_id),
                    );
                }
                self.offers.remove(&e.offer_id);
                let role = if offer.kind == OfferKind::Conference { Role::Invitee } else { Role::Owner };
                self.agents
                    .get_mut(&offer.agent_id)
                    .expect("offer holder exists")
                    .holdings
                    .get_mut(&offer.conversation_id)
                    .expect("offer held")
                    .role = role;
                let conversation =
                    self.conversations.get_mut(&offer.conversation_id).expect("offered conversation exists");
                if offer.kind == OfferKind::Conference {
                    conversation.conference = Some(Conference::Joined { invitee: offer.agent_id });
                } else {
                    conversation.status = ConversationStatus::Active;
                    conversation.owner = Some(offer.agent_id);
                    conversation.first_accepted_at_ms.get_or_insert(at_ms);
                }
            }
            Event::OfferTimedOut(e) => self.end_offer(&e.offer_id, &e.agent_id, blame)?,
            Event::OfferWithdrawn(e) => self.end_offer(&e.offer_id, &e.agent_id, blame)?,
            Event::AgentStateChanged(e) => {
                let agent = self.agent_mut(&e.agent_id, blame)?;
                if agent.status != e.from() {
                    return blame.fail(
                        "agent state machine",
                        format!("agent {} changed from {:?} while {:?}", e.agent_id, e.from(), agent.status),
                    );
                }
                if e.to() == AgentStatus::Rona && e.cause() != StateChangeCause::NoAnswer {
                    return blame.fail(
                        "agent state machine",
                        format!("agent {} put in RONA without an unanswered offer", e.agent_id),
                    );
                }
                if e.to() == AgentStatus::Unspecified {
                    return blame.fail("well-formed event", "agent state changed to unspecified");
                }
                if e.to() == AgentStatus::LoggedOut && !agent.holdings.is_empty() {
                    return blame
                        .fail("nothing lost", format!("agent {} logged out holding conversations", e.agent_id));
                }
                agent.status = e.to();
                agent.idle_reason = if e.to() == AgentStatus::Idle { e.idle_reason.clone() } else { String::new() };
                if e.to() == AgentStatus::Available {
                    agent.free_since_ms = at_ms;
                }
                self.refresh_free(&e.agent_id);
            }
            Event::AgentMessageSent(e) => {
                let conversation = self.active_conversation_mut(&e.conversation_id, blame)?;
                let participant = conversation.owner.as_deref() == Some(e.agent_id.as_str())
                    || conversation.conference == Some(Conference::Joined { invitee: e.agent_id.clone() });
                if !participant {
                    return blame.fail(
                        "only participants write",
                        format!("agent {} wrote in conversation {} they are not in", e.agent_id, e.conversation_id),
                    );
                }
                let policy = channel::policy(conversation.channel).expect("conversations have a real channel");
                if let Some(limit) = policy.compose_limit {
                    let length = channel::message_length(&e.text);
                    if length > limit {
                        return blame.fail(
                            "compose limit",
                            format!("message {} of {length} characters over the {limit} limit", e.message_id),
                        );
                    }
                }
                if conversation.agent_messages.contains_key(&e.message_id) {
                    return blame.fail("unique messages", format!("message {} sent twice", e.message_id));
                }
                let conversation = self.conversations.get_mut(&e.conversation_id).expect("checked above");
                conversation.agent_messages.insert(e.message_id.clone(), Receipts::default());
                if let (Some(thread), Some(headers)) = (conversation.email.as_mut(), e.email.as_ref()) {
                    thread.record(headers, false);
                }
                conversation.thread.push(ThreadMessage {
                    message_id: e.message_id.clone(),
                    agent_id: Some(e.agent_id.clone()),
                    text: e.text.clone(),
                    attachments: e.attachments.clone(),
                    at_ms,
                });
            }
            Event::MessageDelivered(e) => self.receipt(&e.conversation_id, &e.message_id, false, blame)?,
            Event::MessageRead(e) => self.receipt(&e.conversation_id, &e.message_id, true, blame)?,
            Event::TransferRequested(e) => {
                let conversation = self.active_conversation_mut(&e.conversation_id, blame)?;
                if conversation.owner.as_deref() != Some(e.from_agent_id.as_str()) {
                    return blame.fail(
                        "only the owner transfers",
                        format!("{} transferred {} without owning it", e.from_agent_id, e.conversation_id),
                    );
                }
                if conversation.conference.is_some() {
                    return blame.fail(
                        "transfer outside conference",
                        format!("conversation {} transferred during a conference", e.conversation_id),
                    );
                }
                if matches!(e.target, Some(transfer_requested::Target::ToAgentId(_)))
                    && conversation.channel == Channel::Email
                {
                    return blame.fail(
                        "email to queues only",
                        format!("email conversation {} transferred to an agent", e.conversation_id),
                    );
                }
                let conversation = self.conversations.get_mut(&e.conversation_id).expect("checked above");
                // The owner leaves (their WrapUpStarted follows); the
                // conversation waits for the queue or the target agent.
                conversation.owner = None;
                conversation.status = ConversationStatus::Queued;
            }
            Event::TransferCompleted(_) | Event::TransferFailed(_) | Event::ConferenceJoined(_) => {
                // Facts for the audit trail: the state changed with the
                // OfferAccepted, OfferTimedOut or ConversationQueued beside them.
            }
            Event::ConferenceRequested(e) => {
                let conversation = self.active_conversation_mut(&e.conversation_id, blame)?;
                if !channel::policy(conversation.channel).expect("real channel").conference {
                    return blame.fail(
                        "no conference on email",
                        format!(
                            "conference requested on {} conversation {}",
                            channel::name(conversation.channel),
                            e.conversation_id
                        ),
                    );
                }
                if conversation.owner.as_deref() != Some(e.owner_agent_id.as_str()) || conversation.conference.is_some()
                {
                    return blame.fail(
                        "one conference by the owner",
                        format!("conference on {} requested by {}", e.conversation_id, e.owner_agent_id),
                    );
                }
                let channel = conversation.channel;
                if !e.queue_id.is_empty() {
                    if !channel::policy(channel).expect("real channel").conference_from_queue {
                        return blame.fail(
                            "conference from a queue on WhatsApp only",
                            format!(
                                "{} conversation {} conferenced from a queue",
                                channel::name(channel),
                                e.conversation_id
                            ),
                        );
                    }
                    let member = self.agents.get(&e.invitee_agent_id).is_some_and(|a| a.queues.contains(&e.queue_id));
                    let Some(queue) = self.queues.get_mut(&e.queue_id).filter(|q| q.channel() == channel) else {
                        return blame.fail(
                            "offers from the queue",
                            format!("invitee picked from {}, no {} queue", e.queue_id, channel::name(channel)),
                        );
                    };
                    if !member {
                        return blame.fail(
                            "offers to queue members",
                            format!("agent {} is not a member of {}", e.invitee_agent_id, e.queue_id),
                        );
                    }
                    // The queue's turn moves on as for any offer it makes.
                    queue.last_offered = Some(e.invitee_agent_id.clone());
                }
                let conversation = self.conversations.get_mut(&e.conversation_id).expect("checked above");
                conversation.conference =
                    Some(Conference::Requested { invitee: e.invitee_agent_id.clone(), offer_id: String::new() });
            }
            Event::ConferenceLeft(e) => {
                let conversation = self.active_conversation_mut(&e.conversation_id, blame)?;
                if conversation.conference != Some(Conference::Joined { invitee: e.agent_id.clone() }) {
                    return blame.fail(
                        "only the invitee leaves",
                        format!("{} left a conference of {} they had not joined", e.agent_id, e.conversation_id),
                    );
                }
                self.conversations.get_mut(&e.conversation_id).expect("checked above").conference = None;
            }
            Event::ConferenceEnded(e) => {
                let conversation = self.active_conversation_mut(&e.conversation_id, blame)?;
                if conversation.owner.as_deref() != Some(e.owner_agent_id.as_str())
                    || !matches!(conversation.conference, Some(Conference::Joined { .. }))
                {
                    return blame.fail(
                        "only the owner ends a conference",
                        format!("{} ended the conference of {}", e.owner_agent_id, e.conversation_id),
                    );
                }
                // The invitee's WrapUpStarted, in the same command, closes it.
            }
            Event::ConversationEnded(e) => {
                let conversation = self.open_conversation(&e.conversation_id, blame)?;
                if let ConversationStatus::Offered(offer_id) = &conversation.status {
                    return blame.fail(
                        "every offer ends once",
                        format!("conversation {} ended with offer {offer_id} open", e.conversation_id),
                    );
                }
                if let Some(Conference::Requested { offer_id, .. }) = &conversation.conference {
                    return blame.fail(
                        "every offer ends once",
                        format!("conversation {} ended with invitation {offer_id} open", e.conversation_id),
                    );
                }
                let key = conversation.waiting_key(&e.conversation_id);
                let queue_id = conversation.queue_id.clone();
                conversation.status = ConversationStatus::Ended;
                // Participants stay until their WrapUpStarted of the same command.
                let has_participants = conversation.owner.is_some() || conversation.conference.is_some();
                if let Some(queue) = self.queues.get_mut(&queue_id) {
                    queue.waiting.remove(&key);
                }
                if !has_participants {
                    self.note_if_closed(&e.conversation_id, at_ms);
                }
            }
            Event::WrapUpStarted(e) => {
                let holding = self.agent_mut(&e.agent_id, blame)?.holdings.get(&e.conversation_id).cloned();
                if !matches!(holding.map(|h| h.role), Some(Role::Owner | Role::Invitee)) {
                    return blame.fail(
                        "wrap-up after taking part",
                        format!("agent {} starts wrap-up of {} without taking part", e.agent_id, e.conversation_id),
                    );
                }
                let Some(conversation) = self.conversations.get_mut(&e.conversation_id) else {
                    return blame.fail("known conversations", format!("unknown conversation {}", e.conversation_id));
                };
                if conversation.owner.as_deref() == Some(e.agent_id.as_str()) {
                    conversation.owner = None;
                }
                if conversation.conference == Some(Conference::Joined { invitee: e.agent_id.clone() }) {
                    conversation.conference = None;
                }
                conversation.wrapping_up.insert(e.agent_id.clone());
                let queue_id = conversation.queue_id.clone();
                let agent = self.agents.get_mut(&e.agent_id).expect("checked above");
                agent.holdings.get_mut(&e.conversation_id).expect("checked above").role =
                    Role::WrapUp { since_ms: at_ms, queue_id };
            }
            Event::WrapUpSubmitted(e) => {
                let agent = self.agent_mut(&e.agent_id, blame)?;
                if !matches!(agent.holdings.get(&e.conversation_id).map(|h| &h.role), Some(Role::WrapUp { .. })) {
                    return blame.fail(
                        "wrap-up once",
                        format!("agent {} submitted a wrap-up for {} they do not owe", e.agent_id, e.conversation_id),
                    );
                }
                if !e.automatic {
                    if e.reasons.is_empty() {
                        return blame
                            .fail("wrap-up reasons", format!("wrap-up of {} without a reason", e.conversation_id));
                    }
                    if let Some(unknown) =
                        e.reasons.iter().find(|r| !self.wrap_up_reasons.is_empty() && !self.wrap_up_reasons.contains(r))
                    {
                        return blame.fail("wrap-up reasons", format!("unknown wrap-up reason {unknown:?}"));
                    }
                }
                let agent = self.agents.get_mut(&e.agent_id).expect("checked above");
                agent.release(&e.conversation_id);
                agent.free_since_ms = at_ms;
                self.refresh_free(&e.agent_id);
                if let Some(conversation) = self.conversations.get_mut(&e.conversation_id) {
                    conversation.wrapping_up.remove(&e.agent_id);
                }
                self.note_if_closed(&e.conversation_id, at_ms);
            }
            Event::WorkflowTriggered(e) => {
                let conversation = self.active_conversation_mut(&e.conversation_id, blame)?;
                let participant = conversation.owner.as_deref() == Some(e.agent_id.as_str())
                    || conversation.conference == Some(Conference::Joined { invitee: e.agent_id.clone() });
                if !participant {
                    return blame.fail(
                        "only participants act",
                        format!("agent {} triggered a workflow in {}", e.agent_id, e.conversation_id),
                    );
                }
            }
            Event::AnnouncementPosted(_) => {}
        }
        Ok(())
    }

    fn apply_offered(
        &mut self,
        e: &switchboard_proto::v1::ConversationOffered,
        _at_ms: i64,
        blame: &Blame,
    ) -> Result<(), Violation> {
        if self.offers.contains_key(&e.offer_id) {
            return blame.fail("unique offers", format!("offer {} made twice", e.offer_id));
        }
        let conversation = self.open_conversation(&e.conversation_id, blame)?;
        let channel = conversation.channel;
        let key = conversation.waiting_key(&e.conversation_id);
        let status = conversation.status.clone();
        let conference = conversation.conference.clone();
        let Some(agent) = self.agents.get(&e.agent_id) else {
            return blame.fail("known agents", format!("offer to unknown agent {}", e.agent_id));
        };
        if agent.status != AgentStatus::Available {
            return blame.fail(
                "offers only to Available agents",
                format!("offer {} to agent {} in {:?}", e.offer_id, e.agent_id, agent.status),
            );
        }
        if agent.load(channel) >= agent.capacity(channel) {
            return blame
                .fail("capacity per channel", format!("offer {} to agent {} at capacity", e.offer_id, e.agent_id));
        }
        if agent.holdings.contains_key(&e.conversation_id) {
            return blame.fail(
                "one part per agent",
                format!("offer {} to agent {} who already takes part", e.offer_id, e.agent_id),
            );
        }
        let in_queue = self.queues.get(&e.queue_id).is_some_and(|q| q.waiting.contains(&key));
        match e.kind() {
            OfferKind::Routed => {
                if status != ConversationStatus::Queued || !in_queue {
                    return blame.fail(
                        "offers from the queue",
                        format!(
                            "routed offer {} of {} which does not wait in {}",
                            e.offer_id, e.conversation_id, e.queue_id
                        ),
                    );
                }
                if !agent.queues.contains(&e.queue_id) {
                    return blame.fail(
                        "offers to queue members",
                        format!("agent {} is not a member of {}", e.agent_id, e.queue_id),
                    );
                }
            }
            OfferKind::Transfer => {
                if channel == Channel::Email {
                    return blame.fail(
                        "email to queues only",
                        format!(
                            "email conversation {} offered to agent {} as a transfer",
                            e.conversation_id, e.agent_id
                        ),
                    );
                }
                if status != ConversationStatus::Queued || self.queues.values().any(|q| q.waiting.contains(&key)) {
                    return blame.fail(
                        "one place per conversation",
                        format!("transfer offer {} of {} not being transferred", e.offer_id, e.conversation_id),
                    );
                }
            }
            OfferKind::Conference => {
                let requested = matches!(&conference, Some(Conference::Requested { invitee, offer_id }) if invitee == &e.agent_id && offer_id.is_empty());
                if status != ConversationStatus::Active || !requested {
                    return blame
                        .fail("one invitee", format!("conference offer {} without a matching request", e.offer_id));
                }
            }
            OfferKind::Unspecified => return blame.fail("well-formed event", "offer of unspecified kind"),
        }
        let conversation = self.conversations.get_mut(&e.conversation_id).expect("checked above");
        if e.kind() == OfferKind::Conference {
            conversation.conference =
                Some(Conference::Requested { invitee: e.agent_id.clone(), offer_id: e.offer_id.clone() });
        } else {
            conversation.status = ConversationStatus::Offered(e.offer_id.clone());
        }
        if let Some(queue) = self.queues.get_mut(&e.queue_id) {
            if e.kind() == OfferKind::Routed {
                queue.waiting.remove(&key);
                queue.last_offered = Some(e.agent_id.clone());
            }
        }
        self.agents
            .get_mut(&e.agent_id)
            .expect("checked above")
            .hold(e.conversation_id.clone(), Holding { channel, role: Role::Offered(e.offer_id.clone()) });
        self.refresh_free(&e.agent_id);
        self.offers.insert(
            e.offer_id.clone(),
            Offer {
                conversation_id: e.conversation_id.clone(),
                agent_id: e.agent_id.clone(),
                kind: e.kind(),
                deadline_ms: e.deadline_ms,
            },
        );
        self.offers_made += 1;
        Ok(())
    }

    /// Checks that an offer is open, without closing it yet.
    fn close_offer(&self, offer_id: &str, blame: &Blame) -> Result<Offer, Violation> {
        match self.offers.get(offer_id) {
            Some(offer) => Ok(offer.clone()),
            None => blame.fail("every offer ends once", format!("offer {offer_id} is not open")),
        }
    }

    /// An offer that ends without an accept: the agent lets go of it, and the
    /// conversation waits for what the same command decides (queue, drop, end).
    fn end_offer(&mut self, offer_id: &str, agent_id: &str, blame: &Blame) -> Result<(), Violation> {
        let offer = self.close_offer(offer_id, blame)?;
        if offer.agent_id != agent_id {
            return blame
                .fail("every offer ends once", format!("offer {offer_id} to {} ended for {agent_id}", offer.agent_id));
        }
        self.offers.remove(offer_id);
        self.agents.get_mut(&offer.agent_id).expect("offer holder exists").release(&offer.conversation_id);
        self.refresh_free(&offer.agent_id);
        let conversation = self.conversations.get_mut(&offer.conversation_id).expect("offered conversation exists");
        if offer.kind == OfferKind::Conference {
            conversation.conference = None;
        } else {
            conversation.status = ConversationStatus::Queued;
        }
        Ok(())
    }

    fn receipt(&mut self, conversation_id: &str, message_id: &str, read: bool, blame: &Blame) -> Result<(), Violation> {
        let Some(conversation) = self.conversations.get_mut(conversation_id) else {
            return blame.fail("known conversations", format!("receipt for unknown conversation {conversation_id}"));
        };
        let policy = channel::policy(conversation.channel).expect("real channel");
        if (read && !policy.read_receipts) || (!read && !policy.delivery_receipts) {
            return blame.fail(
                "receipts per channel",
                format!(
                    "{} receipt on {}",
                    if read { "read" } else { "delivery" },
                    channel::name(conversation.channel)
                ),
            );
        }
        let Some(receipts) = conversation.agent_messages.get_mut(message_id) else {
            return blame.fail("known messages", format!("receipt for unknown message {message_id}"));
        };
        if read {
            receipts.read = true;
        } else {
            receipts.delivered = true;
        }
        Ok(())
    }

    fn open_conversation(&mut self, conversation_id: &str, blame: &Blame) -> Result<&mut Conversation, Violation> {
        match self.conversations.get_mut(conversation_id) {
            None => blame.fail("known conversations", format!("unknown conversation {conversation_id}")),
            Some(c) if c.status == ConversationStatus::Ended => {
                blame.fail("nothing after the end", format!("conversation {conversation_id} has ended"))
            }
            Some(c) => Ok(c),
        }
    }

    fn active_conversation_mut(
        &mut self,
        conversation_id: &str,
        blame: &Blame,
    ) -> Result<&mut Conversation, Violation> {
        let conversation = self.open_conversation(conversation_id, blame)?;
        if conversation.status != ConversationStatus::Active {
            return blame.fail("active conversations only", format!("conversation {conversation_id} is not active"));
        }
        Ok(conversation)
    }

    fn agent_mut(&mut self, agent_id: &str, blame: &Blame) -> Result<&mut Agent, Violation> {
        match self.agents.get_mut(agent_id) {
            Some(agent) => Ok(agent),
            None => blame.fail("known agents", format!("unknown agent {agent_id}")),
        }
    }

    /// A closed conversation keeps its place in the state (so the invariant
    /// "none is lost" can be checked) and its agent messages (channels send
    /// receipts late), but not the sender ids of customer messages: no
    /// customer message is taken after the end.
    /// Once a conversation is closed, drops what only an open one needs
    /// and puts it in line for the retention.
    fn note_if_closed(&mut self, conversation_id: &str, at_ms: i64) {
        if let Some(conversation) = self.conversations.get_mut(conversation_id) {
            if conversation.status == ConversationStatus::Ended && conversation.wrapping_up.is_empty() {
                conversation.external_ids.clear();
                // Nobody takes a closed conversation over; its messages stay
                // in the log, and memory holds only the open ones' threads.
                conversation.thread = Vec::new();
                self.closed.insert((at_ms, conversation_id.to_owned()));
            }
        }
    }

    /// Forgets the conversations that closed at or before `cutoff_ms`, when
    /// a retention is set.
    fn forget_closed_up_to(&mut self, cutoff_ms: i64) {
        if self.closed_retention_ms == 0 {
            return;
        }
        while let Some((closed_at_ms, _)) = self.closed.first() {
            if *closed_at_ms > cutoff_ms {
                break;
            }
            let (_, conversation_id) = self.closed.pop_first().expect("looked at above");
            self.conversations.remove(&conversation_id);
        }
    }
}
