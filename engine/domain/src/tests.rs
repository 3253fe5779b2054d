//! Given/when/then tests of every rule of SPEC.md, through `execute` only.
//! Every command run by the fixture is followed by a full invariant check.

use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::*;

use crate::state::{Place, Role};
use crate::{event_name, DomainState, Rejection};

pub(crate) const QUEUE_CHAT: &str = "chat";
pub(crate) const QUEUE_CHAT_REQUEUE: &str = "chat-requeue";
pub(crate) const QUEUE_EMAIL: &str = "mail";
pub(crate) const QUEUE_WHATSAPP: &str = "wa";
pub(crate) const OFFER_TIMEOUT_MS: u64 = 30_000;

/// A domain with four queues (webchat with drop policy, webchat with
/// requeue policy, email, WhatsApp), wrap-up and idle reasons.
pub(crate) struct Fixture {
    pub state: DomainState,
    pub last: Vec<Envelope>,
    pub history: Vec<Envelope>,
    now: i64,
    commands: u64,
}

pub(crate) fn queue(
    id: &str,
    channel: Channel,
    strategy: RoutingStrategy,
    policy: TransferTimeoutPolicy,
) -> QueueConfig {
    QueueConfig {
        queue_id: id.into(),
        name: format!("{id} queue"),
        channel: channel as i32,
        strategy: strategy as i32,
        offer_timeout_ms: OFFER_TIMEOUT_MS,
        transfer_timeout_policy: policy as i32,
        priority: 0,
        auto_wrap_up_ms: 0,
    }
}

impl Fixture {
    pub fn new(strategy: RoutingStrategy) -> Self {
        let mut f =
            Fixture { state: DomainState::new("acme"), last: Vec::new(), history: Vec::new(), now: 0, commands: 0 };
        for q in [
            queue(QUEUE_CHAT, Channel::Webchat, strategy, TransferTimeoutPolicy::Drop),
            queue(QUEUE_CHAT_REQUEUE, Channel::Webchat, strategy, TransferTimeoutPolicy::Requeue),
            queue(QUEUE_EMAIL, Channel::Email, strategy, TransferTimeoutPolicy::Drop),
            queue(QUEUE_WHATSAPP, Channel::Whatsapp, strategy, TransferTimeoutPolicy::Drop),
        ] {
            f.ok(C::ConfigureQueue(ConfigureQueue { queue: Some(q) }));
        }
        f.ok(C::ConfigureWrapUpReasons(ConfigureWrapUpReasons {
            reasons: vec!["sale".into(), "support".into(), "other".into()],
        }));
        f.ok(C::ConfigureIdleReasons(ConfigureIdleReasons { reasons: vec!["lunch".into(), "training".into()] }));
        f
    }

    /// Runs a command at the fixture's clock and checks every invariant after it.
    pub fn run(&mut self, command: C) -> Result<Vec<Envelope>, Rejection> {
        self.commands += 1;
        self.now = self.now.max(self.state.last_at_ms);
        let command = Command {
            command_id: format!("cmd-{}", self.commands),
            domain: "acme".into(),
            at_ms: self.now,
            command: Some(command),
        };
        let before = self.state.last_sequence;
        let result = self.state.execute(&command);
        if let Err(violation) = self.state.check_invariants() {
            panic!("invariant broken after {command:?}: {violation}");
        }
        match &result {
            Ok(events) => {
                self.last = events.clone();
                self.history.extend(events.iter().cloned());
            }
            Err(_) => assert_eq!(self.state.last_sequence, before, "a rejected command emitted events"),
        }
        result
    }

    pub fn ok(&mut self, command: C) -> &mut Self {
        if let Err(rejection) = self.run(command.clone()) {
            panic!("{command:?} rejected: {rejection}");
        }
        self
    }

    pub fn at(&mut self, at_ms: i64) -> &mut Self {
        self.now = at_ms;
        self
    }

    pub fn agent(&mut self, id: &str, capacity: u32) -> &mut Self {
        let capacities = [Channel::Webchat, Channel::Email, Channel::Whatsapp]
            .into_iter()
            .map(|channel| ChannelCapacity { channel: channel as i32, max: capacity })
            .collect();
        let queue_ids = vec![QUEUE_CHAT.into(), QUEUE_CHAT_REQUEUE.into(), QUEUE_EMAIL.into(), QUEUE_WHATSAPP.into()];
        self.ok(C::ConfigureAgent(ConfigureAgent {
            profile: Some(AgentProfile { agent_id: id.into(), name: id.to_uppercase(), capacities, queue_ids }),
        }))
    }

    pub fn set_state(&mut self, id: &str, status: AgentStatus, reason: &str) -> Result<Vec<Envelope>, Rejection> {
        self.run(C::SetAgentState(SetAgentState {
            agent_id: id.into(),
            status: status as i32,
            idle_reason: reason.into(),
        }))
    }

    pub fn available(&mut self, id: &str, at_ms: i64) -> &mut Self {
        self.at(at_ms);
        self.set_state(id, AgentStatus::Available, "").expect("set available");
        self
    }

    pub fn customer_writes(&mut self, conversation: &str, queue_id: &str, at_ms: i64) -> &mut Self {
        let channel = self.state.queues[queue_id].config.channel;
        self.at(at_ms).ok(C::ReceiveCustomerMessage(ReceiveCustomerMessage {
            conversation_id: conversation.into(),
            channel,
            queue_id: queue_id.into(),
            customer: Some(Customer { name: "Kim".into(), email: "kim@example.com".into(), ..Default::default() }),
            source: "site".into(),
            message_id: format!("{conversation}-m1"),
            external_id: format!("{conversation}-x1"),
            text: "hello".into(),
            ..Default::default()
        }))
    }

    pub fn accept(&mut self, agent: &str, offer_id: &str) -> Result<Vec<Envelope>, Rejection> {
        self.run(C::AcceptOffer(AcceptOffer { agent_id: agent.into(), offer_id: offer_id.into() }))
    }

    pub fn expire(&mut self, offer_id: &str, at_ms: i64) -> Result<Vec<Envelope>, Rejection> {
        self.at(at_ms).run(C::ExpireOffer(ExpireOffer { offer_id: offer_id.into() }))
    }

    /// The last offer made by the last command.
    pub fn offered(&self) -> ConversationOffered {
        self.last
            .iter()
            .rev()
            .find_map(|e| match &e.event {
                Some(Event::ConversationOffered(o)) => Some(o.clone()),
                _ => None,
            })
            .expect("the last command made an offer")
    }

