//! The folded state of one routing domain. Ordered maps everywhere: the
//! state's digest and every iteration that decides something must not
//! depend on hash order.

use std::collections::{BTreeMap, BTreeSet};

use litemap::LiteMap;
use serde::{Deserialize, Serialize};
use switchboard_proto::v1::{
    AgentStatus, Channel, Customer, MessageTemplate, OfferKind, QueueConfig, RoutingStrategy, Workflow,
};

use crate::{AgentId, ConversationId, OfferId, QueueId};

/// Everything a routing domain knows, folded from its events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DomainState {
    /// The routing domain's name.
    pub domain: String,
    /// Sequence of the last applied event (0 before the first).
    pub last_sequence: u64,
    /// Time of the last applied event.
    pub last_at_ms: i64,
    /// Queues by id.
    pub queues: BTreeMap<QueueId, Queue>,
    /// Agents by id.
    pub agents: BTreeMap<AgentId, Agent>,
    /// Conversations by id, closed ones included (without their messages)
    /// until the retention forgets them. Boxed: a conversation is ~500
    /// bytes, and a map's nodes hold their values inline, each node with
    /// room for eleven, about half of it empty when ids arrive in order.
    pub conversations: BTreeMap<ConversationId, Box<Conversation>>,
    /// Closed conversations still in `conversations`, by the time of the
    /// event that closed them: what the retention forgets next.
    #[serde(default)]
    pub closed: BTreeSet<(i64, ConversationId)>,
    /// How long a closed conversation is kept, in milliseconds; 0 keeps it
    /// forever.
    #[serde(default)]
    pub closed_retention_ms: i64,
    /// Offers that are open: made, and not yet accepted, timed out or withdrawn.
    pub offers: BTreeMap<OfferId, Offer>,
    /// How many offers were ever made; numbers the next offer id.
    pub offers_made: u64,
    /// The configured wrap-up reasons, in configured order.
    pub wrap_up_reasons: Vec<String>,
    /// The configured idle reasons, in configured order.
    pub idle_reasons: Vec<String>,
    /// The message templates, by id.
    #[serde(default)]
    pub templates: BTreeMap<String, MessageTemplate>,
    /// The workflows agents may start, by id.
    #[serde(default)]
    pub workflows: BTreeMap<String, Workflow>,
    /// Agents who could take an offer of each channel right now (Available,
    /// with free capacity), by channel. Derived from `agents` and kept in
    /// step by `apply`: routing asks it first, so a command costs nothing
    /// extra while every agent is busy, however long the queues are.
    pub free_agents: BTreeMap<i32, BTreeSet<AgentId>>,
}

/// A queue and the conversations waiting in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Queue {
    /// The queue's configuration as last set.
    pub config: QueueConfig,
    /// Waiting conversations, best first.
    pub waiting: BTreeSet<WaitingKey>,
    /// Agents whose profile lists this queue.
    pub members: BTreeSet<AgentId>,
    /// The agent last offered a conversation, for round robin.
    pub last_offered: Option<AgentId>,
}

/// The order of a queue: higher priority first, then earlier arrival, then
/// the order in which conversations were created.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WaitingKey {
    /// Negated priority, so that the highest priority sorts first.
    pub neg_priority: i64,
    /// When the customer first reached us.
    pub arrived_at_ms: i64,
    /// Sequence of the conversation's creation: a tie-break that never ties.
    pub created_sequence: u64,
    /// The conversation.
    pub conversation_id: ConversationId,
}

/// An agent, their profile and what they hold right now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agent {
    /// Display name.
    pub name: String,
    /// Conversations allowed per channel; a channel absent here allows none.
    pub capacities: BTreeMap<i32, u32>,
    /// Queues whose conversations the agent may be offered.
    pub queues: BTreeSet<QueueId>,
    /// Presence.
    pub status: AgentStatus,
    /// Why the agent is Idle, when Idle.
    pub idle_reason: String,
    /// When the agent last became free (set Available, or finished a
    /// wrap-up): the longest-available strategy prefers the earliest.
    pub free_since_ms: i64,
    /// Conversations the agent holds, and in what role; each counts against
    /// the capacity of its channel.
    pub holdings: BTreeMap<ConversationId, Holding>,
    /// How many holdings of each channel: derived from `holdings`, kept by
    /// [`Agent::hold`] and [`Agent::release`], because routing asks every
    /// member's load for every offer.
    pub loads: BTreeMap<i32, u32>,
}

/// One conversation held by an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// The conversation's channel.
    pub channel: Channel,
    /// The agent's part in it.
    pub role: Role,
}

