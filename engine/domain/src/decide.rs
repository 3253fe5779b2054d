//! Deciding: a command is checked against the state, then turned into
//! events. Every check runs before the first event is emitted, so a
//! rejected command changes nothing. After the command's own events,
//! routing offers whatever can now be offered.

use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::*;

use crate::channel;
use crate::rejection::Rejection;
use crate::routing;
use crate::state::{Conference, ConversationStatus, DomainState, Role};

/// Collects the events of one command, folding each into the state as it
/// is emitted so that the next decision sees it.
struct Emitter<'a> {
    state: &'a mut DomainState,
    command_id: &'a str,
    at_ms: i64,
    events: Vec<Envelope>,
}

impl Emitter<'_> {
    fn emit(&mut self, event: Event) -> Result<(), Rejection> {
        let sequence = self.state.last_sequence + 1;
        let envelope = Envelope {
            domain: self.state.domain.clone(),
            sequence,
            event_id: format!("{}/{sequence}", self.state.domain),
            at_ms: self.at_ms,
            command_id: self.command_id.to_owned(),
            event: Some(event),
        };
        self.state.apply(&envelope).map_err(|v| Rejection::Internal(Box::new(v)))?;
        self.events.push(envelope);
        Ok(())
    }
}

fn required(value: &str, what: &str) -> Result<(), Rejection> {
    if value.is_empty() {
        Err(Rejection::Invalid(format!("{what} is required")))
    } else {
        Ok(())
    }
}

impl DomainState {
    /// Decides `command` against the state: on success the returned events
    /// (possibly none, for a repeated idempotent command) have been applied;
    /// on rejection nothing changed.
    pub fn execute(&mut self, command: &Command) -> Result<Vec<Envelope>, Rejection> {
        if command.domain != self.domain {
            return Err(Rejection::WrongDomain { command: command.domain.clone(), state: self.domain.clone() });
        }
        required(&command.command_id, "command_id")?;
        if command.at_ms < self.last_at_ms {
            return Err(Rejection::TimeWentBack { at_ms: command.at_ms, last_ms: self.last_at_ms });
        }
        let Some(body) = &command.command else {
            return Err(Rejection::Invalid("the command is empty (unknown kind?)".into()));
        };
        let mut out =
            Emitter { state: self, command_id: &command.command_id, at_ms: command.at_ms, events: Vec::new() };
        decide(&mut out, body)?;
        while let Some(choice) = routing::next_choice(out.state) {
            let timeout = out.state.queues[&choice.queue_id].config.offer_timeout_ms;
            let offer_id = out.state.next_offer_id();
            out.emit(Event::ConversationOffered(ConversationOffered {
                offer_id,
                conversation_id: choice.conversation_id,
                agent_id: choice.agent_id,
                queue_id: choice.queue_id,
                kind: OfferKind::Routed as i32,
                deadline_ms: out.at_ms.saturating_add(timeout as i64),
                decision: Some(choice.decision),
            }))?;
        }
        Ok(out.events)
    }

    fn next_offer_id(&self) -> String {
        format!("{}-o{}", self.domain, self.offers_made + 1)
    }

    fn known_agent(&self, agent_id: &str) -> Result<&crate::state::Agent, Rejection> {
        self.agents.get(agent_id).ok_or_else(|| Rejection::UnknownAgent(agent_id.to_owned()))
    }

    fn known_conversation(&self, conversation_id: &str) -> Result<&crate::state::Conversation, Rejection> {
        self.conversations
            .get(conversation_id)
            .map(|conversation| &**conversation)
            .ok_or_else(|| Rejection::UnknownConversation(conversation_id.to_owned()))
    }

    /// The conversation, which must be active and owned by `agent_id`.
    fn owned_conversation(
        &self,
        agent_id: &str,
        conversation_id: &str,
    ) -> Result<&crate::state::Conversation, Rejection> {
        self.known_agent(agent_id)?;
        let conversation = self.active_conversation(conversation_id)?;
        if conversation.owner.as_deref() != Some(agent_id) {
            return Err(Rejection::NotOwner {
                agent_id: agent_id.to_owned(),
                conversation_id: conversation_id.to_owned(),
            });
        }
        Ok(conversation)
    }

    fn active_conversation(&self, conversation_id: &str) -> Result<&crate::state::Conversation, Rejection> {
        let conversation = self.known_conversation(conversation_id)?;
        match conversation.status {
            ConversationStatus::Ended => Err(Rejection::ConversationEnded(conversation_id.to_owned())),
            ConversationStatus::Active => Ok(conversation),
            _ => Err(Rejection::ConversationNotActive(conversation_id.to_owned())),
        }
    }

    /// The conversation, active, with `agent_id` as owner or joined invitee.
    fn participating(&self, agent_id: &str, conversation_id: &str) -> Result<&crate::state::Conversation, Rejection> {
        self.known_agent(agent_id)?;
        let conversation = self.active_conversation(conversation_id)?;
        let invitee = conversation.conference == Some(Conference::Joined { invitee: agent_id.to_owned() });
        if conversation.owner.as_deref() != Some(agent_id) && !invitee {
            return Err(Rejection::NotParticipant {
                agent_id: agent_id.to_owned(),
                conversation_id: conversation_id.to_owned(),
            });
        }
        Ok(conversation)
    }