    /// Kinds of the events of the last command.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.last.iter().filter_map(|e| e.event.as_ref()).map(event_name).collect()
    }

    /// Makes `agent` own `conversation` (offered and accepted).
    pub fn owns(&mut self, agent: &str, conversation: &str, queue_id: &str) -> &mut Self {
        let at = self.now + 1;
        self.customer_writes(conversation, queue_id, at);
        let offer = self.offered();
        assert_eq!(offer.agent_id, agent, "fixture expected {agent} to be offered {conversation}");
        self.accept(agent, &offer.offer_id).expect("accept");
        self
    }

    pub fn status(&self, agent: &str) -> AgentStatus {
        self.state.agents[agent].status
    }

    pub fn place(&self, conversation: &str) -> Place {
        self.state.conversations[conversation].place()
    }

    pub fn message(
        &mut self,
        agent: &str,
        conversation: &str,
        id: &str,
        text: &str,
    ) -> Result<Vec<Envelope>, Rejection> {
        self.run(C::SendAgentMessage(SendAgentMessage {
            agent_id: agent.into(),
            conversation_id: conversation.into(),
            message_id: id.into(),
            text: text.into(),
            ..Default::default()
        }))
    }

    pub fn transfer(
        &mut self,
        agent: &str,
        conversation: &str,
        target: transfer::Target,
    ) -> Result<Vec<Envelope>, Rejection> {
        self.run(C::Transfer(Transfer {
            agent_id: agent.into(),
            conversation_id: conversation.into(),
            target: Some(target),
        }))
    }

    pub fn wrap_up(&mut self, agent: &str, conversation: &str, reasons: &[&str]) -> Result<Vec<Envelope>, Rejection> {
        self.run(C::SubmitWrapUp(SubmitWrapUp {
            agent_id: agent.into(),
            conversation_id: conversation.into(),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
        }))
    }

    pub fn end(&mut self, agent: &str, conversation: &str) -> Result<Vec<Envelope>, Rejection> {
        self.run(C::EndConversation(EndConversation { agent_id: agent.into(), conversation_id: conversation.into() }))
    }

    pub fn invite(&mut self, owner: &str, conversation: &str, invitee: &str) -> Result<Vec<Envelope>, Rejection> {
        self.run(C::RequestConference(RequestConference {
            agent_id: owner.into(),
            conversation_id: conversation.into(),
            invitee_agent_id: invitee.into(),
            ..Default::default()
        }))
    }

    /// The owner of `conversation` asks `queue` to pick the invitee.
    pub fn invite_queue(&mut self, owner: &str, conversation: &str, queue: &str) -> Result<Vec<Envelope>, Rejection> {
        self.run(C::RequestConference(RequestConference {
            agent_id: owner.into(),
            conversation_id: conversation.into(),
            invitee_queue_id: queue.into(),
            ..Default::default()
        }))
    }
}

#[test]
fn an_arriving_conversation_is_created_queued_and_offered_to_an_available_agent() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 2).available("amy", 100);
    f.customer_writes("c1", QUEUE_CHAT, 1_000);
    assert_eq!(
        f.kinds(),
        ["ConversationCreated", "CustomerMessageReceived", "ConversationQueued", "ConversationOffered"]
    );
    let offer = f.offered();
    assert_eq!((offer.agent_id.as_str(), offer.queue_id.as_str()), ("amy", QUEUE_CHAT));
    assert_eq!(offer.deadline_ms, 1_000 + OFFER_TIMEOUT_MS as i64);
    assert_eq!(f.place("c1"), Place::Offered);
    assert!(f.last.iter().all(|e| e.command_id == f.last[0].command_id && e.at_ms == 1_000));
    let sequences: Vec<u64> = f.last.iter().map(|e| e.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "gapless: {sequences:?}");

    f.accept("amy", &offer.offer_id).unwrap();
    assert_eq!(f.kinds(), ["OfferAccepted"]);
    assert_eq!(f.place("c1"), Place::Active);
    assert_eq!(f.state.conversations["c1"].owner.as_deref(), Some("amy"));
}

#[test]
fn only_available_agents_with_free_capacity_receive_offers() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("idle", 5).agent("out", 5).agent("one", 1);
    f.set_state("idle", AgentStatus::Idle, "lunch").unwrap();
    f.available("one", 10);
    f.owns("one", "c1", QUEUE_CHAT);
    f.customer_writes("c2", QUEUE_CHAT, 100);
    assert!(!f.kinds().contains(&"ConversationOffered"), "nobody may take c2: {:?}", f.kinds());
    assert_eq!(f.place("c2"), Place::Queued);
    // Capacity is per channel: an email still reaches the agent full on chat.
    f.customer_writes("e1", QUEUE_EMAIL, 200);
    assert_eq!(f.offered().agent_id, "one");
}

#[test]
fn an_unanswered_offer_puts_the_agent_in_rona_and_the_conversation_back_ahead_of_later_arrivals() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0);
    f.customer_writes("first", QUEUE_CHAT, 1_000);
    let offer = f.offered();
    f.customer_writes("later", QUEUE_CHAT, 2_000);

    assert!(
        matches!(f.expire(&offer.offer_id, 5_000), Err(Rejection::OfferNotDue { .. })),
        "a timer firing early changes nothing"
    );
    f.expire(&offer.offer_id, offer.deadline_ms).unwrap();
    assert_eq!(f.kinds(), ["OfferTimedOut", "AgentStateChanged", "ConversationQueued"]);
    assert_eq!(f.status("amy"), AgentStatus::Rona);
    let waiting: Vec<_> = f.state.queues[QUEUE_CHAT].waiting.iter().map(|k| k.conversation_id.as_str()).collect();
    assert_eq!(waiting, ["first", "later"]);
    assert_eq!(f.state.conversations["first"].arrived_at_ms, 1_000, "keeps its arrival time");

    // The timed-out offer can no longer be accepted, and a second timer is a no-op.
    assert_eq!(f.accept("amy", &offer.offer_id), Err(Rejection::OfferNotOpen(offer.offer_id.clone())));
    assert_eq!(f.expire(&offer.offer_id, offer.deadline_ms + 1), Ok(vec![]));

    // RONA is left only by hand; then "first" is offered again, before "later".
    assert!(matches!(f.set_state("amy", AgentStatus::Rona, ""), Err(Rejection::StateChangeRefused { .. })));
    f.available("amy", 40_000);
    assert_eq!(f.offered().conversation_id, "first");
}