/// An agent's part in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Offered, not yet accepted.
    Offered(OfferId),
    /// Owns it: talks with the customer, may transfer, conference, end.
    Owner,
    /// Joined a conference as the invited agent.
    Invitee,
    /// Left it and owes a wrap-up, since the given time.
    WrapUp {
        /// When the agent left.
        since_ms: i64,
        /// The queue the agent handled it for: its automatic wrap-up applies,
        /// even if the conversation moves on to another queue.
        queue_id: QueueId,
    },
}

/// A conversation with a customer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    /// Channel it arrived on.
    pub channel: Channel,
    /// The queue it was last routed through (and returns to).
    pub queue_id: QueueId,
    /// Who the customer is.
    pub customer: Customer,
    /// Where the customer wrote to.
    pub source: String,
    /// Email subject, if any.
    pub subject: String,
    /// Priority within the queue.
    pub priority: i32,
    /// When the customer first reached us.
    pub arrived_at_ms: i64,
    /// Sequence of the creation event.
    pub created_sequence: u64,
    /// Where the conversation is.
    pub status: ConversationStatus,
    /// The owning agent while active.
    pub owner: Option<AgentId>,
    /// A conference, when one is requested or under way.
    pub conference: Option<Conference>,
    /// Agents who left and still owe a wrap-up.
    pub wrapping_up: BTreeSet<AgentId>,
    /// When it was first accepted (speed of answer).
    pub first_accepted_at_ms: Option<i64>,
    /// Sender ids of customer messages seen, for idempotent intake.
    pub external_ids: BTreeSet<String>,
    /// Agent messages sent, with their receipts. Kept after the close
    /// (receipts come late), for the retention: a map of one or two, where a
    /// B-tree's node (room for eleven) cost twice a sorted vector's
    /// allocation; an insert shifts the vector, nothing for the tens of
    /// messages a conversation holds. Serialized as the B-tree map was.
    pub agent_messages: LiteMap<String, Receipts>,
    /// How many customer messages arrived.
    pub customer_messages: u32,
    /// The mail thread, for email conversations. Boxed: it is 120 bytes,
    /// which every conversation of the other channels carried empty, in the
    /// state and in the snapshot thread's replica. Serialized as unboxed.
    pub email: Option<Box<crate::email::EmailThread>>,
    /// Every message of the conversation, oldest first: what the interaction
    /// pane of whoever takes it over (an accept, a transfer, a conference)
    /// shows from the start.
    pub thread: Vec<ThreadMessage>,
}

/// One message of a conversation's thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadMessage {
    /// The message's id.
    pub message_id: String,
    /// The agent who wrote it; `None` for the customer.
    pub agent_id: Option<AgentId>,
    /// Its text.
    pub text: String,
    /// Its attachments.
    pub attachments: Vec<switchboard_proto::v1::Attachment>,
    /// When it was recorded.
    pub at_ms: i64,
}

/// Where a conversation is; with [`Conversation::wrapping_up`] this gives
/// the one place it is in (queued, offered, active, in wrap-up, closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConversationStatus {
    /// Waiting in `queue_id`.
    Queued,
    /// Offered to an agent (routed, or transferred to them).
    Offered(OfferId),
    /// Owned by an agent.
    Active,
    /// Over: in wrap-up while someone owes one, closed after.
    Ended,
}

/// A conference in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Conference {
    /// Invitation open.
    Requested {
        /// The invited agent.
        invitee: AgentId,
        /// The invitation's offer.
        offer_id: OfferId,
    },
    /// The invitee joined.
    Joined {
        /// The invited agent.
        invitee: AgentId,
    },
}

/// Receipts recorded for one agent message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipts {
    /// The channel confirmed delivery.
    pub delivered: bool,
    /// The customer read it.
    pub read: bool,
}

/// An open offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The conversation offered.
    pub conversation_id: ConversationId,
    /// The agent it is offered to.
    pub agent_id: AgentId,
    /// Routed, transfer or conference.
    pub kind: OfferKind,
    /// When it times out.
    pub deadline_ms: i64,
}

/// The place a conversation is in, as the invariants and reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Place {
    /// Waiting in a queue.
    Queued,
    /// Offered to an agent.
    Offered,
    /// Handled by an agent.
    Active,
    /// Ended, someone still owes a wrap-up.
    WrapUp,
    /// Ended and wrapped up.
    Closed,
}

impl Conversation {
    /// The one place the conversation is in.
    pub fn place(&self) -> Place {
        match self.status {
            ConversationStatus::Queued => Place::Queued,
            ConversationStatus::Offered(_) => Place::Offered,
            ConversationStatus::Active => Place::Active,
            ConversationStatus::Ended if self.wrapping_up.is_empty() => Place::Closed,
            ConversationStatus::Ended => Place::WrapUp,
        }
    }

