//! One line of plain language per event, for auditors' timelines: who did
//! what, and for offers why the agent was chosen and the others were not.

use switchboard_domain::channel;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::*;

/// The time of an event as RFC 3339 with milliseconds (UTC).
pub fn timestamp(at_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

fn status(value: i32) -> &'static str {
    match AgentStatus::try_from(value).unwrap_or_default() {
        AgentStatus::Unspecified => "unspecified",
        AgentStatus::LoggedOut => "logged out",
        AgentStatus::Available => "available",
        AgentStatus::Idle => "idle",
        AgentStatus::Rona => "RONA",
    }
}

fn strategy(value: i32) -> &'static str {
    match RoutingStrategy::try_from(value).unwrap_or_default() {
        RoutingStrategy::Unspecified => "unspecified",
        RoutingStrategy::LongestAvailable => "longest available",
        RoutingStrategy::RoundRobin => "round robin",
        RoutingStrategy::LeastOccupied => "least occupied",
        RoutingStrategy::Direct => "direct",
    }
}

pub(crate) fn passed_over_reason(value: i32) -> &'static str {
    match PassedOverReason::try_from(value).unwrap_or_default() {
        PassedOverReason::Unspecified => "unspecified",
        PassedOverReason::NotAvailable => "not available",
        PassedOverReason::NoCapacity => "no free capacity",
        PassedOverReason::ShorterIdleTime => "free for less time",
        PassedOverReason::NotNextInTurn => "not next in turn",
        PassedOverReason::HigherOccupancy => "more occupied",
        PassedOverReason::AlreadyParticipating => "already in the conversation",
    }
}

fn kind(value: i32) -> &'static str {
    match OfferKind::try_from(value).unwrap_or_default() {
        OfferKind::Unspecified => "offer",
        OfferKind::Routed => "offer",
        OfferKind::Transfer => "transfer offer",
        OfferKind::Conference => "conference invitation",
    }
}

/// Why an offer went where it went, in one sentence.
pub fn decision(offer: &ConversationOffered) -> String {
    let Some(d) = &offer.decision else {
        return "no routing decision recorded".into();
    };
    let mut text = format!(
        "{}: {} considered, {} eligible; chosen holds {}/{}, free since {}",
        strategy(d.strategy),
        d.considered,
        d.eligible,
        d.chosen_load,
        d.chosen_capacity,
        timestamp(d.chosen_free_since_ms)
    );
    for p in &d.passed_over {
        text.push_str(&format!(
            "; {} passed over: {} ({}, {}/{}, free since {})",
            p.agent_id,
            passed_over_reason(p.reason),
            status(p.status),
            p.load,
            p.capacity,
            timestamp(p.free_since_ms)
        ));
    }
    if d.passed_over_unlisted > 0 {
        text.push_str(&format!("; {} more passed over", d.passed_over_unlisted));
    }
    text
}