#[test]
fn higher_priority_conversations_are_offered_first() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1);
    f.customer_writes("normal", QUEUE_CHAT, 100);
    f.at(200).ok(C::ReceiveCustomerMessage(ReceiveCustomerMessage {
        conversation_id: "vip".into(),
        channel: Channel::Webchat as i32,
        queue_id: QUEUE_CHAT.into(),
        priority: 5,
        message_id: "vip-1".into(),
        text: "hi".into(),
        ..Default::default()
    }));
    f.available("amy", 300);
    assert_eq!(f.offered().conversation_id, "vip");
}

#[test]
fn customer_messages_are_idempotent_on_the_sender_id() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.customer_writes("c1", QUEUE_CHAT, 100);
    let again = ReceiveCustomerMessage {
        conversation_id: "c1".into(),
        channel: Channel::Webchat as i32,
        queue_id: QUEUE_CHAT.into(),
        message_id: "other".into(),
        external_id: "c1-x1".into(),
        text: "hello".into(),
        ..Default::default()
    };
    assert_eq!(f.run(C::ReceiveCustomerMessage(again.clone())), Ok(vec![]));
    let fresh = ReceiveCustomerMessage { external_id: "c1-x2".into(), ..again };
    f.ok(C::ReceiveCustomerMessage(fresh));
    assert_eq!(f.kinds(), ["CustomerMessageReceived"]);
    assert_eq!(f.state.conversations["c1"].customer_messages, 2);
}

#[test]
fn messages_over_the_channel_limit_are_refused_naming_the_limit_and_nothing_is_sent() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 3).available("amy", 0);
    f.owns("amy", "chat", QUEUE_CHAT).owns("amy", "wa", QUEUE_WHATSAPP).owns("amy", "mail", QUEUE_EMAIL);
    let sequence = f.state.last_sequence;
    let refused = f.message("amy", "chat", "m1", &"x".repeat(1001)).unwrap_err();
    assert_eq!(refused, Rejection::MessageTooLong { channel: "webchat", limit: 1000, length: 1001 });
    assert!(refused.to_string().contains("1000"), "{refused}");
    assert_eq!(f.state.last_sequence, sequence);
    f.message("amy", "chat", "m1", &"é".repeat(1000)).unwrap();
    assert!(matches!(
        f.message("amy", "wa", "m2", &"x".repeat(4097)),
        Err(Rejection::MessageTooLong { limit: 4096, .. })
    ));
    f.message("amy", "wa", "m2", &"x".repeat(4096)).unwrap();
    f.message("amy", "mail", "m3", &"x".repeat(100_000)).unwrap();
    // A retried send with the same id records nothing twice.
    assert_eq!(f.message("amy", "chat", "m1", "again"), Ok(vec![]));
}

#[test]
fn attachments_name_their_file_and_only_an_email_shows_an_image_inline() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 2).available("amy", 0);
    f.owns("amy", "chat", QUEUE_CHAT).owns("amy", "mail", QUEUE_EMAIL);
    let file = |name: &str, url: &str, inline: bool| Attachment {
        name: name.into(),
        url: url.into(),
        content_type: "image/png".into(),
        inline,
        ..Default::default()
    };
    let mut send = |conversation: &str, id: &str, attachment: Attachment| {
        f.run(C::SendAgentMessage(SendAgentMessage {
            agent_id: "amy".into(),
            conversation_id: conversation.into(),
            message_id: id.into(),
            attachments: vec![attachment],
            ..Default::default()
        }))
    };
    let refused = send("chat", "m1", file("logo.png", "https://files/1", true)).unwrap_err();
    assert_eq!(refused, Rejection::NotAllowedOnChannel { channel: "webchat", what: "inline images" });
    let refused = send("chat", "m1", file("logo.png", "", false)).unwrap_err();
    assert!(matches!(&refused, Rejection::Invalid(why) if why.contains("name and a url")), "{refused}");
    send("chat", "m1", file("logo.png", "https://files/1", false)).unwrap();
    send("mail", "m2", file("logo.png", "https://files/1", true)).unwrap();
    // The thread keeps them.
    assert_eq!(f.state.conversations["mail"].thread.last().unwrap().attachments[0].name, "logo.png");
}

#[test]
fn receipts_follow_the_channel_delivery_everywhere_but_webchat_read_on_whatsapp_only() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 3).available("amy", 0);
    f.owns("amy", "chat", QUEUE_CHAT).owns("amy", "wa", QUEUE_WHATSAPP);
    f.message("amy", "chat", "m1", "hi").unwrap();
    f.message("amy", "wa", "m2", "hi").unwrap();
    let receipt = |conversation: &str, message: &str, read| {
        C::RecordReceipt(RecordReceipt { conversation_id: conversation.into(), message_id: message.into(), read })
    };
    assert!(matches!(f.run(receipt("chat", "m1", false)), Err(Rejection::NotAllowedOnChannel { .. })));
    f.ok(receipt("wa", "m2", false));
    assert_eq!(f.kinds(), ["MessageDelivered"]);
    f.ok(receipt("wa", "m2", true));
    assert_eq!(f.kinds(), ["MessageRead"]);
    assert_eq!(f.run(receipt("wa", "m2", true)), Ok(vec![]), "a repeated receipt is recorded once");
    assert!(matches!(f.run(receipt("wa", "nope", false)), Err(Rejection::UnknownMessage { .. })));
    let receipts = f.state.conversations["wa"].agent_messages.get("m2").copied().unwrap();
    assert!(receipts.delivered && receipts.read);
}

#[test]
fn transfer_to_a_queue_sends_the_agent_to_wrap_up_and_the_conversation_to_the_queue() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0).agent("bob", 1);
    f.owns("amy", "c1", QUEUE_CHAT);
    f.transfer("amy", "c1", transfer::Target::ToQueueId(QUEUE_CHAT_REQUEUE.into())).unwrap();
    assert_eq!(f.kinds(), ["TransferRequested", "WrapUpStarted", "ConversationQueued", "TransferCompleted"]);
    assert_eq!(f.place("c1"), Place::Queued);
    assert!(matches!(f.state.agents["amy"].holdings["c1"].role, Role::WrapUp { .. }));
    // Amy is still in wrap-up for c1 (capacity 1): bob gets it when available.
    f.available("bob", 10_000);
    assert_eq!(f.offered().agent_id, "bob");
}