    /// The text an agent message goes out with: as written, or from its
    /// template (rendered when no text is given; a locked one only as
    /// rendered).
    fn message_text(&self, c: &SendAgentMessage, channel: Channel) -> Result<String, Rejection> {
        if c.template_id.is_empty() {
            if !c.template_parameters.is_empty() {
                return Err(Rejection::Invalid("template_parameters without a template_id".into()));
            }
            return Ok(c.text.clone());
        }
        let template =
            self.templates.get(&c.template_id).ok_or_else(|| Rejection::UnknownTemplate(c.template_id.clone()))?;
        if !template.channels.is_empty() && !template.channels.contains(&(channel as i32)) {
            return Err(Rejection::Template {
                template_id: c.template_id.clone(),
                problem: format!("it is not for {} conversations", channel::name(channel)),
            });
        }
        // An unlocked template the agent edited is sent as edited: the
        // desktop may have filled its parameters in already.
        if !c.text.is_empty() && !template.locked {
            return Ok(c.text.clone());
        }
        let rendered = self.render_template(template, &c.agent_id, &c.conversation_id, &c.template_parameters)?;
        if !c.text.is_empty() && c.text != rendered {
            return Err(Rejection::Template {
                template_id: c.template_id.clone(),
                problem: "it is locked: send its text as rendered (or no text, and the engine renders it)".into(),
            });
        }
        Ok(rendered)
    }

    /// The invitee `queue_id`'s strategy picks for a conference in
    /// `conversation_id`, on a channel that allows picking from a queue.
    fn conference_from_queue(
        &self,
        queue_id: &str,
        conversation_id: &str,
        channel: Channel,
    ) -> Result<routing::Choice, Rejection> {
        if !channel::policy(channel).expect("real channel").conference_from_queue {
            return Err(Rejection::NotAllowedOnChannel {
                channel: channel::name(channel),
                what: "conference invitations to a queue",
            });
        }
        let (queue_id, queue) =
            self.queues.get_key_value(queue_id).ok_or_else(|| Rejection::UnknownQueue(queue_id.to_owned()))?;
        if queue.channel() != channel {
            return Err(Rejection::ChannelMismatch {
                queue_id: queue_id.clone(),
                queue_channel: channel::name(queue.channel()),
                channel: channel::name(channel),
            });
        }
        routing::choose_agent(self, queue_id, queue, conversation_id)
            .ok_or_else(|| Rejection::NoAgentAvailable { queue_id: queue_id.clone() })
    }

    /// Checks that `agent_id` could be offered `conversation_id` directly.
    fn direct_target(&self, agent_id: &str, conversation_id: &str, channel: Channel) -> Result<(), Rejection> {
        let agent = self.known_agent(agent_id)?;
        let unavailable = |reason: String| Err(Rejection::TargetUnavailable { agent_id: agent_id.to_owned(), reason });
        if agent.holdings.contains_key(conversation_id) {
            return unavailable("already takes part in the conversation".into());
        }
        if agent.status != AgentStatus::Available {
            return unavailable(format!("agent is {}", status_name(agent.status)));
        }
        if agent.load(channel) >= agent.capacity(channel) {
            return unavailable(format!(
                "no free {} capacity ({} of {})",
                channel::name(channel),
                agent.load(channel),
                agent.capacity(channel)
            ));
        }
        Ok(())
    }
}

/// A lowercase name of an agent status for messages.
pub(crate) fn status_name(status: AgentStatus) -> &'static str {
    match status {
        AgentStatus::Unspecified => "unspecified",
        AgentStatus::LoggedOut => "logged out",
        AgentStatus::Available => "available",
        AgentStatus::Idle => "idle",
        AgentStatus::Rona => "in RONA",
    }
}

