//! The vocabulary the server's configuration and the simulator's scenario
//! share: channels, strategies and transfer policies by name, and a queue as
//! written in a file. One definition, so that a name accepted in one file is
//! accepted in the other and both configure the domain the same way.

use serde::{Deserialize, Serialize};
use switchboard_proto::v1::{Channel, QueueConfig, RoutingStrategy, TransferTimeoutPolicy};

/// A channel, by the name used in files and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelName {
    /// Facebook Messenger.
    Messenger,
    /// SMS.
    Sms,
    /// The site's chat widget.
    Webchat,
    /// Email.
    Email,
    /// WhatsApp.
    Whatsapp,
}

impl ChannelName {
    /// The schema's channel.
    pub fn channel(self) -> Channel {
        match self {
            Self::Messenger => Channel::Messenger,
            Self::Sms => Channel::Sms,
            Self::Webchat => Channel::Webchat,
            Self::Email => Channel::Email,
            Self::Whatsapp => Channel::Whatsapp,
        }
    }

    /// The name as written in files (`"whatsapp"`).
    pub fn name(self) -> &'static str {
        switchboard_domain::channel::name(self.channel())
    }
}

/// A queue's routing strategy, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyName {
    /// The agent free the longest gets the offer.
    LongestAvailable,
    /// Agents take turns.
    RoundRobin,
    /// The agent with the lowest share of their capacity in use.
    LeastOccupied,
}

impl StrategyName {
    /// The schema's strategy.
    pub fn strategy(self) -> RoutingStrategy {
        match self {
            Self::LongestAvailable => RoutingStrategy::LongestAvailable,
            Self::RoundRobin => RoutingStrategy::RoundRobin,
            Self::LeastOccupied => RoutingStrategy::LeastOccupied,
        }
    }
}

/// What a lapsed transfer to an agent does, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferPolicyName {
    /// The conversation ends (the reference product's behaviour).
    Drop,
    /// The conversation goes back to its queue.
    Requeue,
}

impl TransferPolicyName {
    /// The schema's policy.
    pub fn policy(self) -> TransferTimeoutPolicy {
        match self {
            Self::Drop => TransferTimeoutPolicy::Drop,
            Self::Requeue => TransferTimeoutPolicy::Requeue,
        }
    }
}

/// A queue as written in a configuration or scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSpec {
    /// The queue's id (required).
    pub id: String,
    /// Display name; the id when empty.
    pub name: String,
    /// The channel it serves.
    pub channel: ChannelName,
    /// How it picks an agent.
    pub strategy: StrategyName,
    /// How long an agent has to accept.
    pub offer_timeout_ms: u64,
    /// What a lapsed transfer to an agent does.
    pub transfer_timeout: TransferPolicyName,
    /// Higher is offered first.
    pub priority: i32,
    /// Zero: agents wrap up by hand; otherwise automatically after this long.
    pub auto_wrap_up_ms: u64,
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            channel: ChannelName::Webchat,
            strategy: StrategyName::LongestAvailable,
            offer_timeout_ms: 30_000,
            transfer_timeout: TransferPolicyName::Requeue,
            priority: 0,
            auto_wrap_up_ms: 0,
        }
    }
}

impl QueueSpec {
    /// The schema's queue configuration, as `ConfigureQueue` carries it.
    pub fn queue_config(&self) -> QueueConfig {
        QueueConfig {
            queue_id: self.id.clone(),
            name: if self.name.is_empty() { self.id.clone() } else { self.name.clone() },
            channel: self.channel.channel() as i32,
            strategy: self.strategy.strategy() as i32,
            offer_timeout_ms: self.offer_timeout_ms,
            transfer_timeout_policy: self.transfer_timeout.policy() as i32,
            priority: self.priority,
            auto_wrap_up_ms: self.auto_wrap_up_ms,
        }
    }
}
