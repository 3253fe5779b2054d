//! The engine's events as the load generator reads them: only the fields it
//! acts on, parsed straight from the JSON the API sends (serde of the
//! protobuf `Envelope`: the event is externally tagged by its kind name,
//! enums are integers). Kinds it does not act on are kept as their name.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// `OfferKind::Routed`: a conversation offered from its queue.
pub const OFFER_ROUTED: i32 = 1;
/// `OfferKind::Transfer`: a transfer to a named agent.
pub const OFFER_TRANSFER: i32 = 2;
/// `OfferKind::Conference`: an invitation into a conference.
pub const OFFER_CONFERENCE: i32 = 3;
/// `AgentStatus::Available`.
pub const STATUS_AVAILABLE: i32 = 2;
/// `AgentStatus::Rona`: the agent let an offer lapse.
pub const STATUS_RONA: i32 = 4;

/// The body of every successful command: the events it caused, durable.
#[derive(Debug, Deserialize)]
pub struct Reply {
    /// The events, in the order they were decided.
    pub events: Vec<Envelope>,
}

/// One frame of the agent WebSocket: a push, `{"sequence": N, "event":
/// Envelope}`, or the answer to a command sent on the socket,
/// `{"reply_to": id, "events": [...]}` or `{"reply_to": id, "error": {...}}`.
#[derive(Debug, Deserialize)]
pub struct Frame {
    /// The domain sequence of a pushed event (for resuming with `?after=`).
    #[serde(default)]
    pub sequence: u64,
    /// The pushed event.
    #[serde(default)]
    pub event: Option<Envelope>,
    /// The request a reply answers.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// A reply's events.
    #[serde(default)]
    pub events: Option<Vec<Envelope>>,
    /// A refusal: `{"error": kind, "message": ...}`.
    #[serde(default)]
    pub error: Option<Refusal>,
}

/// Why the engine refused a command sent on the socket.
#[derive(Debug, Default, Deserialize)]
pub struct Refusal {
    /// The API's error kind.
    #[serde(default)]
    pub error: String,
    /// What the engine said.
    #[serde(default)]
    pub message: String,
}

/// One event with its place in the log.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    /// The routing domain (tenant).
    #[serde(default)]
    pub domain: String,
    /// Its position in the domain's history.
    #[serde(default)]
    pub sequence: u64,
    /// When the engine decided it, in ms since the Unix epoch.
    #[serde(default)]
    pub at_ms: i64,
    /// What happened; `None` only for a malformed envelope.
    #[serde(default)]
    pub event: Option<Event>,
}

/// `ConversationOffered`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Offered {
    /// The offer to accept.
    pub offer_id: String,
    /// The conversation offered.
    pub conversation_id: String,
    /// The agent it is offered to.
    pub agent_id: String,
    /// The queue it comes from.
    #[serde(default)]
    pub queue_id: String,
    /// Routed, transfer or conference (see the `OFFER_*` constants).
    #[serde(default)]
    pub kind: i32,
    /// When it lapses, in ms since the Unix epoch.
    #[serde(default)]
    pub deadline_ms: i64,
}

/// An event about one offer: accepted, timed out or withdrawn.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OfferOutcome {
    /// The offer.
    pub offer_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// The agent it was offered to.
    pub agent_id: String,
    /// Routed, transfer or conference.
    #[serde(default)]
    pub kind: i32,
}

/// `AgentStateChanged`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StateChanged {
    /// The agent.
    pub agent_id: String,
    /// The status before.
    #[serde(default)]
    pub from: i32,
    /// The status after (see the `STATUS_*` constants).
    #[serde(default)]
    pub to: i32,
}

/// An event about one agent in one conversation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AgentInConversation {
    /// The conversation.
    pub conversation_id: String,
    /// The agent.
    pub agent_id: String,
}

/// An event about one conversation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ConversationRef {
    /// The conversation.
    pub conversation_id: String,
}

/// The events the load generator acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A conversation was offered to an agent.
    ConversationOffered(Offered),
    /// An offer was accepted.
    OfferAccepted(OfferOutcome),
    /// An offer lapsed: its agent is now in RONA.
    OfferTimedOut(OfferOutcome),
    /// An offer was taken back.
    OfferWithdrawn(OfferOutcome),
    /// An agent's status changed.
    AgentStateChanged(StateChanged),
    /// A conversation is over.
    ConversationEnded(ConversationRef),
    /// An agent now owes a wrap-up.
    WrapUpStarted(AgentInConversation),
    /// An agent's wrap-up is in: its capacity is free again.
    WrapUpSubmitted(AgentInConversation),
    /// An invited agent joined a conference.
    ConferenceJoined(AgentInConversation),
    /// The invited agent left the conference.
    ConferenceLeft(AgentInConversation),
    /// The owner ended the conference.
    ConferenceEnded(ConversationRef),
    /// Any other kind, by name.
    Other(String),
}

impl Event {
    /// The kind's name, as the API spells it.
    pub fn kind(&self) -> &str {
        match self {
            Event::ConversationOffered(_) => "ConversationOffered",
            Event::OfferAccepted(_) => "OfferAccepted",
            Event::OfferTimedOut(_) => "OfferTimedOut",
            Event::OfferWithdrawn(_) => "OfferWithdrawn",
            Event::AgentStateChanged(_) => "AgentStateChanged",
            Event::ConversationEnded(_) => "ConversationEnded",
            Event::WrapUpStarted(_) => "WrapUpStarted",
            Event::WrapUpSubmitted(_) => "WrapUpSubmitted",
            Event::ConferenceJoined(_) => "ConferenceJoined",
            Event::ConferenceLeft(_) => "ConferenceLeft",
            Event::ConferenceEnded(_) => "ConferenceEnded",
            Event::Other(name) => name,
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventVisitor)
    }
}