fn decide(out: &mut Emitter, command: &C) -> Result<(), Rejection> {
    let state = &*out.state;
    match command {
        C::ConfigureQueue(c) => {
            let queue = c.queue.clone().ok_or_else(|| Rejection::Invalid("queue is required".into()))?;
            required(&queue.queue_id, "queue_id")?;
            if channel::policy(queue.channel()).is_none() {
                return Err(Rejection::Invalid(format!("queue {} needs a channel", queue.queue_id)));
            }
            if matches!(queue.strategy(), RoutingStrategy::Unspecified | RoutingStrategy::Direct) {
                return Err(Rejection::Invalid(format!(
                    "queue {} needs a routing strategy (longest available, round robin or least occupied)",
                    queue.queue_id
                )));
            }
            if queue.offer_timeout_ms == 0 {
                return Err(Rejection::Invalid(format!("queue {} needs an offer timeout above zero", queue.queue_id)));
            }
            if queue.transfer_timeout_policy() == TransferTimeoutPolicy::Unspecified {
                return Err(Rejection::Invalid(format!(
                    "queue {} needs a transfer timeout policy (drop or requeue)",
                    queue.queue_id
                )));
            }
            if let Some(existing) = state.queues.get(&queue.queue_id) {
                if existing.config.channel != queue.channel && !existing.waiting.is_empty() {
                    return Err(Rejection::Configuration(format!(
                        "queue {} has conversations waiting: its channel cannot change",
                        queue.queue_id
                    )));
                }
            }
            out.emit(Event::QueueConfigured(QueueConfigured { queue: Some(queue) }))
        }
        C::ConfigureAgent(c) => {
            let profile = c.profile.clone().ok_or_else(|| Rejection::Invalid("profile is required".into()))?;
            required(&profile.agent_id, "agent_id")?;
            if let Some(unknown) = profile.queue_ids.iter().find(|q| !state.queues.contains_key(*q)) {
                return Err(Rejection::UnknownQueue(unknown.clone()));
            }
            if profile.capacities.iter().any(|c| channel::policy(c.channel()).is_none()) {
                return Err(Rejection::Invalid(format!(
                    "agent {} has a capacity for an unspecified channel",
                    profile.agent_id
                )));
            }
            if let Some(agent) = state.agents.get(&profile.agent_id) {
                for channel in channel::ALL {
                    let capacity = profile
                        .capacities
                        .iter()
                        .filter(|c| c.channel() == channel)
                        .map(|c| c.max)
                        .next_back()
                        .unwrap_or(0);
                    if agent.load(channel) > capacity {
                        return Err(Rejection::Configuration(format!(
                            "agent {} holds {} {} conversations: capacity cannot drop to {capacity}",
                            profile.agent_id,
                            agent.load(channel),
                            channel::name(channel)
                        )));
                    }
                }
            }
            out.emit(Event::AgentProfileConfigured(AgentProfileConfigured { profile: Some(profile) }))
        }
        C::ConfigureWrapUpReasons(c) => {
            if c.reasons.iter().any(String::is_empty) {
                return Err(Rejection::Invalid("wrap-up reasons cannot be empty".into()));
            }
            out.emit(Event::WrapUpReasonsConfigured(WrapUpReasonsConfigured { reasons: c.reasons.clone() }))
        }
        C::ConfigureIdleReasons(c) => {
            if c.reasons.iter().any(String::is_empty) {
                return Err(Rejection::Invalid("idle reasons cannot be empty".into()));
            }
            out.emit(Event::IdleReasonsConfigured(IdleReasonsConfigured { reasons: c.reasons.clone() }))
        }
        C::ConfigureTemplates(c) => {
            for template in &c.templates {
                crate::template::validate(template).map_err(Rejection::Invalid)?;
            }
            listed_once("template", c.templates.iter().map(|t| &t.template_id))?;
            out.emit(Event::TemplatesConfigured(TemplatesConfigured { templates: c.templates.clone() }))
        }
        C::ConfigureWorkflows(c) => {
            let named = |w: &Workflow| !w.workflow_id.is_empty() && !w.parameters.iter().any(String::is_empty);
            if !c.workflows.iter().all(named) {
                return Err(Rejection::Invalid("a workflow needs an id, and its parameters names".into()));
            }
            listed_once("workflow", c.workflows.iter().map(|w| &w.workflow_id))?;
            out.emit(Event::WorkflowsConfigured(WorkflowsConfigured { workflows: c.workflows.clone() }))
        }
        C::ConfigureRetention(c) => {
            if c.closed_conversation_ms < 0 {
                return Err(Rejection::Invalid(format!(
                    "closed_conversation_ms must be 0 (keep forever) or more, not {}",
                    c.closed_conversation_ms
                )));
            }
            out.emit(Event::RetentionConfigured(RetentionConfigured {
                closed_conversation_ms: c.closed_conversation_ms,
            }))
        }
        C::ReceiveCustomerMessage(c) => receive_customer_message(out, c),
        C::CustomerLeave(c) => {
            let conversation = state.known_conversation(&c.conversation_id)?;
            if conversation.status == ConversationStatus::Ended {
                return Err(Rejection::ConversationEnded(c.conversation_id.clone()));
            }
            end_conversation(out, &c.conversation_id, EndedBy::Customer, "", WithdrawReason::CustomerLeft)
        }
        C::SetAgentState(c) => set_agent_state(out, c),
        C::AcceptOffer(c) => {
            state.known_agent(&c.agent_id)?;
            let offer =
                state.offers.get(&c.offer_id).ok_or_else(|| Rejection::OfferNotOpen(c.offer_id.clone()))?.clone();
            if offer.agent_id != c.agent_id {
                return Err(Rejection::NotYourOffer { offer_id: c.offer_id.clone(), agent_id: c.agent_id.clone() });
            }
            out.emit(Event::OfferAccepted(OfferAccepted {
                offer_id: c.offer_id.clone(),
                conversation_id: offer.conversation_id.clone(),
                agent_id: c.agent_id.clone(),
                kind: offer.kind as i32,
            }))?;
            match offer.kind {
                OfferKind::Transfer => out.emit(Event::TransferCompleted(TransferCompleted {
                    conversation_id: offer.conversation_id,
                    target: Some(transfer_completed::Target::ToAgentId(c.agent_id.clone())),
                })),
                OfferKind::Conference => out.emit(Event::ConferenceJoined(ConferenceJoined {
                    conversation_id: offer.conversation_id,
                    agent_id: c.agent_id.clone(),
                })),
                _ => Ok(()),
            }
        }
        C::ExpireOffer(c) => expire_offer(out, &c.offer_id),
        C::SendAgentMessage(c) => {
            required(&c.message_id, "message_id")?;
            let conversation = state.participating(&c.agent_id, &c.conversation_id)?;
            if conversation.agent_messages.contains_key(&c.message_id) {
                return Ok(()); // A retried send: already recorded.
            }
            let policy = channel::policy(conversation.channel).expect("real channel");
            let text = state.message_text(c, conversation.channel)?;
            if let Some(limit) = policy.compose_limit {
                let length = channel::message_length(&text);
                if length > limit {
                    return Err(Rejection::MessageTooLong {
                        channel: channel::name(conversation.channel),
                        limit,
                        length,
                    });
                }
            }
            if text.is_empty() && c.attachments.is_empty() {
                return Err(Rejection::Invalid("a message needs text or an attachment".into()));
            }
            check_attachments(conversation.channel, &c.attachments)?;
            // Email headers follow the reply rules; other channels have none.
            let email = match &conversation.email {
                Some(thread) => Some(thread.compose(c.email.as_ref(), &c.message_id)?),
                None => None,
            };
            out.emit(Event::AgentMessageSent(AgentMessageSent {
                conversation_id: c.conversation_id.clone(),
                agent_id: c.agent_id.clone(),
                message_id: c.message_id.clone(),
                text,
                attachments: c.attachments.clone(),
                template_id: c.template_id.clone(),
                email,
            }))
        }
        C::RecordReceipt(c) => {
            let conversation = state.known_conversation(&c.conversation_id)?;
            let policy = channel::policy(conversation.channel).expect("real channel");
            let name = channel::name(conversation.channel);
            if c.read && !policy.read_receipts {
                return Err(Rejection::NotAllowedOnChannel { channel: name, what: "read receipts" });
            }
            if !c.read && !policy.delivery_receipts {
                return Err(Rejection::NotAllowedOnChannel { channel: name, what: "delivery receipts" });
            }
            let receipts = conversation.agent_messages.get(&c.message_id).ok_or_else(|| Rejection::UnknownMessage {
                conversation_id: c.conversation_id.clone(),
                message_id: c.message_id.clone(),
            })?;
            let (conversation_id, message_id) = (c.conversation_id.clone(), c.message_id.clone());
            match (c.read, receipts.read, receipts.delivered) {
                (true, true, _) | (false, _, true) => Ok(()), // Channels repeat receipts.
                (true, false, _) => out.emit(Event::MessageRead(MessageRead { conversation_id, message_id })),
                (false, _, false) => {
                    out.emit(Event::MessageDelivered(MessageDelivered { conversation_id, message_id }))
                }
            }
        }
        C::Transfer(c) => transfer(out, c),
        C::RequestConference(c) => {
            let conversation = state.owned_conversation(&c.agent_id, &c.conversation_id)?;
            let channel = conversation.channel;
            if !channel::policy(channel).expect("real channel").conference {
                return Err(Rejection::NotAllowedOnChannel { channel: channel::name(channel), what: "conferences" });
            }
            if conversation.conference.is_some() {
                return Err(Rejection::ConferenceInProgress(c.conversation_id.clone()));
            }
            let (invitee, from_queue, decision, queue_id) =
                match (c.invitee_agent_id.is_empty(), c.invitee_queue_id.is_empty()) {
                    (false, true) => {
                        state.direct_target(&c.invitee_agent_id, &c.conversation_id, channel)?;
                        let decision = state.direct_decision(&c.invitee_agent_id, channel);
                        (c.invitee_agent_id.clone(), String::new(), decision, conversation.queue_id.clone())
                    }
                    (true, false) => {
                        let choice = state.conference_from_queue(&c.invitee_queue_id, &c.conversation_id, channel)?;
                        (choice.agent_id, choice.queue_id.clone(), choice.decision, choice.queue_id)
                    }
                    _ => {
                        return Err(Rejection::Invalid(
                            "name exactly one of invitee_agent_id and invitee_queue_id".into(),
                        ))
                    }
                };
            let timeout = state.queues[&queue_id].config.offer_timeout_ms;
            let offer_id = state.next_offer_id();
            out.emit(Event::ConferenceRequested(ConferenceRequested {
                conversation_id: c.conversation_id.clone(),
                owner_agent_id: c.agent_id.clone(),
                invitee_agent_id: invitee.clone(),
                queue_id: from_queue,
            }))?;
            out.emit(Event::ConversationOffered(ConversationOffered {
                offer_id,
                conversation_id: c.conversation_id.clone(),
                agent_id: invitee,
                queue_id,
                kind: OfferKind::Conference as i32,
                deadline_ms: out.at_ms.saturating_add(timeout as i64),
                decision: Some(decision),
            }))
        }
        C::LeaveConference(c) => {
            state.known_agent(&c.agent_id)?;
            let conversation = state.active_conversation(&c.conversation_id)?;
            if conversation.conference != Some(Conference::Joined { invitee: c.agent_id.clone() }) {
                return Err(Rejection::NoConference(c.conversation_id.clone()));
            }
            out.emit(Event::ConferenceLeft(ConferenceLeft {
                conversation_id: c.conversation_id.clone(),
                agent_id: c.agent_id.clone(),
            }))?;
            out.emit(Event::WrapUpStarted(WrapUpStarted {
                conversation_id: c.conversation_id.clone(),
                agent_id: c.agent_id.clone(),
            }))
        }
        C::EndConference(c) => {
            let conversation = state.owned_conversation(&c.agent_id, &c.conversation_id)?;
            if !matches!(conversation.conference, Some(Conference::Joined { .. })) {
                return Err(Rejection::NoConference(c.conversation_id.clone()));
            }
            out.emit(Event::ConferenceEnded(ConferenceEnded {
                conversation_id: c.conversation_id.clone(),
                owner_agent_id: c.agent_id.clone(),
            }))?;
            end_conversation(out, &c.conversation_id, EndedBy::Agent, &c.agent_id, WithdrawReason::ConversationEnded)
        }
        C::EndConversation(c) => {
            state.owned_conversation(&c.agent_id, &c.conversation_id)?;
            end_conversation(out, &c.conversation_id, EndedBy::Agent, &c.agent_id, WithdrawReason::ConversationEnded)
        }
        C::SubmitWrapUp(c) => {
            owed_wrap_up(state, &c.agent_id, &c.conversation_id)?;
            if c.reasons.is_empty() {
                return Err(Rejection::Invalid("a wrap-up needs at least one reason".into()));
            }
            if let Some(unknown) =
                c.reasons.iter().find(|r| !state.wrap_up_reasons.is_empty() && !state.wrap_up_reasons.contains(r))
            {
                return Err(Rejection::UnknownWrapUpReason(unknown.clone()));
            }
            out.emit(Event::WrapUpSubmitted(WrapUpSubmitted {
                conversation_id: c.conversation_id.clone(),
                agent_id: c.agent_id.clone(),
                reasons: c.reasons.clone(),
                automatic: false,
            }))
        }
        C::AutoWrapUp(c) => {
            let Ok((since_ms, queue_id)) = owed_wrap_up(state, &c.agent_id, &c.conversation_id) else {
                return Ok(()); // Submitted by hand before the timer fired.
            };
            let after = state.queues.get(queue_id).map_or(0, |q| q.config.auto_wrap_up_ms);
            if after == 0 || out.at_ms < since_ms.saturating_add(after as i64) {
                return Err(Rejection::Invalid(format!(
                    "no automatic wrap-up is due for {} in {}",
                    c.agent_id, c.conversation_id
                )));
            }
            out.emit(Event::WrapUpSubmitted(WrapUpSubmitted {
                conversation_id: c.conversation_id.clone(),
                agent_id: c.agent_id.clone(),
                reasons: Vec::new(),
                automatic: true,
            }))
        }
        C::TriggerWorkflow(c) => {
            required(&c.workflow_id, "workflow_id")?;
            state.participating(&c.agent_id, &c.conversation_id)?;
            let workflow =
                state.workflows.get(&c.workflow_id).ok_or_else(|| Rejection::UnknownWorkflow(c.workflow_id.clone()))?;
            if let Some(missing) = workflow.parameters.iter().find(|p| !c.parameters.contains_key(*p)) {
                return Err(Rejection::Invalid(format!("workflow {} needs the parameter {missing}", c.workflow_id)));
            }
            out.emit(Event::WorkflowTriggered(WorkflowTriggered {
                conversation_id: c.conversation_id.clone(),
                agent_id: c.agent_id.clone(),
                workflow_id: c.workflow_id.clone(),
                parameters: c.parameters.clone(),
            }))
        }
        C::PostAnnouncement(c) => {
            required(&c.announcement_id, "announcement_id")?;
            required(&c.supervisor_id, "supervisor_id")?;
            required(&c.text, "text")?;
            if let Some(unknown) = c.agent_ids.iter().find(|a| !state.agents.contains_key(*a)) {
                return Err(Rejection::UnknownAgent(unknown.clone()));
            }
            out.emit(Event::AnnouncementPosted(AnnouncementPosted {
                announcement_id: c.announcement_id.clone(),
                supervisor_id: c.supervisor_id.clone(),
                text: c.text.clone(),
                agent_ids: c.agent_ids.clone(),
            }))
        }
    }
}

