//! Why a command was refused. Every variant names what was wrong, so the API
//! can pass it to the user as it is.

use crate::invariants::Violation;

/// A command the current state forbids, or that is malformed. A rejected
/// command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A required field is empty or out of range.
    #[error("invalid command: {0}")]
    Invalid(String),
    /// The command names a domain other than the state's.
    #[error("command for domain {command} sent to domain {state}")]
    WrongDomain {
        /// The command's domain.
        command: String,
        /// The state's domain.
        state: String,
    },
    /// The command's time is before the last event's.
    #[error("command time {at_ms} is before the domain's last event at {last_ms}")]
    TimeWentBack {
        /// The command's time.
        at_ms: i64,
        /// The last event's time.
        last_ms: i64,
    },
    /// No such queue.
    #[error("unknown queue {0}")]
    UnknownQueue(String),
    /// No such agent.
    #[error("unknown agent {0}")]
    UnknownAgent(String),
    /// No such conversation.
    #[error("unknown conversation {0}")]
    UnknownConversation(String),
    /// No such message in the conversation.
    #[error("unknown message {message_id} in conversation {conversation_id}")]
    UnknownMessage {
        /// The conversation.
        conversation_id: String,
        /// The message asked about.
        message_id: String,
    },
    /// The offer is not open: it was accepted, timed out or withdrawn, or
    /// never existed.
    #[error("offer {0} is not open: it was accepted, timed out or withdrawn, or never existed")]
    OfferNotOpen(String),
    /// The offer was made to another agent.
    #[error("offer {offer_id} was made to another agent, not {agent_id}")]
    NotYourOffer {
        /// The offer.
        offer_id: String,
        /// The agent who tried to accept it.
        agent_id: String,
    },
    /// The offer timer fired before the offer's deadline.
    #[error("offer {offer_id} expires at {deadline_ms}, not before")]
    OfferNotDue {
        /// The offer.
        offer_id: String,
        /// When it expires.
        deadline_ms: i64,
    },
    /// The conversation has ended.
    #[error("conversation {0} has ended")]
    ConversationEnded(String),
    /// The conversation is not being handled by an agent right now.
    #[error("conversation {0} is not active (it is queued, offered or ended)")]
    ConversationNotActive(String),
    /// The agent does not own the conversation.
    #[error("agent {agent_id} does not own conversation {conversation_id}")]
    NotOwner {
        /// The agent.
        agent_id: String,
        /// The conversation.
        conversation_id: String,
    },
    /// The agent takes no part in the conversation.
    #[error("agent {agent_id} takes no part in conversation {conversation_id}")]
    NotParticipant {
        /// The agent.
        agent_id: String,
        /// The conversation.
        conversation_id: String,
    },
    /// A message longer than the channel allows; nothing is sent or cut.
    #[error("message of {length} characters exceeds the {channel} limit of {limit} characters")]
    MessageTooLong {
        /// The channel's name.
        channel: &'static str,
        /// The channel's compose limit.
        limit: usize,
        /// The message's length.
        length: usize,
    },
    /// The channel does not allow what was asked (transfer to an agent,
    /// conference, a receipt kind).
    #[error("{channel} conversations do not allow {what}")]
    NotAllowedOnChannel {
        /// The channel's name.
        channel: &'static str,
        /// What was asked.
        what: &'static str,
    },
    /// A queue of another channel than the conversation's.
    #[error("queue {queue_id} serves {queue_channel}, not {channel}")]
    ChannelMismatch {
        /// The queue.
        queue_id: String,
        /// The queue's channel.
        queue_channel: &'static str,
        /// The conversation's channel.
        channel: &'static str,
    },
    /// The target agent of a transfer or conference cannot take it now.
    #[error("agent {agent_id} cannot take the conversation now: {reason}")]
    TargetUnavailable {
        /// The target agent.
        agent_id: String,
        /// Why not.
        reason: String,
    },
    /// No member of the queue asked to pick an invitee can take the
    /// conversation now.
    #[error("no agent of queue {queue_id} can take the conversation now")]
    NoAgentAvailable {
        /// The queue.
        queue_id: String,
    },
    /// No such message template.
    #[error("unknown template {0}")]
    UnknownTemplate(String),
    /// No such workflow.
    #[error("unknown workflow {0}")]
    UnknownWorkflow(String),
    /// A template used where it does not apply, edited while locked, or
    /// with its parameters wrong.
    #[error("template {template_id} cannot be sent: {problem}")]
    Template {
        /// The template.
        template_id: String,
        /// What is wrong.
        problem: String,
    },
    /// A conference is already requested or under way.
    #[error("conversation {0} already has a conference")]
    ConferenceInProgress(String),
    /// No conference to leave or end.
    #[error("conversation {0} has no conference")]
    NoConference(String),
    /// The agent cannot move to the asked state.
    #[error("agent {agent_id} cannot go {to}: {reason}")]
    StateChangeRefused {
        /// The agent.
        agent_id: String,
        /// The asked state.
        to: String,
        /// Why not.
        reason: String,
    },
    /// The idle reason is missing or not in the configured list.
    #[error("idle reason {0:?} is not one of the configured idle reasons")]
    UnknownIdleReason(String),
    /// A wrap-up reason not in the configured list.
    #[error("wrap-up reason {0:?} is not one of the configured wrap-up reasons")]
    UnknownWrapUpReason(String),
    /// The agent owes no wrap-up for the conversation.
    #[error("agent {agent_id} owes no wrap-up for conversation {conversation_id}")]
    NoWrapUpPending {
        /// The agent.
        agent_id: String,
        /// The conversation.
        conversation_id: String,
    },
    /// A configuration change that would break a running conversation.
    #[error("configuration refused: {0}")]
    Configuration(String),
    /// The domain's own consistency check failed while applying the
    /// command's events: a bug. The state must be rebuilt from the log.
    #[error("internal error, state must be rebuilt from the log: {0}")]
    Internal(Box<Violation>),
}

impl Rejection {
    /// A stable, machine-readable name for the kind of refusal: the API's
    /// `error` field, and what an engine on Kafka writes to the log so that
    /// the edge that sent the command can answer with it.
    pub fn code(&self) -> &'static str {
        use Rejection as R;
        match self {
            R::UnknownQueue(_)
            | R::UnknownAgent(_)
            | R::UnknownConversation(_)
            | R::UnknownMessage { .. }
            | R::UnknownTemplate(_)
            | R::UnknownWorkflow(_) => "not_found",
            R::Template { .. } => "template",
            R::OfferNotOpen(_) => "offer_not_open",
            R::NotYourOffer { .. } | R::NotOwner { .. } | R::NotParticipant { .. } => "not_yours",
            R::ConversationEnded(_) | R::ConversationNotActive(_) => "conversation_state",
            R::TargetUnavailable { .. } | R::NoAgentAvailable { .. } => "target_unavailable",
            R::ConferenceInProgress(_) | R::NoConference(_) => "conference_state",
            R::StateChangeRefused { .. } => "state_change_refused",
            R::NoWrapUpPending { .. } => "no_wrap_up_pending",
            R::OfferNotDue { .. } | R::TimeWentBack { .. } => "too_early",
            R::MessageTooLong { .. } => "message_too_long",
            R::NotAllowedOnChannel { .. } | R::ChannelMismatch { .. } => "not_allowed_on_channel",
            R::UnknownIdleReason(_) | R::UnknownWrapUpReason(_) => "unknown_reason",
            R::Invalid(_) | R::WrongDomain { .. } => "invalid",
            R::Configuration(_) => "configuration",
            R::Internal(_) => "internal",
        }
    }
}