/// A one-line description of `event`.
pub fn describe(event: &Event) -> String {
    match event {
        Event::QueueConfigured(e) => match &e.queue {
            Some(q) => format!(
                "queue {} ({}) serves {} by {}, offer timeout {} ms",
                q.queue_id,
                q.name,
                channel::name(q.channel()),
                strategy(q.strategy),
                q.offer_timeout_ms
            ),
            None => "queue configured (empty)".into(),
        },
        Event::AgentProfileConfigured(e) => match &e.profile {
            Some(p) => {
                let capacities: Vec<String> =
                    p.capacities.iter().map(|c| format!("{} {}", channel::name(c.channel()), c.max)).collect();
                format!(
                    "agent {} ({}) may take {} from queues {}",
                    p.agent_id,
                    p.name,
                    capacities.join(", "),
                    p.queue_ids.join(", ")
                )
            }
            None => "agent configured (empty)".into(),
        },
        Event::WrapUpReasonsConfigured(e) => format!("wrap-up reasons: {}", e.reasons.join(", ")),
        Event::IdleReasonsConfigured(e) => format!("idle reasons: {}", e.reasons.join(", ")),
        Event::TemplatesConfigured(e) => {
            let ids: Vec<&str> = e.templates.iter().map(|t| t.template_id.as_str()).collect();
            format!("templates: {}", if ids.is_empty() { "none".into() } else { ids.join(", ") })
        }
        Event::WorkflowsConfigured(e) => {
            let ids: Vec<&str> = e.workflows.iter().map(|w| w.workflow_id.as_str()).collect();
            format!("workflows: {}", if ids.is_empty() { "none".into() } else { ids.join(", ") })
        }
        Event::RetentionConfigured(e) if e.closed_conversation_ms == 0 => "closed conversations kept forever".into(),
        Event::RetentionConfigured(e) => {
            format!("closed conversations kept {} ms after they close", e.closed_conversation_ms)
        }
        Event::ConversationCreated(e) => {
            let customer = e.customer.clone().unwrap_or_default();
            format!(
                "{} conversation {} from {} {} to {} in queue {}",
                channel::name(e.channel()),
                e.conversation_id,
                customer.name,
                [customer.email, customer.number, customer.handle]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .unwrap_or_default(),
                e.source,
                e.queue_id
            )
        }
        Event::CustomerMessageReceived(e) => format!(
            "customer wrote in {} (message {}, {} characters, {} attachments)",
            e.conversation_id,
            e.message_id,
            e.text.chars().count(),
            e.attachments.len()
        ),
        Event::ConversationQueued(e) => format!(
            "{} queued in {} ({}), arrived {}",
            e.conversation_id,
            e.queue_id,
            match QueueReason::try_from(e.reason).unwrap_or_default() {
                QueueReason::Unspecified => "unspecified",
                QueueReason::Arrived => "arrived",
                QueueReason::OfferTimedOut => "offer timed out",
                QueueReason::Transferred => "transferred",
                QueueReason::TransferRequeued => "transfer not accepted, requeued",
                QueueReason::OfferWithdrawn => "offer withdrawn",
            },
            timestamp(e.arrived_at_ms)
        ),
        Event::ConversationOffered(e) => format!(
            "{} {} of {} to {} from {} until {}; {}",
            kind(e.kind),
            e.offer_id,
            e.conversation_id,
            e.agent_id,
            e.queue_id,
            timestamp(e.deadline_ms),
            decision(e)
        ),
        Event::OfferAccepted(e) => {
            format!("{} accepted {} {} of {}", e.agent_id, kind(e.kind), e.offer_id, e.conversation_id)
        }
        Event::OfferTimedOut(e) => {
            format!("{} did not answer {} {} of {} in time", e.agent_id, kind(e.kind), e.offer_id, e.conversation_id)
        }
        Event::OfferWithdrawn(e) => format!(
            "{} {} of {} to {} withdrawn ({})",
            kind(e.kind),
            e.offer_id,
            e.conversation_id,
            e.agent_id,
            match WithdrawReason::try_from(e.reason).unwrap_or_default() {
                WithdrawReason::Unspecified => "unspecified",
                WithdrawReason::CustomerLeft => "customer left",
                WithdrawReason::AgentLoggedOut => "agent logged out",
                WithdrawReason::AgentWentIdle => "agent went idle",
                WithdrawReason::ConversationEnded => "conversation ended",
            }
        ),
        Event::AgentStateChanged(e) => format!(
            "{} went from {} to {}{}{}",
            e.agent_id,
            status(e.from),
            status(e.to),
            if e.idle_reason.is_empty() { String::new() } else { format!(" ({})", e.idle_reason) },
            if e.cause() == StateChangeCause::NoAnswer { ", offer not answered" } else { "" }
        ),
        Event::AgentMessageSent(e) => format!(
            "{} wrote in {} (message {}, {} characters)",
            e.agent_id,
            e.conversation_id,
            e.message_id,
            e.text.chars().count()
        ),
        Event::MessageDelivered(e) => format!("message {} in {} delivered", e.message_id, e.conversation_id),
        Event::MessageRead(e) => format!("message {} in {} read", e.message_id, e.conversation_id),
        Event::TransferRequested(e) => format!(
            "{} transfers {} to {}",
            e.from_agent_id,
            e.conversation_id,
            match &e.target {
                Some(transfer_requested::Target::ToQueueId(q)) => format!("queue {q}"),
                Some(transfer_requested::Target::ToAgentId(a)) => format!("agent {a}"),
                None => "nowhere".into(),
            }
        ),
        Event::TransferCompleted(e) => format!(
            "transfer of {} completed to {}",
            e.conversation_id,
            match &e.target {
                Some(transfer_completed::Target::ToQueueId(q)) => format!("queue {q}"),
                Some(transfer_completed::Target::ToAgentId(a)) => format!("agent {a}"),
                None => "nowhere".into(),
            }
        ),
        Event::TransferFailed(e) => format!(
            "transfer of {} to {} not accepted: {}",
            e.conversation_id,
            e.to_agent_id,
            if e.outcome() == TransferOutcome::Requeued {
                format!("requeued in {}", e.queue_id)
            } else {
                "dropped".into()
            }
        ),
        Event::ConferenceRequested(e) if e.queue_id.is_empty() => {
            format!("{} invites {} into {}", e.owner_agent_id, e.invitee_agent_id, e.conversation_id)
        }
        Event::ConferenceRequested(e) => format!(
            "{} invites queue {} into {}: {} is picked",
            e.owner_agent_id, e.queue_id, e.conversation_id, e.invitee_agent_id
        ),
        Event::ConferenceJoined(e) => format!("{} joined {}", e.agent_id, e.conversation_id),
        Event::ConferenceLeft(e) => format!("{} left the conference in {}", e.agent_id, e.conversation_id),
        Event::ConferenceEnded(e) => format!("{} ended the conference in {}", e.owner_agent_id, e.conversation_id),
        Event::ConversationEnded(e) => format!(
            "{} ended {}",
            e.conversation_id,
            match e.by() {
                EndedBy::Agent => format!("by agent {}", e.agent_id),
                EndedBy::Customer => "by the customer".into(),
                EndedBy::TransferDropped => "after a transfer was not accepted".into(),
                EndedBy::Unspecified => "(unspecified)".into(),
            }
        ),
        Event::WrapUpStarted(e) => format!("{} in wrap-up for {}", e.agent_id, e.conversation_id),
        Event::WrapUpSubmitted(e) => format!(
            "{} wrapped up {}: {}",
            e.agent_id,
            e.conversation_id,
            if e.automatic { "automatically".into() } else { e.reasons.join(", ") }
        ),
        Event::WorkflowTriggered(e) => {
            format!("{} started workflow {} in {}", e.agent_id, e.workflow_id, e.conversation_id)
        }
        Event::AnnouncementPosted(e) => format!("{} announced: {}", e.supervisor_id, e.text),
    }
}