/// When the agent started owing a wrap-up for the conversation, and for
/// which queue.
fn owed_wrap_up<'a>(
    state: &'a DomainState,
    agent_id: &str,
    conversation_id: &str,
) -> Result<(i64, &'a str), Rejection> {
    let agent = state.known_agent(agent_id)?;
    match agent.holdings.get(conversation_id).map(|h| &h.role) {
        Some(Role::WrapUp { since_ms, queue_id }) => Ok((*since_ms, queue_id)),
        _ => Err(Rejection::NoWrapUpPending {
            agent_id: agent_id.to_owned(),
            conversation_id: conversation_id.to_owned(),
        }),
    }
}

/// Refuses a configured list that names one `what` twice.
fn listed_once<'a>(what: &str, ids: impl Iterator<Item = &'a String>) -> Result<(), Rejection> {
    let mut seen = std::collections::BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(Rejection::Invalid(format!("{what} {id} is listed twice")));
        }
    }
    Ok(())
}

/// Attachments name their file and where its bytes are; an image shown
/// inline in the body is an email's alone (SPEC.md: files and inline images
/// in email, attachments in chat channels).
fn check_attachments(channel: Channel, attachments: &[Attachment]) -> Result<(), Rejection> {
    for (index, attachment) in attachments.iter().enumerate() {
        if attachment.name.is_empty() || attachment.url.is_empty() {
            return Err(Rejection::Invalid(format!("attachment {index} needs a name and a url")));
        }
        if attachment.inline && channel != Channel::Email {
            return Err(Rejection::NotAllowedOnChannel { channel: channel::name(channel), what: "inline images" });
        }
    }
    Ok(())
}