#[test]
fn transfer_to_an_agent_is_offered_to_them_and_completes_on_accept() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0).agent("bob", 1);
    f.owns("amy", "c1", QUEUE_CHAT);
    let refused = f.transfer("amy", "c1", transfer::Target::ToAgentId("bob".into())).unwrap_err();
    assert!(
        matches!(&refused, Rejection::TargetUnavailable { reason, .. } if reason.contains("logged out")),
        "{refused}"
    );
    f.available("bob", 100);
    f.transfer("amy", "c1", transfer::Target::ToAgentId("bob".into())).unwrap();
    assert_eq!(f.kinds(), ["TransferRequested", "WrapUpStarted", "ConversationOffered"]);
    let offer = f.offered();
    assert_eq!(offer.kind(), OfferKind::Transfer);
    assert_eq!(offer.decision.as_ref().unwrap().strategy(), RoutingStrategy::Direct);
    f.accept("bob", &offer.offer_id).unwrap();
    assert_eq!(f.kinds(), ["OfferAccepted", "TransferCompleted"]);
    assert_eq!(f.state.conversations["c1"].owner.as_deref(), Some("bob"));
    f.wrap_up("amy", "c1", &["support"]).unwrap();
}

#[test]
fn the_thread_keeps_every_message_in_order_for_whoever_takes_the_conversation_over() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0).agent("bob", 1).available("bob", 0);
    f.owns("amy", "c1", QUEUE_CHAT);
    f.message("amy", "c1", "a1", "How can I help?").unwrap();
    f.at(5_000).transfer("amy", "c1", transfer::Target::ToAgentId("bob".into())).unwrap();
    let offer = f.offered();
    f.accept("bob", &offer.offer_id).unwrap();
    f.message("bob", "c1", "b1", "Bob here").unwrap();
    let thread: Vec<(Option<&str>, &str, &str)> = f.state.conversations["c1"]
        .thread
        .iter()
        .map(|m| (m.agent_id.as_deref(), m.message_id.as_str(), m.text.as_str()))
        .collect();
    assert_eq!(
        thread,
        [(None, "c1-m1", "hello"), (Some("amy"), "a1", "How can I help?"), (Some("bob"), "b1", "Bob here")]
    );
    // A refused message is not in it.
    f.message("bob", "c1", "b2", &"x".repeat(5_000)).unwrap_err();
    assert_eq!(f.state.conversations["c1"].thread.len(), 3);
    // It is kept through the wrap-ups and let go once the conversation closes.
    f.end("bob", "c1").unwrap();
    f.wrap_up("amy", "c1", &["support"]).unwrap();
    assert_eq!(f.state.conversations["c1"].thread.len(), 3, "bob still owes a wrap-up");
    f.wrap_up("bob", "c1", &["support"]).unwrap();
    assert!(f.state.conversations["c1"].thread.is_empty());
}

#[test]
fn a_lapsed_transfer_to_an_agent_is_dropped_or_requeued_by_the_queue_policy() {
    for (queue_id, requeued) in [(QUEUE_CHAT, false), (QUEUE_CHAT_REQUEUE, true)] {
        let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
        f.agent("amy", 1).available("amy", 0).agent("bob", 1).available("bob", 50);
        f.customer_writes("c1", queue_id, 100);
        let first = f.offered();
        assert_eq!(first.agent_id, "amy");
        f.accept("amy", &first.offer_id).unwrap();
        f.transfer("amy", "c1", transfer::Target::ToAgentId("bob".into())).unwrap();
        let offer = f.offered();
        f.expire(&offer.offer_id, offer.deadline_ms).unwrap();
        assert_eq!(f.status("bob"), AgentStatus::Rona);
        if requeued {
            assert_eq!(f.kinds(), ["OfferTimedOut", "AgentStateChanged", "TransferFailed", "ConversationQueued"]);
            assert_eq!(f.place("c1"), Place::Queued);
            assert_eq!(f.state.conversations["c1"].queue_id, QUEUE_CHAT_REQUEUE);
        } else {
            assert_eq!(f.kinds(), ["OfferTimedOut", "AgentStateChanged", "TransferFailed", "ConversationEnded"]);
            assert_eq!(f.place("c1"), Place::WrapUp, "amy still owes her wrap-up");
            f.wrap_up("amy", "c1", &["other"]).unwrap();
            assert_eq!(f.place("c1"), Place::Closed);
        }
    }
}

#[test]
fn email_is_transferred_to_queues_only_and_never_conferenced() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0).agent("bob", 1).available("bob", 10);
    f.owns("amy", "e1", QUEUE_EMAIL);
    let refused = f.transfer("amy", "e1", transfer::Target::ToAgentId("bob".into())).unwrap_err();
    assert!(matches!(refused, Rejection::NotAllowedOnChannel { channel: "email", .. }), "{refused}");
    assert!(matches!(f.invite("amy", "e1", "bob"), Err(Rejection::NotAllowedOnChannel { channel: "email", .. })));
    // A chat queue is not a target for an email either.
    assert!(matches!(
        f.transfer("amy", "e1", transfer::Target::ToQueueId(QUEUE_CHAT.into())),
        Err(Rejection::ChannelMismatch { .. })
    ));
    f.transfer("amy", "e1", transfer::Target::ToQueueId(QUEUE_EMAIL.into())).unwrap();
}

#[test]
fn a_conference_goes_from_requested_to_joined_and_the_invitee_may_leave() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 2).available("amy", 0).agent("bob", 2);
    f.owns("amy", "c1", QUEUE_WHATSAPP);
    f.available("bob", 50);
    f.invite("amy", "c1", "bob").unwrap();
    assert_eq!(f.kinds(), ["ConferenceRequested", "ConversationOffered"]);
    assert!(matches!(f.invite("amy", "c1", "bob"), Err(Rejection::ConferenceInProgress(_))));
    let offer = f.offered();
    f.accept("bob", &offer.offer_id).unwrap();
    assert_eq!(f.kinds(), ["OfferAccepted", "ConferenceJoined"]);
    f.message("bob", "c1", "b1", "hello from bob").unwrap();
    // Only the owner ends the conference or the conversation.
    assert!(matches!(
        f.run(C::EndConference(EndConference { agent_id: "bob".into(), conversation_id: "c1".into() })),
        Err(Rejection::NotOwner { .. })
    ));
    assert!(matches!(f.end("bob", "c1"), Err(Rejection::NotOwner { .. })));
    f.ok(C::LeaveConference(LeaveConference { agent_id: "bob".into(), conversation_id: "c1".into() }));
    assert_eq!(f.kinds(), ["ConferenceLeft", "WrapUpStarted"]);
    assert_eq!(f.place("c1"), Place::Active, "the chat goes on between owner and customer");
    assert!(matches!(f.message("bob", "c1", "b2", "still here?"), Err(Rejection::NotParticipant { .. })));
    f.message("amy", "c1", "a1", "I'm still here").unwrap();
}

