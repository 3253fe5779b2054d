//! Switchboard's routing domain, pure: no I/O, no clock, no async.
//!
//! A routing domain's whole state is a [`DomainState`]. A [`Command`] is
//! decided against it by [`DomainState::execute`], which either refuses it
//! with a typed [`Rejection`] (leaving the state untouched) or returns the
//! events it caused, already folded into the state. The same fold,
//! [`DomainState::apply`], rebuilds the state from a log, so the live engine
//! and a replay reach the same state by construction.
//!
//! Time comes from the command (`Command::at_ms`), never from a clock.

mod apply;
pub mod channel;
mod decide;
pub mod email;
pub mod invariants;
mod rejection;
mod routing;
pub mod state;
pub mod template;
#[cfg(feature = "testing")]
pub mod testing;

pub use invariants::Violation;
pub use rejection::Rejection;
pub use state::DomainState;
pub use switchboard_proto::v1::{Command, Envelope};

/// Identifies a conversation within its routing domain.
pub type ConversationId = String;
/// Identifies an agent within its routing domain.
pub type AgentId = String;
/// Identifies a queue within its routing domain.
pub type QueueId = String;
/// Identifies one offer of a conversation to an agent.
pub type OfferId = String;

#[cfg(test)]
mod tests;

/// The event's kind as the schema names it (`"ConversationOffered"`), for
/// timelines and reports.
pub fn event_name(event: &switchboard_proto::v1::envelope::Event) -> &'static str {
    use switchboard_proto::v1::envelope::Event as E;
    match event {
        E::QueueConfigured(_) => "QueueConfigured",
        E::AgentProfileConfigured(_) => "AgentProfileConfigured",
        E::WrapUpReasonsConfigured(_) => "WrapUpReasonsConfigured",
        E::IdleReasonsConfigured(_) => "IdleReasonsConfigured",
        E::RetentionConfigured(_) => "RetentionConfigured",
        E::TemplatesConfigured(_) => "TemplatesConfigured",
        E::WorkflowsConfigured(_) => "WorkflowsConfigured",
        E::ConversationCreated(_) => "ConversationCreated",
        E::CustomerMessageReceived(_) => "CustomerMessageReceived",
        E::ConversationQueued(_) => "ConversationQueued",
        E::ConversationOffered(_) => "ConversationOffered",
        E::OfferAccepted(_) => "OfferAccepted",
        E::OfferTimedOut(_) => "OfferTimedOut",
        E::OfferWithdrawn(_) => "OfferWithdrawn",
        E::AgentStateChanged(_) => "AgentStateChanged",
        E::AgentMessageSent(_) => "AgentMessageSent",
        E::MessageDelivered(_) => "MessageDelivered",
        E::MessageRead(_) => "MessageRead",
        E::TransferRequested(_) => "TransferRequested",
        E::TransferCompleted(_) => "TransferCompleted",
        E::TransferFailed(_) => "TransferFailed",
        E::ConferenceRequested(_) => "ConferenceRequested",
        E::ConferenceJoined(_) => "ConferenceJoined",
        E::ConferenceLeft(_) => "ConferenceLeft",
        E::ConferenceEnded(_) => "ConferenceEnded",
        E::ConversationEnded(_) => "ConversationEnded",
        E::WrapUpStarted(_) => "WrapUpStarted",
        E::WrapUpSubmitted(_) => "WrapUpSubmitted",
        E::WorkflowTriggered(_) => "WorkflowTriggered",
        E::AnnouncementPosted(_) => "AnnouncementPosted",
    }
}

#[cfg(test)]
mod proptests;