fn receive_customer_message(out: &mut Emitter, c: &ReceiveCustomerMessage) -> Result<(), Rejection> {
    let state = &*out.state;
    required(&c.conversation_id, "conversation_id")?;
    required(&c.message_id, "message_id")?;
    let message = CustomerMessageReceived {
        conversation_id: c.conversation_id.clone(),
        message_id: c.message_id.clone(),
        external_id: c.external_id.clone(),
        text: c.text.clone(),
        attachments: c.attachments.clone(),
        email: c.email.clone(),
    };
    if let Some(conversation) = state.conversations.get(&c.conversation_id) {
        if !c.external_id.is_empty() && conversation.external_ids.contains(&c.external_id) {
            return Ok(()); // The sender retried: already recorded.
        }
        if conversation.status == ConversationStatus::Ended {
            return Err(Rejection::ConversationEnded(c.conversation_id.clone()));
        }
        check_attachments(conversation.channel, &c.attachments)?;
        return out.emit(Event::CustomerMessageReceived(message));
    }
    let queue = state.queues.get(&c.queue_id).ok_or_else(|| Rejection::UnknownQueue(c.queue_id.clone()))?;
    if channel::policy(c.channel()).is_none() {
        return Err(Rejection::Invalid("channel is required".into()));
    }
    if queue.channel() != c.channel() {
        return Err(Rejection::ChannelMismatch {
            queue_id: c.queue_id.clone(),
            queue_channel: channel::name(queue.channel()),
            channel: channel::name(c.channel()),
        });
    }
    check_attachments(c.channel(), &c.attachments)?;
    out.emit(Event::ConversationCreated(ConversationCreated {
        conversation_id: c.conversation_id.clone(),
        channel: c.channel,
        queue_id: c.queue_id.clone(),
        customer: c.customer.clone(),
        source: c.source.clone(),
        subject: c.subject.clone(),
        priority: c.priority,
    }))?;
    out.emit(Event::CustomerMessageReceived(message))?;
    out.emit(Event::ConversationQueued(ConversationQueued {
        conversation_id: c.conversation_id.clone(),
        queue_id: c.queue_id.clone(),
        reason: QueueReason::Arrived as i32,
        arrived_at_ms: out.at_ms,
        priority: c.priority,
    }))
}