#[test]
fn the_owner_ending_the_conference_sends_both_agents_to_wrap_up() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 2).available("amy", 0).agent("bob", 2);
    f.owns("amy", "c1", QUEUE_CHAT);
    f.available("bob", 50);
    f.invite("amy", "c1", "bob").unwrap();
    let offer = f.offered();
    f.accept("bob", &offer.offer_id).unwrap();
    f.ok(C::EndConference(EndConference { agent_id: "amy".into(), conversation_id: "c1".into() }));
    assert_eq!(f.kinds(), ["ConferenceEnded", "ConversationEnded", "WrapUpStarted", "WrapUpStarted"]);
    assert_eq!(f.place("c1"), Place::WrapUp);
    f.wrap_up("bob", "c1", &["support"]).unwrap();
    assert_eq!(f.place("c1"), Place::WrapUp);
    f.wrap_up("amy", "c1", &["sale", "support"]).unwrap();
    assert_eq!(f.place("c1"), Place::Closed);
}

#[test]
fn an_unanswered_conference_invitation_lapses_and_the_invitee_goes_to_rona() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 2).available("amy", 0).agent("bob", 2);
    f.owns("amy", "c1", QUEUE_CHAT);
    f.available("bob", 50);
    f.invite("amy", "c1", "bob").unwrap();
    let offer = f.offered();
    f.expire(&offer.offer_id, offer.deadline_ms).unwrap();
    assert_eq!(f.kinds(), ["OfferTimedOut", "AgentStateChanged"]);
    assert_eq!(f.status("bob"), AgentStatus::Rona);
    assert!(f.state.conversations["c1"].conference.is_none());
    assert_eq!(f.place("c1"), Place::Active);
}

#[test]
fn ending_by_the_customer_withdraws_open_offers_and_sends_every_participant_to_wrap_up() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 2).available("amy", 0).agent("bob", 2);
    f.customer_writes("offered", QUEUE_CHAT, 10);
    f.ok(C::CustomerLeave(CustomerLeave { conversation_id: "offered".into() }));
    assert_eq!(f.kinds(), ["OfferWithdrawn", "ConversationEnded"]);
    assert_eq!(f.place("offered"), Place::Closed);
    assert!(f.state.offers.is_empty());

    f.owns("amy", "c1", QUEUE_CHAT);
    f.available("bob", 100);
    f.invite("amy", "c1", "bob").unwrap();
    let invitation = f.offered();
    f.accept("bob", &invitation.offer_id).unwrap();
    f.ok(C::CustomerLeave(CustomerLeave { conversation_id: "c1".into() }));
    assert_eq!(f.kinds(), ["ConversationEnded", "WrapUpStarted", "WrapUpStarted"]);
    let ended = &f.last[0];
    assert!(matches!(&ended.event, Some(Event::ConversationEnded(e)) if e.by() == EndedBy::Customer));
    assert_eq!(f.state.conversations["c1"].wrapping_up.len(), 2);
    assert!(matches!(f.message("amy", "c1", "late", "hello?"), Err(Rejection::ConversationEnded(_))));
    assert!(matches!(
        f.run(C::CustomerLeave(CustomerLeave { conversation_id: "c1".into() })),
        Err(Rejection::ConversationEnded(_))
    ));
}

#[test]
fn wrap_up_needs_configured_reasons_and_only_then_frees_the_capacity() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0);
    f.owns("amy", "c1", QUEUE_CHAT);
    f.end("amy", "c1").unwrap();
    assert_eq!(f.kinds(), ["ConversationEnded", "WrapUpStarted"]);
    f.customer_writes("c2", QUEUE_CHAT, 1_000);
    assert_eq!(f.place("c2"), Place::Queued, "wrap-up still holds amy's only chat slot");
    assert!(matches!(f.wrap_up("amy", "c1", &[]), Err(Rejection::Invalid(_))));
    assert_eq!(f.wrap_up("amy", "c1", &["sale", "bogus"]), Err(Rejection::UnknownWrapUpReason("bogus".into())));
    f.wrap_up("amy", "c1", &["sale", "support"]).unwrap();
    assert_eq!(f.kinds(), ["WrapUpSubmitted", "ConversationOffered"]);
    assert_eq!(f.offered().conversation_id, "c2");
    assert!(matches!(f.wrap_up("amy", "c1", &["sale"]), Err(Rejection::NoWrapUpPending { .. })));
}

#[test]
fn automatic_wrap_up_frees_the_agent_after_the_configured_time() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    let mut q = queue("auto", Channel::Sms, RoutingStrategy::LongestAvailable, TransferTimeoutPolicy::Drop);
    q.auto_wrap_up_ms = 60_000;
    f.ok(C::ConfigureQueue(ConfigureQueue { queue: Some(q) }));
    f.ok(C::ConfigureAgent(ConfigureAgent {
        profile: Some(AgentProfile {
            agent_id: "amy".into(),
            name: "Amy".into(),
            capacities: vec![ChannelCapacity { channel: Channel::Sms as i32, max: 1 }],
            queue_ids: vec!["auto".into()],
        }),
    }));
    f.available("amy", 0);
    f.owns("amy", "s1", "auto");
    f.at(1_000);
    f.end("amy", "s1").unwrap();
    let auto = || C::AutoWrapUp(AutoWrapUp { agent_id: "amy".into(), conversation_id: "s1".into() });
    f.at(30_000);
    assert!(matches!(f.run(auto()), Err(Rejection::Invalid(_))), "not due yet");
    f.at(61_000).ok(auto());
    assert!(matches!(&f.last[0].event, Some(Event::WrapUpSubmitted(w)) if w.automatic));
    assert_eq!(f.place("s1"), Place::Closed);
    assert_eq!(f.run(auto()), Ok(vec![]), "a late timer is a no-op");
}

#[test]
fn going_idle_or_logging_out_withdraws_open_offers_and_requeues_them() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0);
    f.customer_writes("c1", QUEUE_CHAT, 10);
    assert_eq!(f.set_state("amy", AgentStatus::Idle, ""), Err(Rejection::UnknownIdleReason(String::new())));
    assert_eq!(f.set_state("amy", AgentStatus::Idle, "nap"), Err(Rejection::UnknownIdleReason("nap".into())));
    f.set_state("amy", AgentStatus::Idle, "lunch").unwrap();
    assert_eq!(f.kinds(), ["OfferWithdrawn", "ConversationQueued", "AgentStateChanged"]);
    assert_eq!(f.state.agents["amy"].idle_reason, "lunch");
    assert_eq!(f.place("c1"), Place::Queued);
    f.available("amy", 100);
    let offer = f.offered();
    f.accept("amy", &offer.offer_id).unwrap();
    assert!(
        matches!(f.set_state("amy", AgentStatus::LoggedOut, ""), Err(Rejection::StateChangeRefused { .. })),
        "no logout while holding a conversation"
    );
    f.end("amy", "c1").unwrap();
    f.wrap_up("amy", "c1", &["other"]).unwrap();
    f.set_state("amy", AgentStatus::LoggedOut, "").unwrap();
    assert_eq!(f.status("amy"), AgentStatus::LoggedOut);
}