/// The conversation and the agents an event concerns, for timelines and
/// for checking invariants only where something changed.
pub fn touched(event: &Event) -> (Option<&str>, Vec<&str>) {
    match event {
        Event::QueueConfigured(_)
        | Event::WrapUpReasonsConfigured(_)
        | Event::IdleReasonsConfigured(_)
        | Event::RetentionConfigured(_)
        | Event::TemplatesConfigured(_)
        | Event::WorkflowsConfigured(_)
        | Event::AnnouncementPosted(_) => (None, vec![]),
        Event::AgentProfileConfigured(e) => (None, e.profile.iter().map(|p| p.agent_id.as_str()).collect()),
        Event::ConversationCreated(e) => (Some(&e.conversation_id), vec![]),
        Event::CustomerMessageReceived(e) => (Some(&e.conversation_id), vec![]),
        Event::ConversationQueued(e) => (Some(&e.conversation_id), vec![]),
        Event::ConversationOffered(e) => (Some(&e.conversation_id), vec![&e.agent_id]),
        Event::OfferAccepted(e) => (Some(&e.conversation_id), vec![&e.agent_id]),
        Event::OfferTimedOut(e) => (Some(&e.conversation_id), vec![&e.agent_id]),
        Event::OfferWithdrawn(e) => (Some(&e.conversation_id), vec![&e.agent_id]),
        Event::AgentStateChanged(e) => (None, vec![&e.agent_id]),
        Event::AgentMessageSent(e) => (Some(&e.conversation_id), vec![&e.agent_id]),
        Event::MessageDelivered(e) => (Some(&e.conversation_id), vec![]),
        Event::MessageRead(e) => (Some(&e.conversation_id), vec![]),
        Event::TransferRequested(e) => {
            let mut agents = vec![e.from_agent_id.as_str()];
            if let Some(transfer_requested::Target::ToAgentId(a)) = &e.target {
                agents.push(a);
            }
            (Some(&e.conversation_id), agents)
        }
        Event::TransferCompleted(e) => match &e.target {
            Some(transfer_completed::Target::ToAgentId(a)) => (Some(&e.conversation_id), vec![a.as_str()]),
            _ => (Some(&e.conversation_id), vec![]),
        },
        Event::TransferFailed(e) => (Some(&e.conversation_id), vec![&e.to_agent_id]),
        Event::ConferenceRequested(e) => (Some(&e.conversation_id), vec![&e.owner_agent_id, &e.invitee_agent_id]),
        Event::ConferenceJoined(e) => (Some(&e.conversation_id), vec![&e.agent_id]),
        Event::ConferenceLeft(e) => (Some(&e.conversation_id), vec![&e.agent_id]),
        Event::ConferenceEnded(e) => (Some(&e.conversation_id), vec![&e.owner_agent_id]),
        Event::ConversationEnded(e) if e.agent_id.is_empty() => (Some(&e.conversation_id), vec![]),
        Event::ConversationEnded(e) => (Some(&e.conversation_id), vec![&e.agent_id]),
        Event::WrapUpStarted(e) => (Some(&e.conversation_id), vec![&e.agent_id]),
        Event::WrapUpSubmitted(e) => (Some(&e.conversation_id), vec![&e.agent_id]),
        Event::WorkflowTriggered(e) => (Some(&e.conversation_id), vec![&e.agent_id]),
    }
}