    /// The queue order key of this conversation.
    pub fn waiting_key(&self, conversation_id: &str) -> WaitingKey {
        WaitingKey {
            neg_priority: -i64::from(self.priority),
            arrived_at_ms: self.arrived_at_ms,
            created_sequence: self.created_sequence,
            conversation_id: conversation_id.to_owned(),
        }
    }
}

impl Queue {
    /// The channel the queue serves.
    pub fn channel(&self) -> Channel {
        self.config.channel()
    }

    /// How the queue picks among eligible agents.
    pub fn strategy(&self) -> RoutingStrategy {
        self.config.strategy()
    }
}

impl Agent {
    /// Conversations of `channel` held now (offers, active, wrap-ups).
    pub fn load(&self, channel: Channel) -> u32 {
        self.loads.get(&(channel as i32)).copied().unwrap_or(0)
    }

    /// Takes a part in a conversation.
    pub(crate) fn hold(&mut self, conversation_id: ConversationId, holding: Holding) {
        *self.loads.entry(holding.channel as i32).or_default() += 1;
        if let Some(previous) = self.holdings.insert(conversation_id, holding) {
            self.unload(previous.channel);
        }
    }

    /// Lets go of a conversation.
    pub(crate) fn release(&mut self, conversation_id: &str) {
        if let Some(holding) = self.holdings.remove(conversation_id) {
            self.unload(holding.channel);
        }
    }

    fn unload(&mut self, channel: Channel) {
        if let Some(load) = self.loads.get_mut(&(channel as i32)) {
            *load -= 1;
            if *load == 0 {
                self.loads.remove(&(channel as i32));
            }
        }
    }

    /// Conversations of `channel` the profile allows.
    pub fn capacity(&self, channel: Channel) -> u32 {
        self.capacities.get(&(channel as i32)).copied().unwrap_or(0)
    }

    /// Whether the agent may receive an offer of `channel` right now.
    pub fn can_take(&self, channel: Channel) -> bool {
        self.status == AgentStatus::Available && self.load(channel) < self.capacity(channel)
    }
}

impl DomainState {
    /// An empty domain.
    pub fn new(domain: impl Into<String>) -> Self {
        Self { domain: domain.into(), ..Self::default() }
    }

    /// Brings `free_agents` up to date with one agent's state and holdings.
    pub(crate) fn refresh_free(&mut self, agent_id: &str) {
        let Some(agent) = self.agents.get(agent_id) else { return };
        for channel in crate::channel::ALL {
            let free = self.free_agents.entry(channel as i32).or_default();
            if agent.can_take(channel) {
                if !free.contains(agent_id) {
                    free.insert(agent_id.to_owned());
                }
            } else {
                free.remove(agent_id);
            }
        }
    }

    /// The agents a conversation names as taking part in it: its owner, the
    /// agent of its open offer, its conference's invitee and whoever owes it
    /// a wrap-up. The invariants hold these to be exactly the agents holding
    /// it, so routing asks the conversation (a handful of names) instead of
    /// searching every candidate's holdings.
    pub fn named_agents<'a>(&'a self, conversation: &'a Conversation) -> impl Iterator<Item = &'a AgentId> + 'a {
        let offered = match &conversation.status {
            ConversationStatus::Offered(offer_id) => self.offers.get(offer_id).map(|offer| &offer.agent_id),
            _ => None,
        };
        let invitee = match &conversation.conference {
            Some(Conference::Requested { invitee, .. } | Conference::Joined { invitee }) => Some(invitee),
            None => None,
        };
        conversation.owner.iter().chain(offered).chain(invitee).chain(&conversation.wrapping_up)
    }

    /// How many conversations are in each place.
    pub fn places(&self) -> BTreeMap<Place, usize> {
        let mut counts = BTreeMap::new();
        for conversation in self.conversations.values() {
            *counts.entry(conversation.place()).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_messages_serialize_as_the_b_tree_map_did_so_digests_and_snapshots_stay_the_same() {
        // given the same receipts in a sorted vector and in a B-tree, inserted out of order
        let mut vector = LiteMap::new();
        let mut tree = BTreeMap::new();
        for (id, read) in [("m2", true), ("m10", false), ("m1", true)] {
            vector.insert(id.to_owned(), Receipts { delivered: true, read });
            tree.insert(id.to_owned(), Receipts { delivered: true, read });
        }
        // then both serialize to the same JSON (the digest's bytes), in key order
        let json = serde_json::to_string(&vector).unwrap();
        assert_eq!(json, serde_json::to_string(&tree).unwrap());
        assert!(json.starts_with(r#"{"m1":"#), "{json}");
        // and JSON of either reads back into the other
        let back: LiteMap<String, Receipts> = serde_json::from_str(&serde_json::to_string(&tree).unwrap()).unwrap();
        assert_eq!(back, vector);
    }
}