#[test]
fn commands_naming_unknown_or_foreign_things_are_rejected_without_effect() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0).agent("bob", 1).available("bob", 1);
    f.customer_writes("c1", QUEUE_CHAT, 10);
    let offer = f.offered();
    let other = if offer.agent_id == "amy" { "bob" } else { "amy" };
    assert!(matches!(f.accept(other, &offer.offer_id), Err(Rejection::NotYourOffer { .. })));
    assert_eq!(f.accept("zed", &offer.offer_id), Err(Rejection::UnknownAgent("zed".into())));
    assert!(matches!(f.message(&offer.agent_id, "c1", "m", "hi"), Err(Rejection::ConversationNotActive(_))));
    assert_eq!(f.end("amy", "nope"), Err(Rejection::UnknownConversation("nope".into())));
    assert!(matches!(
        f.transfer(&offer.agent_id, "c1", transfer::Target::ToQueueId("x".into())),
        Err(Rejection::ConversationNotActive(_))
    ));
    f.accept(&offer.agent_id, &offer.offer_id).unwrap();
    assert!(matches!(
        f.transfer(other, "c1", transfer::Target::ToQueueId(QUEUE_CHAT.into())),
        Err(Rejection::NotOwner { .. })
    ));
    assert_eq!(
        f.transfer(&offer.agent_id, "c1", transfer::Target::ToQueueId("x".into())),
        Err(Rejection::UnknownQueue("x".into()))
    );
    let wrong_domain = Command {
        command_id: "w".into(),
        domain: "other".into(),
        at_ms: 100,
        command: Some(C::CustomerLeave(CustomerLeave { conversation_id: "c1".into() })),
    };
    assert!(matches!(f.state.execute(&wrong_domain), Err(Rejection::WrongDomain { .. })));
    let back_in_time = Command { domain: "acme".into(), at_ms: -1, ..wrong_domain };
    assert!(matches!(f.state.execute(&back_in_time), Err(Rejection::TimeWentBack { .. })));
    assert!(matches!(
        f.run(C::ReceiveCustomerMessage(ReceiveCustomerMessage {
            conversation_id: "e9".into(),
            channel: Channel::Email as i32,
            queue_id: QUEUE_CHAT.into(),
            message_id: "m".into(),
            ..Default::default()
        })),
        Err(Rejection::ChannelMismatch { .. })
    ));
}

#[test]
fn configuration_is_validated_and_capacity_cannot_drop_below_what_is_held() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    let mut bad = queue("q", Channel::Sms, RoutingStrategy::Direct, TransferTimeoutPolicy::Drop);
    assert!(matches!(
        f.run(C::ConfigureQueue(ConfigureQueue { queue: Some(bad.clone()) })),
        Err(Rejection::Invalid(_))
    ));
    bad.strategy = RoutingStrategy::RoundRobin as i32;
    bad.offer_timeout_ms = 0;
    assert!(matches!(f.run(C::ConfigureQueue(ConfigureQueue { queue: Some(bad) })), Err(Rejection::Invalid(_))));
    let profile = AgentProfile { agent_id: "amy".into(), queue_ids: vec!["nope".into()], ..Default::default() };
    assert_eq!(
        f.run(C::ConfigureAgent(ConfigureAgent { profile: Some(profile) })),
        Err(Rejection::UnknownQueue("nope".into()))
    );
    f.agent("amy", 2).available("amy", 0);
    f.owns("amy", "c1", QUEUE_CHAT).owns("amy", "c2", QUEUE_CHAT);
    let shrink = AgentProfile {
        agent_id: "amy".into(),
        capacities: vec![ChannelCapacity { channel: Channel::Webchat as i32, max: 1 }],
        queue_ids: vec![QUEUE_CHAT.into()],
        ..Default::default()
    };
    assert!(matches!(
        f.run(C::ConfigureAgent(ConfigureAgent { profile: Some(shrink) })),
        Err(Rejection::Configuration(_))
    ));
}

#[test]
fn configured_workflows_with_their_parameters_and_announcements_are_recorded() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0);
    f.owns("amy", "c1", QUEUE_CHAT);
    let refund = Workflow { workflow_id: "refund".into(), name: "Refund".into(), parameters: vec!["order".into()] };
    let twice = C::ConfigureWorkflows(ConfigureWorkflows { workflows: vec![refund.clone(), refund.clone()] });
    assert!(matches!(f.run(twice), Err(Rejection::Invalid(why)) if why.contains("twice")));
    f.ok(C::ConfigureWorkflows(ConfigureWorkflows { workflows: vec![refund] }));
    assert_eq!(f.kinds(), ["WorkflowsConfigured"]);
    let mut trigger = |workflow_id: &str, parameters: &[(&str, &str)]| {
        f.run(C::TriggerWorkflow(TriggerWorkflow {
            agent_id: "amy".into(),
            conversation_id: "c1".into(),
            workflow_id: workflow_id.into(),
            parameters: parameters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }))
    };
    assert_eq!(trigger("dance", &[]), Err(Rejection::UnknownWorkflow("dance".into())));
    let missing = trigger("refund", &[]).unwrap_err();
    assert!(matches!(&missing, Rejection::Invalid(why) if why.contains("order")), "{missing}");
    let triggered = trigger("refund", &[("order", "42")]).unwrap();
    assert_eq!(triggered.len(), 1);
    assert_eq!(f.kinds(), ["WorkflowTriggered"]);
    f.ok(C::PostAnnouncement(PostAnnouncement {
        supervisor_id: "sue".into(),
        announcement_id: "a1".into(),
        text: "queue is long".into(),
        agent_ids: vec![],
    }));
    assert_eq!(f.kinds(), ["AnnouncementPosted"]);
    assert!(matches!(
        f.run(C::PostAnnouncement(PostAnnouncement {
            supervisor_id: "sue".into(),
            announcement_id: "a2".into(),
            text: "x".into(),
            agent_ids: vec!["zed".into()]
        })),
        Err(Rejection::UnknownAgent(_))
    ));
}