fn set_agent_state(out: &mut Emitter, c: &SetAgentState) -> Result<(), Rejection> {
    let agent = out.state.known_agent(&c.agent_id)?;
    let to = c.status();
    let refuse = |reason: &str| {
        Err(Rejection::StateChangeRefused {
            agent_id: c.agent_id.clone(),
            to: status_name(to).into(),
            reason: reason.into(),
        })
    };
    match to {
        AgentStatus::Unspecified => return Err(Rejection::Invalid("status is required".into())),
        AgentStatus::Rona => return refuse("RONA follows an unanswered offer; it cannot be chosen"),
        AgentStatus::Idle => {
            let known = out.state.idle_reasons.is_empty() || out.state.idle_reasons.contains(&c.idle_reason);
            if c.idle_reason.is_empty() || !known {
                return Err(Rejection::UnknownIdleReason(c.idle_reason.clone()));
            }
        }
        AgentStatus::LoggedOut => {
            if agent.holdings.values().any(|h| !matches!(h.role, Role::Offered(_))) {
                return refuse("the agent still holds conversations (active or owing a wrap-up)");
            }
        }
        AgentStatus::Available => {}
    }
    if agent.status == to && (to != AgentStatus::Idle || agent.idle_reason == c.idle_reason) {
        return Ok(()); // Already so.
    }
    if to != AgentStatus::Available {
        let reason =
            if to == AgentStatus::LoggedOut { WithdrawReason::AgentLoggedOut } else { WithdrawReason::AgentWentIdle };
        let offers: Vec<String> = agent
            .holdings
            .values()
            .filter_map(|h| match &h.role {
                Role::Offered(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        for offer_id in offers {
            withdraw_offer(out, &offer_id, reason)?;
        }
    }
    let from = out.state.agents[&c.agent_id].status;
    out.emit(Event::AgentStateChanged(AgentStateChanged {
        agent_id: c.agent_id.clone(),
        from: from as i32,
        to: to as i32,
        idle_reason: if to == AgentStatus::Idle { c.idle_reason.clone() } else { String::new() },
        cause: StateChangeCause::Agent as i32,
    }))
}

/// Withdraws an open offer and puts its conversation where it belongs:
/// back in its queue, or, for a transfer, where the queue's policy says.
fn withdraw_offer(out: &mut Emitter, offer_id: &str, reason: WithdrawReason) -> Result<(), Rejection> {
    let offer = out.state.offers[offer_id].clone();
    out.emit(Event::OfferWithdrawn(OfferWithdrawn {
        offer_id: offer_id.to_owned(),
        conversation_id: offer.conversation_id.clone(),
        agent_id: offer.agent_id.clone(),
        kind: offer.kind as i32,
        reason: reason as i32,
    }))?;
    if reason == WithdrawReason::CustomerLeft || reason == WithdrawReason::ConversationEnded {
        return Ok(()); // The conversation ends right after.
    }
    after_lapsed_offer(out, &offer.conversation_id, &offer.agent_id, offer.kind, QueueReason::OfferWithdrawn)
}

fn expire_offer(out: &mut Emitter, offer_id: &str) -> Result<(), Rejection> {
    let Some(offer) = out.state.offers.get(offer_id).cloned() else {
        return Ok(()); // Accepted or withdrawn before the timer fired.
    };
    if out.at_ms < offer.deadline_ms {
        return Err(Rejection::OfferNotDue { offer_id: offer_id.to_owned(), deadline_ms: offer.deadline_ms });
    }
    out.emit(Event::OfferTimedOut(OfferTimedOut {
        offer_id: offer_id.to_owned(),
        conversation_id: offer.conversation_id.clone(),
        agent_id: offer.agent_id.clone(),
        kind: offer.kind as i32,
    }))?;
    let from = out.state.agents[&offer.agent_id].status;
    if from != AgentStatus::Rona {
        out.emit(Event::AgentStateChanged(AgentStateChanged {
            agent_id: offer.agent_id.clone(),
            from: from as i32,
            to: AgentStatus::Rona as i32,
            idle_reason: String::new(),
            cause: StateChangeCause::NoAnswer as i32,
        }))?;
    }
    after_lapsed_offer(out, &offer.conversation_id, &offer.agent_id, offer.kind, QueueReason::OfferTimedOut)
}

/// After an offer lapsed (timed out or withdrawn): a routed conversation
/// goes back to its queue keeping its arrival time; a transfer follows the
/// queue's policy; a conference invitation simply lapses.
fn after_lapsed_offer(
    out: &mut Emitter,
    conversation_id: &str,
    agent_id: &str,
    kind: OfferKind,
    reason: QueueReason,
) -> Result<(), Rejection> {
    let conversation = &out.state.conversations[conversation_id];
    let queue_id = conversation.queue_id.clone();
    let (arrived_at_ms, priority) = (conversation.arrived_at_ms, conversation.priority);
    let requeue = |out: &mut Emitter, reason: QueueReason| {
        out.emit(Event::ConversationQueued(ConversationQueued {
            conversation_id: conversation_id.to_owned(),
            queue_id: queue_id.clone(),
            reason: reason as i32,
            arrived_at_ms,
            priority,
        }))
    };
    match kind {
        OfferKind::Routed => requeue(out, reason),
        OfferKind::Transfer => {
            let policy = out.state.queues[&queue_id].config.transfer_timeout_policy();
            let requeued = policy == TransferTimeoutPolicy::Requeue;
            out.emit(Event::TransferFailed(TransferFailed {
                conversation_id: conversation_id.to_owned(),
                to_agent_id: agent_id.to_owned(),
                outcome: if requeued { TransferOutcome::Requeued } else { TransferOutcome::Dropped } as i32,
                queue_id: if requeued { queue_id.clone() } else { String::new() },
            }))?;
            if requeued {
                requeue(out, QueueReason::TransferRequeued)
            } else {
                out.emit(Event::ConversationEnded(ConversationEnded {
                    conversation_id: conversation_id.to_owned(),
                    by: EndedBy::TransferDropped as i32,
                    agent_id: String::new(),
                }))
            }
        }
        OfferKind::Conference | OfferKind::Unspecified => Ok(()),
    }
}

fn transfer(out: &mut Emitter, c: &Transfer) -> Result<(), Rejection> {
    let state = &*out.state;
    let conversation = state.owned_conversation(&c.agent_id, &c.conversation_id)?;
    let channel = conversation.channel;
    if conversation.conference.is_some() {
        return Err(Rejection::ConferenceInProgress(c.conversation_id.clone()));
    }
    let (arrived_at_ms, priority, from_queue) =
        (conversation.arrived_at_ms, conversation.priority, conversation.queue_id.clone());
    let requested = |target| {
        Event::TransferRequested(TransferRequested {
            conversation_id: c.conversation_id.clone(),
            from_agent_id: c.agent_id.clone(),
            target: Some(target),
        })
    };
    let wrap_up = Event::WrapUpStarted(WrapUpStarted {
        conversation_id: c.conversation_id.clone(),
        agent_id: c.agent_id.clone(),
    });
    match &c.target {
        None => Err(Rejection::Invalid("a transfer needs a target queue or agent".into())),
        Some(transfer::Target::ToQueueId(queue_id)) => {
            let queue = state.queues.get(queue_id).ok_or_else(|| Rejection::UnknownQueue(queue_id.clone()))?;
            if queue.channel() != channel {
                return Err(Rejection::ChannelMismatch {
                    queue_id: queue_id.clone(),
                    queue_channel: channel::name(queue.channel()),
                    channel: channel::name(channel),
                });
            }
            out.emit(requested(transfer_requested::Target::ToQueueId(queue_id.clone())))?;
            out.emit(wrap_up)?;
            out.emit(Event::ConversationQueued(ConversationQueued {
                conversation_id: c.conversation_id.clone(),
                queue_id: queue_id.clone(),
                reason: QueueReason::Transferred as i32,
                arrived_at_ms,
                priority,
            }))?;
            out.emit(Event::TransferCompleted(TransferCompleted {
                conversation_id: c.conversation_id.clone(),
                target: Some(transfer_completed::Target::ToQueueId(queue_id.clone())),
            }))
        }
        Some(transfer::Target::ToAgentId(target)) => {
            if !channel::policy(channel).expect("real channel").transfer_to_agent {
                return Err(Rejection::NotAllowedOnChannel {
                    channel: channel::name(channel),
                    what: "transfer to an agent (transfer to a queue instead)",
                });
            }
            state.direct_target(target, &c.conversation_id, channel)?;
            let timeout = state.queues[&from_queue].config.offer_timeout_ms;
            let offer_id = state.next_offer_id();
            let decision = state.direct_decision(target, channel);
            out.emit(requested(transfer_requested::Target::ToAgentId(target.clone())))?;
            out.emit(wrap_up)?;
            out.emit(Event::ConversationOffered(ConversationOffered {
                offer_id,
                conversation_id: c.conversation_id.clone(),
                agent_id: target.clone(),
                queue_id: from_queue,
                kind: OfferKind::Transfer as i32,
                deadline_ms: out.at_ms.saturating_add(timeout as i64),
                decision: Some(decision),
            }))
        }
    }
}

/// Ends a conversation wherever it is: open offers are withdrawn, the queue
/// lets go of it, and everyone who took part goes to wrap-up.
fn end_conversation(
    out: &mut Emitter,
    conversation_id: &str,
    by: EndedBy,
    agent_id: &str,
    reason: WithdrawReason,
) -> Result<(), Rejection> {
    let conversation = &out.state.conversations[conversation_id];
    let mut open_offers = Vec::new();
    if let ConversationStatus::Offered(offer_id) = &conversation.status {
        open_offers.push(offer_id.clone());
    }
    if let Some(Conference::Requested { offer_id, .. }) = &conversation.conference {
        open_offers.push(offer_id.clone());
    }
    for offer_id in open_offers {
        withdraw_offer(out, &offer_id, reason)?;
    }
    let conversation = &out.state.conversations[conversation_id];
    let mut participants: Vec<String> = Vec::new();
    if let Some(Conference::Joined { invitee }) = &conversation.conference {
        participants.push(invitee.clone());
    }
    if let Some(owner) = &conversation.owner {
        participants.push(owner.clone());
    }
    out.emit(Event::ConversationEnded(ConversationEnded {
        conversation_id: conversation_id.to_owned(),
        by: by as i32,
        agent_id: agent_id.to_owned(),
    }))?;
    for participant in participants {
        out.emit(Event::WrapUpStarted(WrapUpStarted {
            conversation_id: conversation_id.to_owned(),
            agent_id: participant,
        }))?;
    }
    Ok(())
}

impl DomainState {
    /// The decision recorded for an offer to a named agent.
    fn direct_decision(&self, agent_id: &str, channel: Channel) -> RoutingDecision {
        let agent = &self.agents[agent_id];
        RoutingDecision {
            strategy: RoutingStrategy::Direct as i32,
            considered: 1,
            eligible: 1,
            chosen_load: agent.load(channel),
            chosen_capacity: agent.capacity(channel),
            chosen_free_since_ms: agent.free_since_ms,
            chosen_score: 0,
            passed_over: Vec::new(),
            passed_over_unlisted: 0,
        }
    }
}
