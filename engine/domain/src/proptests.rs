//! Random command sequences against the domain: after every step every
//! invariant of DESIGN.md holds, a rejected command changes nothing, and
//! folding the emitted events from scratch gives the same state.

use proptest::prelude::*;
use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::*;

use crate::state::Role;
use crate::tests::{Fixture, QUEUE_CHAT, QUEUE_CHAT_REQUEUE, QUEUE_EMAIL, QUEUE_WHATSAPP};
use crate::DomainState;

const AGENTS: [&str; 3] = ["amy", "bob", "cid"];
const QUEUES: [&str; 4] = [QUEUE_CHAT, QUEUE_CHAT_REQUEUE, QUEUE_EMAIL, QUEUE_WHATSAPP];
const REASONS: [&str; 4] = ["sale", "support", "other", "bogus"];

/// One step: a command shape with selectors resolved against the state when
/// it runs, so most steps are meaningful and some are deliberately wrong.
#[derive(Debug, Clone)]
enum Step {
    Arrive { conversation: u8, queue: usize },
    CustomerWrites { conversation: u8 },
    CustomerLeaves { conversation: u8 },
    SetState { agent: usize, status: u8 },
    Accept { agent: usize, offer: usize },
    Expire { offer: usize },
    Message { agent: usize, conversation: u8, length: usize },
    TransferToQueue { agent: usize, conversation: u8, queue: usize },
    TransferToAgent { agent: usize, conversation: u8, target: usize },
    Invite { agent: usize, conversation: u8, invitee: usize },
    InviteFromQueue { agent: usize, conversation: u8, queue: usize },
    Leave { agent: usize, conversation: u8 },
    EndConference { agent: usize, conversation: u8 },
    End { agent: usize, conversation: u8 },
    WrapUp { agent: usize, conversation: u8, reasons: Vec<usize> },
    Wait { ms: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    let conversation = 0u8..6;
    let agent = 0usize..3;
    prop_oneof![
        3 => (conversation.clone(), 0usize..4).prop_map(|(conversation, queue)| Step::Arrive { conversation, queue }),
        1 => conversation.clone().prop_map(|conversation| Step::CustomerWrites { conversation }),
        1 => conversation.clone().prop_map(|conversation| Step::CustomerLeaves { conversation }),
        3 => (agent.clone(), 0u8..5).prop_map(|(agent, status)| Step::SetState { agent, status }),
        4 => (agent.clone(), 0usize..4).prop_map(|(agent, offer)| Step::Accept { agent, offer }),
        2 => (0usize..4).prop_map(|offer| Step::Expire { offer }),
        2 => (agent.clone(), conversation.clone(), prop_oneof![1usize..50, 990usize..1010, 4090usize..4100])
            .prop_map(|(agent, conversation, length)| Step::Message { agent, conversation, length }),
        1 => (agent.clone(), conversation.clone(), 0usize..4)
            .prop_map(|(agent, conversation, queue)| Step::TransferToQueue { agent, conversation, queue }),
        2 => (agent.clone(), conversation.clone(), 0usize..3)
            .prop_map(|(agent, conversation, target)| Step::TransferToAgent { agent, conversation, target }),
        4 => (agent.clone(), conversation.clone(), 0usize..3)
            .prop_map(|(agent, conversation, invitee)| Step::Invite { agent, conversation, invitee }),
        2 => (agent.clone(), conversation.clone(), 0usize..4)
            .prop_map(|(agent, conversation, queue)| Step::InviteFromQueue { agent, conversation, queue }),
        2 => (agent.clone(), conversation.clone()).prop_map(|(agent, conversation)| Step::Leave { agent, conversation }),
        1 => (agent.clone(), conversation.clone())
            .prop_map(|(agent, conversation)| Step::EndConference { agent, conversation }),
        2 => (agent.clone(), conversation.clone()).prop_map(|(agent, conversation)| Step::End { agent, conversation }),
        4 => (agent.clone(), conversation.clone(), proptest::collection::vec(0usize..4, 0..3))
            .prop_map(|(agent, conversation, reasons)| Step::WrapUp { agent, conversation, reasons }),
        2 => (0i64..40_000).prop_map(|ms| Step::Wait { ms }),
    ]
}

/// The conversation id a step names; a later arrival after the end starts a
/// new conversation under a fresh id (or an id the retention forgot).
fn conversation_id(state: &DomainState, n: u8) -> String {
    let mut generation = 0;
    while state
        .conversations
        .get(&format!("c{n}.{generation}"))
        .is_some_and(|c| c.place() == crate::state::Place::Closed)
    {
        generation += 1;
    }
    format!("c{n}.{generation}")
}

fn command(state: &DomainState, step: &Step, serial: usize) -> Option<C> {
    let offers: Vec<&String> = state.offers.keys().collect();
    let pick_offer = |i: usize| offers.get(i % offers.len().max(1)).map(|s| s.to_string()).unwrap_or("none".into());
    let agent = |i: usize| AGENTS[i].to_string();
    // Mostly the agent who may act (owner, or invitee for Leave); agent 2's
    // selector keeps naming the given agent, to exercise the refusals.
    let actor = |i: usize, n: u8, invitee: bool| {
        let conversation = state.conversations.get(&conversation_id(state, n));
        let rightful = conversation.and_then(|c| match (&c.conference, invitee) {
            (Some(crate::state::Conference::Joined { invitee }), true) => Some(invitee.clone()),
            (_, false) => c.owner.clone(),
            _ => None,
        });
        match rightful {
            Some(id) if i != 2 => id,
            _ => agent(i),
        }
    };
    Some(match step {
        Step::Arrive { conversation, queue } => {
            let queue_id = QUEUES[*queue];
            C::ReceiveCustomerMessage(ReceiveCustomerMessage {
                conversation_id: conversation_id(state, *conversation),
                channel: state.queues[queue_id].config.channel,
                queue_id: queue_id.into(),
                message_id: format!("m{serial}"),
                external_id: format!("x{serial}"),
                text: "hello".into(),
                ..Default::default()
            })
        }
        Step::CustomerWrites { conversation } => {
            let conversation_id = conversation_id(state, *conversation);
            let existing = state.conversations.get(&conversation_id)?;
            C::ReceiveCustomerMessage(ReceiveCustomerMessage {
                conversation_id,
                channel: existing.channel as i32,
                queue_id: existing.queue_id.clone(),
                message_id: format!("m{serial}"),
                // Every third message repeats an earlier sender id.
                external_id: format!("x{}", if serial % 3 == 0 { serial / 2 } else { serial }),
                text: "more".into(),
                ..Default::default()
            })
        }
        Step::CustomerLeaves { conversation } => {
            C::CustomerLeave(CustomerLeave { conversation_id: conversation_id(state, *conversation) })
        }
        Step::SetState { agent: a, status } => C::SetAgentState(SetAgentState {
            agent_id: agent(*a),
            status: [1, 2, 2, 3, 4][*status as usize],
            idle_reason: if *status == 3 { "lunch".into() } else { String::new() },
        }),
        Step::Accept { agent: a, offer } => {
            // Mostly the offer's own agent; sometimes another one.
            let offer_id = pick_offer(*offer);
            let agent_id = match state.offers.get(&offer_id) {
                Some(o) if *a != 2 => o.agent_id.clone(),
                _ => agent(*a),
            };
            C::AcceptOffer(AcceptOffer { agent_id, offer_id })
        }
        Step::Expire { offer } => C::ExpireOffer(ExpireOffer { offer_id: pick_offer(*offer) }),
        Step::Message { agent: a, conversation, length } => C::SendAgentMessage(SendAgentMessage {
            agent_id: actor(*a, *conversation, false),
            conversation_id: conversation_id(state, *conversation),
            message_id: format!("a{serial}"),
            text: "y".repeat(*length),
            ..Default::default()
        }),
        Step::TransferToQueue { agent: a, conversation, queue } => C::Transfer(Transfer {
            agent_id: actor(*a, *conversation, false),
            conversation_id: conversation_id(state, *conversation),
            target: Some(transfer::Target::ToQueueId(QUEUES[*queue].into())),
        }),
        Step::TransferToAgent { agent: a, conversation, target } => C::Transfer(Transfer {
            agent_id: actor(*a, *conversation, false),
            conversation_id: conversation_id(state, *conversation),
            target: Some(transfer::Target::ToAgentId(agent(*target))),
        }),
        Step::Invite { agent: a, conversation, invitee } => C::RequestConference(RequestConference {
            agent_id: actor(*a, *conversation, false),
            conversation_id: conversation_id(state, *conversation),
            invitee_agent_id: agent(*invitee),
            ..Default::default()
        }),
        Step::InviteFromQueue { agent: a, conversation, queue } => C::RequestConference(RequestConference {
            agent_id: actor(*a, *conversation, false),
            conversation_id: conversation_id(state, *conversation),
            invitee_queue_id: QUEUES[*queue].into(),
            ..Default::default()
        }),
        Step::Leave { agent: a, conversation } => C::LeaveConference(LeaveConference {
            agent_id: actor(*a, *conversation, true),
            conversation_id: conversation_id(state, *conversation),
        }),
        Step::EndConference { agent: a, conversation } => C::EndConference(EndConference {
            agent_id: actor(*a, *conversation, false),
            conversation_id: conversation_id(state, *conversation),
        }),
        Step::End { agent: a, conversation } => C::EndConversation(EndConversation {
            agent_id: actor(*a, *conversation, false),
            conversation_id: conversation_id(state, *conversation),
        }),
        Step::WrapUp { agent: a, conversation, reasons } => {
            // Prefer a conversation the agent really owes a wrap-up for.
            let agent_id = agent(*a);
            let owed = state.agents.get(&agent_id).and_then(|ag| {
                ag.holdings.iter().find(|(_, h)| matches!(h.role, Role::WrapUp { .. })).map(|(c, _)| c.clone())
            });
            C::SubmitWrapUp(SubmitWrapUp {
                conversation_id: owed.unwrap_or_else(|| conversation_id(state, *conversation)),
                agent_id,
                reasons: reasons.iter().map(|r| REASONS[*r].to_string()).collect(),
            })
        }
        Step::Wait { .. } => return None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_command_sequences_keep_every_invariant(
        steps in proptest::collection::vec(step(), 1..150),
        retention_ms in prop_oneof![Just(0i64), 1i64..60_000],
    ) {
        let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
        // Forgotten conversations free their ids, which later arrivals reuse.
        f.ok(C::ConfigureRetention(ConfigureRetention { closed_conversation_ms: retention_ms }));
        for agent in AGENTS {
            f.agent(agent, 2);
        }
        let mut now = 1_000;
        for (serial, step) in steps.iter().enumerate() {
            if let Step::Wait { ms } = step {
                now += ms;
                continue;
            }
            // Expiry is only meaningful at or after a deadline.
            if let Step::Expire { .. } = step {
                now = now.max(f.state.offers.values().map(|o| o.deadline_ms).min().unwrap_or(now));
            }
            now += 1;
            let Some(command) = command(&f.state, step, serial) else { continue };
            let before = format!("{:?}", f.state);
            // Fixture::run checks every invariant after the command.
            if f.at(now).run(command).is_err() {
                prop_assert_eq!(&format!("{:?}", f.state), &before, "a rejected command changed the state");
            }
        }
        let mut replayed = DomainState::new("acme");
        for envelope in &f.history {
            replayed.apply(envelope).expect("the log replays");
        }
        prop_assert_eq!(format!("{replayed:?}"), format!("{:?}", f.state));
    }
}