#[test]
fn replaying_the_events_rebuilds_the_same_state() {
    let mut f = Fixture::new(RoutingStrategy::RoundRobin);
    f.agent("amy", 2).available("amy", 5).agent("bob", 2).available("bob", 6);
    f.owns("amy", "c1", QUEUE_CHAT);
    f.customer_writes("c2", QUEUE_WHATSAPP, 20);
    f.transfer("amy", "c1", transfer::Target::ToQueueId(QUEUE_CHAT.into())).unwrap();
    let mut replayed = DomainState::new("acme");
    for envelope in &f.history {
        replayed.apply(envelope).unwrap();
    }
    assert_eq!(format!("{replayed:?}"), format!("{:?}", f.state));
    replayed.check_invariants().unwrap();
}

#[test]
fn apply_refuses_events_the_state_cannot_explain_and_changes_nothing() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0).agent("bob", 1);
    f.customer_writes("c1", QUEUE_CHAT, 10);
    let offer = f.offered();
    let forged = |sequence, event| Envelope {
        domain: "acme".into(),
        sequence,
        event_id: format!("acme/{sequence}"),
        at_ms: 20,
        command_id: "forged".into(),
        event: Some(event),
    };
    let next = f.state.last_sequence + 1;
    let before = format!("{:?}", f.state);
    let to_logged_out_bob = ConversationOffered { agent_id: "bob".into(), offer_id: "x".into(), ..offer.clone() };
    let violation = f.state.apply(&forged(next, Event::ConversationOffered(to_logged_out_bob))).unwrap_err();
    assert_eq!(violation.rule, "offers only to Available agents");
    assert_eq!(violation.sequence, next);
    let twice =
        OfferAccepted { offer_id: "never".into(), conversation_id: "c1".into(), agent_id: "amy".into(), kind: 1 };
    assert_eq!(f.state.apply(&forged(next, Event::OfferAccepted(twice))).unwrap_err().rule, "every offer ends once");
    let gap = f.state.apply(&forged(next + 5, Event::AnnouncementPosted(AnnouncementPosted::default()))).unwrap_err();
    assert_eq!(gap.rule, "gapless sequence");
    assert_eq!(format!("{:?}", f.state), before);
    // An event of a kind this version does not know only advances the sequence.
    f.state
        .apply(&Envelope { event: None, ..forged(next, Event::AnnouncementPosted(AnnouncementPosted::default())) })
        .unwrap();
    assert_eq!(f.state.last_sequence, next);
}

#[test]
fn automatic_wrap_up_follows_the_queue_the_agent_left_not_where_the_conversation_went() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    let mut auto = queue("auto", Channel::Sms, RoutingStrategy::LongestAvailable, TransferTimeoutPolicy::Drop);
    auto.auto_wrap_up_ms = 30_000;
    let manual = queue("manual", Channel::Sms, RoutingStrategy::LongestAvailable, TransferTimeoutPolicy::Drop);
    f.ok(C::ConfigureQueue(ConfigureQueue { queue: Some(auto) }));
    f.ok(C::ConfigureQueue(ConfigureQueue { queue: Some(manual) }));
    let profile = |id: &str, queue_id: &str| {
        C::ConfigureAgent(ConfigureAgent {
            profile: Some(AgentProfile {
                agent_id: id.into(),
                name: id.into(),
                capacities: vec![ChannelCapacity { channel: Channel::Sms as i32, max: 2 }],
                queue_ids: vec![queue_id.into()],
            }),
        })
    };
    f.ok(profile("amy", "auto")).ok(profile("bob", "manual"));
    f.available("amy", 0);
    f.owns("amy", "s1", "auto");
    f.at(3_000);
    f.transfer("amy", "s1", transfer::Target::ToQueueId("manual".into())).unwrap();
    let auto_wrap_up = |agent: &str| C::AutoWrapUp(AutoWrapUp { agent_id: agent.into(), conversation_id: "s1".into() });
    f.at(33_000).ok(auto_wrap_up("amy"));
    assert!(matches!(&f.last[0].event, Some(Event::WrapUpSubmitted(w)) if w.automatic && w.agent_id == "amy"));
    // Bob handles it for the manual queue: no automatic wrap-up for him.
    f.available("bob", 40_000);
    let offer = f.offered();
    f.accept("bob", &offer.offer_id).unwrap();
    f.end("bob", "s1").unwrap();
    f.at(100_000);
    assert!(matches!(f.run(auto_wrap_up("bob")), Err(Rejection::Invalid(_))));
}

#[test]
fn a_receipt_that_arrives_after_the_conversation_closed_is_still_recorded() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0);
    f.owns("amy", "wa", QUEUE_WHATSAPP);
    f.message("amy", "wa", "bye", "goodbye").unwrap();
    f.end("amy", "wa").unwrap();
    f.wrap_up("amy", "wa", &["support"]).unwrap();
    assert_eq!(f.place("wa"), Place::Closed);
    f.ok(C::RecordReceipt(RecordReceipt { conversation_id: "wa".into(), message_id: "bye".into(), read: true }));
    assert_eq!(f.kinds(), ["MessageRead"]);
}

#[test]
fn a_closed_conversation_is_forgotten_once_the_retention_has_passed_and_not_before() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    let retention = |ms| C::ConfigureRetention(ConfigureRetention { closed_conversation_ms: ms });
    assert!(matches!(f.run(retention(-1)), Err(Rejection::Invalid(_))));
    f.ok(retention(60_000));
    f.agent("amy", 2).available("amy", 0);
    f.owns("amy", "old", QUEUE_WHATSAPP);
    f.message("amy", "old", "bye", "goodbye").unwrap();
    f.end("amy", "old").unwrap();
    f.at(10_000).wrap_up("amy", "old", &["support"]).unwrap();
    f.owns("amy", "open", QUEUE_CHAT);
    f.end("amy", "open").unwrap();

    f.at(69_999).ok(C::RecordReceipt(RecordReceipt {
        conversation_id: "old".into(),
        message_id: "bye".into(),
        read: true,
    }));
    assert_eq!(f.place("old"), Place::Closed, "kept until the retention has passed");
    assert_eq!(f.end("amy", "old"), Err(Rejection::ConversationEnded("old".into())));

    f.customer_writes("new", QUEUE_WHATSAPP, 70_000);
    assert!(!f.state.conversations.contains_key("old"), "forgotten by the first event 60 s after it closed");
    assert_eq!(f.place("open"), Place::WrapUp, "a conversation still owing a wrap-up is never forgotten");
    assert_eq!(f.state.closed.len(), 0);
    assert_eq!(f.end("amy", "old"), Err(Rejection::UnknownConversation("old".into())));

    let mut replayed = DomainState::new("acme");
    for envelope in &f.history {
        replayed.apply(envelope).unwrap();
    }
    assert_eq!(format!("{replayed:?}"), format!("{:?}", f.state), "the fold forgets exactly what the engine did");
}

