//! The invariants of DESIGN.md, checked over the folded state. Event-level
//! rules (an offer only to an Available agent with capacity, every offer
//! ends once, email never to an agent, no message over the limit) are
//! checked by `apply` itself; this module checks that the state it leaves
//! is consistent, entity by entity.

use std::fmt;

use serde::Serialize;
use switchboard_proto::v1::OfferKind;

use crate::state::{Conference, ConversationStatus, DomainState, Role};
use crate::AgentId;

/// A broken rule: the event (or state) that breaks an invariant, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Sequence of the event that broke the rule (0: found in the state).
    pub sequence: u64,
    /// The event's id, if an event broke it.
    pub event_id: String,
    /// The rule broken, in a few words.
    pub rule: &'static str,
    /// What exactly is wrong.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.event_id.is_empty() {
            write!(f, "{}: {}", self.rule, self.detail)
        } else {
            write!(f, "event {} (sequence {}): {}: {}", self.event_id, self.sequence, self.rule, self.detail)
        }
    }
}

impl std::error::Error for Violation {}

fn broken(rule: &'static str, detail: String) -> Violation {
    Violation { sequence: 0, event_id: String::new(), rule, detail }
}

impl DomainState {
    /// Checks every invariant over the whole state.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        for id in self.conversations.keys() {
            self.check_conversation(id)?;
        }
        for id in self.agents.keys() {
            self.check_agent(id)?;
        }
        for (queue_id, queue) in &self.queues {
            for key in &queue.waiting {
                let queued_here = self
                    .conversations
                    .get(&key.conversation_id)
                    .is_some_and(|c| c.status == ConversationStatus::Queued && &c.queue_id == queue_id);
                if !queued_here {
                    return Err(broken(
                        "one place per conversation",
                        format!("queue {queue_id} holds {} which is not queued there", key.conversation_id),
                    ));
                }
            }
        }
        for (offer_id, offer) in &self.offers {
            let held = self
                .agents
                .get(&offer.agent_id)
                .and_then(|a| a.holdings.get(&offer.conversation_id))
                .is_some_and(|h| h.role == Role::Offered(offer_id.clone()));
            if !held {
                return Err(broken(
                    "every offer held by its agent",
                    format!("offer {offer_id} is not held by agent {}", offer.agent_id),
                ));
            }
        }
        Ok(())
    }

    /// Checks that one conversation is in exactly one place and that every
    /// agent's part in it agrees with it.
    pub fn check_conversation(&self, conversation_id: &str) -> Result<(), Violation> {
        let Some(conversation) = self.conversations.get(conversation_id) else {
            return Ok(());
        };
        let fail = |rule, detail: String| Err(broken(rule, format!("conversation {conversation_id}: {detail}")));
        let in_queue = self
            .queues
            .get(&conversation.queue_id)
            .is_some_and(|q| q.waiting.contains(&conversation.waiting_key(conversation_id)));
        let waiting_anywhere =
            self.queues.values().filter(|q| q.waiting.contains(&conversation.waiting_key(conversation_id))).count();
        if waiting_anywhere > 1 || (waiting_anywhere == 1 && !in_queue) {
            return fail("one place per conversation", "waits in more than one queue".into());
        }
        match &conversation.status {
            ConversationStatus::Queued => {
                if !in_queue {
                    return fail(
                        "one place per conversation",
                        format!("queued but not waiting in {}", conversation.queue_id),
                    );
                }
            }
            ConversationStatus::Offered(offer_id) => {
                let offer_ok = self.offers.get(offer_id).is_some_and(|o| {
                    o.conversation_id == conversation_id && matches!(o.kind, OfferKind::Routed | OfferKind::Transfer)
                });
                if !offer_ok || in_queue {
                    return fail(
                        "one place per conversation",
                        format!("offered under {offer_id}, which is not its open offer"),
                    );
                }
            }
            ConversationStatus::Active => {
                let Some(owner) = &conversation.owner else {
                    return fail("one owner", "active without an owner".into());
                };
                if in_queue {
                    return fail("one place per conversation", "active and queued".into());
                }
                let holds = self.role_of(owner, conversation_id);
                if holds != Some(&Role::Owner) {
                    return fail("one owner", format!("owner {owner} does not hold it as owner"));
                }
            }
            ConversationStatus::Ended => {
                if in_queue || conversation.owner.is_some() || conversation.conference.is_some() {
                    return fail("one place per conversation", "ended but still queued, owned or in conference".into());
                }
            }
        }
        if conversation.status != ConversationStatus::Active && conversation.conference.is_some() {
            return fail("conference only while active", "has a conference but is not active".into());
        }
        match &conversation.conference {
            Some(Conference::Requested { invitee, offer_id }) => {
                let open = self
                    .offers
                    .get(offer_id)
                    .is_some_and(|o| o.kind == OfferKind::Conference && &o.agent_id == invitee);
                if !open {
                    return fail(
                        "every offer ends once",
                        format!("conference invitation {offer_id} to {invitee} is not open"),
                    );
                }
            }
            Some(Conference::Joined { invitee }) if self.role_of(invitee, conversation_id) != Some(&Role::Invitee) => {
                return fail("one invitee", format!("invitee {invitee} does not hold it as invitee"));
            }
            Some(Conference::Joined { .. }) | None => {}
        }
        // Every agent holding it must be accounted for by the conversation,
        // and every agent it names must hold it: routing relies on the names.
        let named: Vec<&AgentId> = self.named_agents(conversation).collect();
        if let Some(missing) = named.iter().find(|agent_id| self.role_of(agent_id, conversation_id).is_none()) {
            return fail("every holder named", format!("names agent {missing}, who does not hold it"));
        }
        let mut owners = 0;
        let mut routed_offers = 0;
        for (agent_id, agent) in &self.agents {
            let Some(holding) = agent.holdings.get(conversation_id) else {
                continue;
            };
            if !named.contains(&agent_id) {
                return fail(
                    "every holder named",
                    format!("agent {agent_id} holds it, but it does not name the agent"),
                );
            }
            match &holding.role {
                Role::Owner => owners += 1,
                Role::Offered(offer_id) => {
                    let offer = self.offers.get(offer_id);
                    if offer.is_some_and(|o| o.kind != OfferKind::Conference) {
                        routed_offers += 1;
                    }
                    if offer.is_none_or(|o| &o.agent_id != agent_id) {
                        return fail(
                            "every offer ends once",
                            format!("agent {agent_id} holds closed offer {offer_id}"),
                        );
                    }
                }
                Role::Invitee => {
                    if conversation.conference != Some(Conference::Joined { invitee: agent_id.clone() }) {
                        return fail(
                            "one invitee",
                            format!("agent {agent_id} holds it as invitee outside a conference"),
                        );
                    }
                }
                Role::WrapUp { .. } => {
                    if !conversation.wrapping_up.contains(agent_id) {
                        return fail("wrap-up owed", format!("agent {agent_id} wraps up but is not recorded"));
                    }
                }
            }
            if holding.channel != conversation.channel {
                return fail("capacity per channel", format!("agent {agent_id} holds it under another channel"));
            }
        }
        if owners > 1 || routed_offers > 1 {
            return fail("one owner", format!("{owners} owners and {routed_offers} open offers"));
        }
        for agent_id in &conversation.wrapping_up {
            if !matches!(self.role_of(agent_id, conversation_id), Some(Role::WrapUp { .. })) {
                return fail("wrap-up owed", format!("agent {agent_id} owes a wrap-up it does not hold"));
            }
        }
        let closed = conversation.status == ConversationStatus::Ended && conversation.wrapping_up.is_empty();
        let messages = conversation.customer_messages as usize + conversation.agent_messages.len();
        if !closed && conversation.thread.len() != messages {
            return fail(
                "every message in the thread",
                format!("{} messages in the thread of {messages} recorded", conversation.thread.len()),
            );
        }
        Ok(())
    }

    /// Checks one agent: capacity per channel, and every holding backed by
    /// its conversation.
    pub fn check_agent(&self, agent_id: &str) -> Result<(), Violation> {
        let Some(agent) = self.agents.get(agent_id) else {
            return Ok(());
        };
        for channel in crate::channel::ALL {
            if agent.load(channel) > agent.capacity(channel) {
                return Err(broken(
                    "capacity per channel",
                    format!(
                        "agent {agent_id} holds {} {} conversations, profile allows {}",
                        agent.load(channel),
                        crate::channel::name(channel),
                        agent.capacity(channel)
                    ),
                ));
            }
        }
        for channel in crate::channel::ALL {
            let counted = agent.holdings.values().filter(|h| h.channel == channel).count() as u32;
            if agent.load(channel) != counted {
                return Err(broken(
                    "capacity per channel",
                    format!(
                        "agent {agent_id} counted {} {} holdings, holds {counted}",
                        agent.load(channel),
                        crate::channel::name(channel)
                    ),
                ));
            }
            let indexed = self.free_agents.get(&(channel as i32)).is_some_and(|free| free.contains(agent_id));
            if indexed != agent.can_take(channel) {
                return Err(broken(
                    "free agents index",
                    format!("agent {agent_id} indexed as free for {}: {indexed}", crate::channel::name(channel)),
                ));
            }
        }
        for conversation_id in agent.holdings.keys() {
            if !self.conversations.contains_key(conversation_id) {
                return Err(broken(
                    "one place per conversation",
                    format!("agent {agent_id} holds unknown conversation {conversation_id}"),
                ));
            }
            self.check_conversation(conversation_id)?;
        }
        Ok(())
    }

    fn role_of(&self, agent_id: &str, conversation_id: &str) -> Option<&Role> {
        self.agents.get(agent_id)?.holdings.get(conversation_id).map(|h| &h.role)
    }
}