/// Reads `{"<Kind>": {...}}`, decoding the body only for the kinds acted on.
struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event as {\"<Kind>\": {...}}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let kind: String = map.next_key()?.ok_or_else(|| de::Error::custom("an event needs its kind"))?;
        let event = match kind.as_str() {
            "ConversationOffered" => Event::ConversationOffered(map.next_value()?),
            "OfferAccepted" => Event::OfferAccepted(map.next_value()?),
            "OfferTimedOut" => Event::OfferTimedOut(map.next_value()?),
            "OfferWithdrawn" => Event::OfferWithdrawn(map.next_value()?),
            "AgentStateChanged" => Event::AgentStateChanged(map.next_value()?),
            "ConversationEnded" => Event::ConversationEnded(map.next_value()?),
            "WrapUpStarted" => Event::WrapUpStarted(map.next_value()?),
            "WrapUpSubmitted" => Event::WrapUpSubmitted(map.next_value()?),
            "ConferenceJoined" => Event::ConferenceJoined(map.next_value()?),
            "ConferenceLeft" => Event::ConferenceLeft(map.next_value()?),
            "ConferenceEnded" => Event::ConferenceEnded(map.next_value()?),
            _ => {
                map.next_value::<IgnoredAny>()?;
                Event::Other(kind)
            }
        };
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::v1 as pb;

    fn envelope(sequence: u64, event: pb::envelope::Event) -> pb::Envelope {
        pb::Envelope {
            domain: "load".into(),
            sequence,
            event_id: format!("load/{sequence}"),
            at_ms: 1_700_000_000_000,
            command_id: "api/1/1".into(),
            event: Some(event),
        }
    }

    #[test]
    fn reads_the_engines_own_serialisation_of_an_offer() {
        let offer = pb::ConversationOffered {
            offer_id: "load-o7".into(),
            conversation_id: "c1".into(),
            agent_id: "agent-00001".into(),
            queue_id: "webchat-support".into(),
            kind: pb::OfferKind::Routed as i32,
            deadline_ms: 1_700_000_003_000,
            decision: Some(pb::RoutingDecision {
                strategy: pb::RoutingStrategy::LongestAvailable as i32,
                considered: 3,
                eligible: 2,
                passed_over: vec![pb::PassedOverAgent { agent_id: "b".into(), ..Default::default() }],
                ..Default::default()
            }),
        };
        let events = vec![
            envelope(7, pb::envelope::Event::ConversationOffered(offer)),
            envelope(
                8,
                pb::envelope::Event::AgentStateChanged(pb::AgentStateChanged {
                    agent_id: "a".into(),
                    from: pb::AgentStatus::Available as i32,
                    to: pb::AgentStatus::Rona as i32,
                    idle_reason: String::new(),
                    cause: 2,
                }),
            ),
            envelope(9, pb::envelope::Event::MessageRead(pb::MessageRead::default())),
        ];
        let json = serde_json::to_string(&serde_json::json!({ "events": events })).unwrap();
        let reply: Reply = serde_json::from_str(&json).unwrap();
        assert_eq!(reply.events.len(), 3);
        assert_eq!(reply.events[0].sequence, 7);
        assert_eq!(reply.events[0].domain, "load");
        assert_eq!(reply.events[0].at_ms, 1_700_000_000_000);
        let Some(Event::ConversationOffered(offer)) = &reply.events[0].event else { panic!("{:?}", reply.events[0]) };
        assert_eq!(offer.offer_id, "load-o7");
        assert_eq!(offer.agent_id, "agent-00001");
        assert_eq!(offer.kind, OFFER_ROUTED);
        assert_eq!(offer.deadline_ms, 1_700_000_003_000);
        assert_eq!(
            reply.events[1].event,
            Some(Event::AgentStateChanged(StateChanged { agent_id: "a".into(), from: 2, to: STATUS_RONA }))
        );
        assert_eq!(reply.events[2].event.as_ref().map(Event::kind), Some("MessageRead"));
    }

    #[test]
    fn reads_a_websocket_frame() {
        let wrap = envelope(
            12,
            pb::envelope::Event::WrapUpStarted(pb::WrapUpStarted {
                conversation_id: "c9".into(),
                agent_id: "a".into(),
            }),
        );
        let json = serde_json::json!({ "sequence": 12, "event": wrap }).to_string();
        let frame: Frame = serde_json::from_str(&json).unwrap();
        assert_eq!(frame.sequence, 12);
        assert_eq!(
            frame.event.unwrap().event,
            Some(Event::WrapUpStarted(AgentInConversation { conversation_id: "c9".into(), agent_id: "a".into() }))
        );
        assert!(frame.reply_to.is_none());
    }

    #[test]
    fn reads_the_answers_to_commands_sent_on_the_socket() {
        let json = serde_json::json!({ "reply_to": "r1", "events": [] }).to_string();
        let reply: Frame = serde_json::from_str(&json).unwrap();
        assert_eq!((reply.reply_to.as_deref(), reply.events.map(|e| e.len())), (Some("r1"), Some(0)));
        let json = r#"{"reply_to": "r2", "error": {"error": "offer_not_open", "message": "m"}}"#;
        let refused: Frame = serde_json::from_str(json).unwrap();
        assert_eq!(refused.error.unwrap().error, "offer_not_open");
        assert!(refused.event.is_none());
    }

    #[test]
    fn an_event_without_a_kind_is_an_error() {
        assert!(serde_json::from_str::<Event>("{}").is_err());
        assert!(serde_json::from_str::<Envelope>(r#"{"sequence": 1, "event": null}"#).unwrap().event.is_none());
    }
}