#[test]
fn without_a_retention_closed_conversations_are_kept_forever() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 1).available("amy", 0);
    f.owns("amy", "c1", QUEUE_CHAT);
    f.end("amy", "c1").unwrap();
    f.wrap_up("amy", "c1", &["sale"]).unwrap();
    f.ok(C::ConfigureRetention(ConfigureRetention { closed_conversation_ms: 0 }));
    f.customer_writes("c2", QUEUE_CHAT, i64::MAX / 2);
    assert_eq!(f.place("c1"), Place::Closed);
}

#[test]
fn on_whatsapp_the_owner_may_invite_a_queue_whose_strategy_picks_the_invitee() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    f.agent("amy", 2).available("amy", 0).agent("bob", 2).agent("cid", 2);
    f.owns("amy", "wa", QUEUE_WHATSAPP);
    assert_eq!(
        f.invite_queue("amy", "wa", QUEUE_WHATSAPP),
        Err(Rejection::NoAgentAvailable { queue_id: QUEUE_WHATSAPP.into() }),
        "amy takes part already and nobody else is available"
    );
    f.available("cid", 100).available("bob", 200);
    assert!(matches!(f.invite_queue("amy", "wa", QUEUE_CHAT), Err(Rejection::ChannelMismatch { .. })));
    assert_eq!(f.invite_queue("amy", "wa", "nope"), Err(Rejection::UnknownQueue("nope".into())));
    let both = RequestConference {
        agent_id: "amy".into(),
        conversation_id: "wa".into(),
        invitee_agent_id: "bob".into(),
        invitee_queue_id: QUEUE_WHATSAPP.into(),
    };
    assert!(matches!(f.run(C::RequestConference(both)), Err(Rejection::Invalid(_))));

    f.invite_queue("amy", "wa", QUEUE_WHATSAPP).unwrap();
    assert_eq!(f.kinds(), ["ConferenceRequested", "ConversationOffered"]);
    let Some(Event::ConferenceRequested(requested)) = &f.last[0].event else { panic!("{:?}", f.last) };
    assert_eq!((requested.invitee_agent_id.as_str(), requested.queue_id.as_str()), ("cid", QUEUE_WHATSAPP));
    let offer = f.offered();
    assert_eq!((offer.agent_id.as_str(), offer.kind()), ("cid", OfferKind::Conference), "free the longest");
    let decision = offer.decision.unwrap();
    assert_eq!(
        (decision.strategy(), decision.considered, decision.eligible),
        (RoutingStrategy::LongestAvailable, 3, 2)
    );
    f.accept("cid", &offer.offer_id).unwrap();
    assert_eq!(f.kinds(), ["OfferAccepted", "ConferenceJoined"]);

    f.owns("amy", "chat", QUEUE_CHAT);
    assert_eq!(
        f.invite_queue("amy", "chat", QUEUE_CHAT),
        Err(Rejection::NotAllowedOnChannel { channel: "webchat", what: "conference invitations to a queue" })
    );
}

#[test]
fn a_template_is_rendered_from_the_conversation_and_the_agent_s_parameters_and_a_locked_one_is_never_edited() {
    let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
    let template = |id: &str, text: &str, locked: bool, channels: &[Channel]| MessageTemplate {
        template_id: id.into(),
        name: id.into(),
        channels: channels.iter().map(|c| *c as i32).collect(),
        text: text.into(),
        locked,
    };
    let bad = template("broken", "Hi {{customer_name", false, &[]);
    assert!(matches!(
        f.run(C::ConfigureTemplates(ConfigureTemplates { templates: vec![bad] })),
        Err(Rejection::Invalid(_))
    ));
    f.ok(C::ConfigureTemplates(ConfigureTemplates {
        templates: vec![
            template("hello", "Hello {{customer_name}}, {{agent_name}} of {{queue_name}} here.", false, &[]),
            template("order", "Order {{order}} ships {{date}}.", true, &[Channel::Whatsapp]),
        ],
    }));
    f.agent("amy", 2).available("amy", 0);
    f.owns("amy", "wa", QUEUE_WHATSAPP);
    let send = |f: &mut Fixture, id: &str, template_id: &str, text: &str, parameters: &[(&str, &str)]| {
        f.run(C::SendAgentMessage(SendAgentMessage {
            agent_id: "amy".into(),
            conversation_id: "wa".into(),
            message_id: id.into(),
            text: text.into(),
            template_id: template_id.into(),
            template_parameters: parameters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }))
    };
    let sent = |f: &Fixture| match &f.last[0].event {
        Some(Event::AgentMessageSent(m)) => (m.text.clone(), m.template_id.clone()),
        other => panic!("{other:?}"),
    };

    send(&mut f, "m1", "hello", "", &[]).unwrap();
    assert_eq!(sent(&f), ("Hello Kim, AMY of wa queue here.".into(), "hello".into()), "system parameters filled in");
    send(&mut f, "m2", "hello", "Hello Kim, how are you?", &[]).unwrap();
    assert_eq!(sent(&f).0, "Hello Kim, how are you?", "an unlocked template may be edited");

    let refused = |result: Result<Vec<Envelope>, Rejection>| match result {
        Err(Rejection::Template { problem, .. }) => problem,
        other => panic!("expected a template refusal, got {other:?}"),
    };
    assert!(refused(send(&mut f, "m3", "order", "", &[("order", "A-1")])).contains("date is not filled in"));
    assert!(refused(send(&mut f, "m3", "order", "", &[("order", "A-1"), ("date", "Monday"), ("x", "1")]))
        .contains("no parameter x"));
    assert!(refused(send(&mut f, "m3", "order", "", &[("customer_name", "Bob")])).contains("from the conversation"));
    let filled = [("order", "A-1"), ("date", "Monday")];
    assert!(refused(send(&mut f, "m3", "order", "Order A-1 ships soon.", &filled)).contains("locked"));
    send(&mut f, "m3", "order", "Order A-1 ships Monday.", &filled).unwrap();
    assert_eq!(sent(&f).0, "Order A-1 ships Monday.", "a locked template's own text is accepted");
    assert_eq!(send(&mut f, "m4", "nope", "", &[]), Err(Rejection::UnknownTemplate("nope".into())));
    assert!(matches!(send(&mut f, "m4", "", "hi", &[("order", "A-1")]), Err(Rejection::Invalid(_))));

    f.owns("amy", "chat", QUEUE_CHAT);
    let result = f.run(C::SendAgentMessage(SendAgentMessage {
        agent_id: "amy".into(),
        conversation_id: "chat".into(),
        message_id: "c1".into(),
        template_id: "order".into(),
        template_parameters: filled.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }));
    assert!(refused(result).contains("not for webchat"));
}
