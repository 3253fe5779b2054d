//! Command bodies for tests' setups (feature `testing`): the queue, agents
//! and customer traffic a routing test starts from, one builder each, so
//! that the tests of every crate do not each spell out the same structs;
//! and the offer a test reads back from a command's events.

use std::sync::Arc;

use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::{
    AgentProfile, AgentStatus, Channel, ChannelCapacity, ConfigureAgent, ConfigureQueue, QueueConfig,
    ReceiveCustomerMessage, RoutingStrategy, SetAgentState, TransferTimeoutPolicy,
};

use crate::Envelope;
use switchboard_proto::v1::ConversationOffered;

/// The first offer among `events` (a command's answer), if any.
pub fn offered(events: &[Arc<Envelope>]) -> Option<&ConversationOffered> {
    events.iter().find_map(|e| match &e.event {
        Some(Event::ConversationOffered(o)) => Some(o),
        _ => None,
    })
}

/// A webchat queue `queue_id` routing to the longest available agent and
/// requeueing a transfer that times out.
pub fn webchat_queue(queue_id: &str, offer_timeout_ms: u64, auto_wrap_up_ms: u64) -> C {
    C::ConfigureQueue(ConfigureQueue {
        queue: Some(QueueConfig {
            queue_id: queue_id.into(),
            name: queue_id.into(),
            channel: Channel::Webchat as i32,
            strategy: RoutingStrategy::LongestAvailable as i32,
            offer_timeout_ms,
            transfer_timeout_policy: TransferTimeoutPolicy::Requeue as i32,
            priority: 0,
            auto_wrap_up_ms,
        }),
    })
}

/// Agent `agent_id`, taking 2 conversations of `channel`, member of `queues`.
pub fn agent(agent_id: &str, channel: i32, queues: &[&str]) -> C {
    C::ConfigureAgent(ConfigureAgent {
        profile: Some(AgentProfile {
            agent_id: agent_id.into(),
            name: agent_id.into(),
            capacities: vec![ChannelCapacity { channel, max: 2 }],
            queue_ids: queues.iter().map(|q| q.to_string()).collect(),
        }),
    })
}

/// Agent `agent_id` makes herself Available.
pub fn available(agent_id: &str) -> C {
    C::SetAgentState(SetAgentState {
        agent_id: agent_id.into(),
        status: AgentStatus::Available as i32,
        ..Default::default()
    })
}

/// A customer's webchat message `message_id` in `conversation_id`, entering
/// `queue_id` (a new conversation if it is the first).
pub fn customer_message(conversation_id: &str, queue_id: &str, message_id: &str) -> C {
    C::ReceiveCustomerMessage(ReceiveCustomerMessage {
        conversation_id: conversation_id.into(),
        channel: Channel::Webchat as i32,
        queue_id: queue_id.into(),
        message_id: message_id.into(),
        text: "hello".into(),
        ..Default::default()
    })
}
