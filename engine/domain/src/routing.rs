//! Routing: which waiting conversation goes to which agent, and why. Pure
//! functions over the state; the caller turns a [`Choice`] into a
//! `ConversationOffered` event.

use switchboard_proto::v1::{AgentStatus, PassedOverAgent, PassedOverReason, RoutingDecision, RoutingStrategy};

use crate::state::{Agent, DomainState, Queue};
use crate::{AgentId, ConversationId, QueueId};

/// How many passed-over agents an offer lists; the rest are only counted.
pub const PASSED_OVER_LISTED: usize = 16;

/// How deep into a queue routing looks when the head cannot be placed (every
/// free agent already takes part in it), so one such conversation does not
/// hold up the queue.
const LOOKAHEAD: usize = 16;

/// A routing decision: offer this conversation from this queue to this agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The queue the conversation waits in.
    pub queue_id: QueueId,
    /// The conversation to offer.
    pub conversation_id: ConversationId,
    /// The chosen agent.
    pub agent_id: AgentId,
    /// Why: for the offer event.
    pub decision: RoutingDecision,
}

/// One agent's standing for one offer; lower `rank` wins.
struct Candidate<'a> {
    agent_id: &'a AgentId,
    agent: &'a Agent,
    passed_over: Option<PassedOverReason>,
    load: u32,
    capacity: u32,
    score: i64,
    /// Not eligible last, then the strategy's score, then the agent's place
    /// in id order: integers only, since this is sorted for every offer.
    rank: (bool, i64, usize),
}

/// The next offer to make in the domain, if any: among queues with waiting
/// conversations, the one whose head is most urgent (queue priority, then
/// conversation priority, then arrival) and has an eligible agent.
pub fn next_choice(state: &DomainState) -> Option<Choice> {
    let mut queues: Vec<(&QueueId, &Queue)> = state.queues.iter().filter(|(_, q)| !q.waiting.is_empty()).collect();
    queues.sort_by_key(|(_, q)| (-i64::from(q.config.priority), q.waiting.first().cloned()));
    for (queue_id, queue) in queues {
        let channel = queue.channel() as i32;
        let anyone_free =
            state.free_agents.get(&channel).is_some_and(|free| free.iter().any(|agent| queue.members.contains(agent)));
        if !anyone_free {
            continue;
        }
        for key in queue.waiting.iter().take(LOOKAHEAD) {
            if let Some(choice) = choose_agent(state, queue_id, queue, &key.conversation_id) {
                return Some(choice);
            }
        }
    }
    None
}

/// The queue's members that are known agents, with their place in the
/// member list, in id order.
///
/// Members and agents are both ordered by id, so when the members are a fair
/// share of the agents one walk over both finds them all, a comparison or
/// two per member, where searching the agents for each member costs a
/// dozen: this runs for every offer, over every member of the queue.
fn members_with_agents<'a>(
    state: &'a DomainState,
    queue: &'a Queue,
) -> impl Iterator<Item = (usize, &'a AgentId, &'a Agent)> + 'a {
    let walk = queue.members.len().saturating_mul(8) >= state.agents.len();
    let mut agents = state.agents.iter().peekable();
    queue.members.iter().enumerate().filter_map(move |(position, member)| {
        if !walk {
            return state.agents.get_key_value(member).map(|(id, agent)| (position, id, agent));
        }
        while let Some((id, agent)) = agents.peek().copied() {
            match id.cmp(member) {
                std::cmp::Ordering::Less => {
                    agents.next();
                }
                std::cmp::Ordering::Equal => {
                    agents.next();
                    return Some((position, id, agent));
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    })
}

/// Picks the agent of `queue` for `conversation_id` by the queue's strategy.
pub(crate) fn choose_agent(
    state: &DomainState,
    queue_id: &QueueId,
    queue: &Queue,
    conversation_id: &str,
) -> Option<Choice> {
    let channel = queue.channel();
    let strategy = queue.strategy();
    let members = queue.members.len().max(1) as i64;
    // Only turns need it, and finding it compares the name with every member.
    let last_offered = match strategy {
        RoutingStrategy::RoundRobin => {
            queue.last_offered.as_ref().and_then(|last| queue.members.iter().position(|m| m == last))
        }
        _ => None,
    };
    // Who already takes part, from the conversation's few names: searching
    // each free member's holdings instead cost most of routing's time.
    let taking_part: Vec<&AgentId> =
        state.conversations.get(conversation_id).map(|c| state.named_agents(c).collect()).unwrap_or_default();
    let mut candidates: Vec<Candidate> = members_with_agents(state, queue)
        .map(|(position, agent_id, agent)| {
            let (load, capacity) = (agent.load(channel), agent.capacity(channel));
            let passed_over = if agent.status != AgentStatus::Available {
                Some(PassedOverReason::NotAvailable)
            } else if load >= capacity {
                Some(PassedOverReason::NoCapacity)
            } else if taking_part.contains(&agent_id) {
                Some(PassedOverReason::AlreadyParticipating)
            } else {
                None
            };
            let score = match strategy {
                // Turns in id order, starting after the agent last offered.
                RoutingStrategy::RoundRobin => {
                    (position as i64 - last_offered.map_or(-1, |p| p as i64) - 1).rem_euclid(members)
                }
                RoutingStrategy::LeastOccupied => i64::from(load) * 1_000_000 / i64::from(capacity.max(1)),
                _ => agent.free_since_ms,
            };
            Candidate {
                agent_id,
                agent,
                passed_over,
                load,
                capacity,
                score,
                rank: (passed_over.is_some(), score, position),
            }
        })
        .collect();
    // Only the winner and the listed runners-up need an order.
    let listed = candidates.len().min(PASSED_OVER_LISTED + 1);
    if listed < candidates.len() {
        candidates.select_nth_unstable_by_key(listed - 1, |c| c.rank);
    }
    candidates[..listed].sort_unstable_by_key(|c| c.rank);
    let winner = candidates.first().filter(|c| c.passed_over.is_none())?;
    let eligible = candidates.iter().filter(|c| c.passed_over.is_none()).count();
    let lost_reason = match strategy {
        RoutingStrategy::RoundRobin => PassedOverReason::NotNextInTurn,
        RoutingStrategy::LeastOccupied => PassedOverReason::HigherOccupancy,
        _ => PassedOverReason::ShorterIdleTime,
    };
    let passed_over: Vec<PassedOverAgent> = candidates[1..listed]
        .iter()
        .map(|c| PassedOverAgent {
            agent_id: c.agent_id.clone(),
            reason: c.passed_over.unwrap_or(lost_reason) as i32,
            status: c.agent.status as i32,
            load: c.load,
            capacity: c.capacity,
            free_since_ms: c.agent.free_since_ms,
            score: c.score,
        })
        .collect();
    let decision = RoutingDecision {
        strategy: strategy as i32,
        considered: candidates.len() as u32,
        eligible: eligible as u32,
        chosen_load: winner.load,
        chosen_capacity: winner.capacity,
        chosen_free_since_ms: winner.agent.free_since_ms,
        chosen_score: winner.score,
        passed_over_unlisted: (candidates.len() - 1 - passed_over.len()) as u32,
        passed_over,
    };
    Some(Choice {
        queue_id: queue_id.clone(),
        conversation_id: conversation_id.to_owned(),
        agent_id: winner.agent_id.clone(),
        decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{Fixture, QUEUE_CHAT};

    #[test]
    fn longest_available_prefers_the_agent_free_the_longest_and_explains_the_others() {
        let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
        f.agent("bob", 3).available("bob", 1_000);
        f.agent("amy", 3).available("amy", 2_000);
        f.agent("cid", 3);
        let offer = f.customer_writes("c1", QUEUE_CHAT, 5_000).offered();
        assert_eq!(offer.agent_id, "bob");
        let decision = offer.decision.unwrap();
        assert_eq!((decision.considered, decision.eligible), (3, 2));
        assert_eq!(decision.chosen_free_since_ms, 1_000);
        let reasons: Vec<_> = decision.passed_over.iter().map(|p| (p.agent_id.as_str(), p.reason())).collect();
        assert_eq!(reasons, [("amy", PassedOverReason::ShorterIdleTime), ("cid", PassedOverReason::NotAvailable)]);
    }

    #[test]
    fn an_agent_owing_a_wrap_up_is_not_offered_the_conversation_again_even_with_room() {
        use crate::tests::QUEUE_CHAT_REQUEUE;
        use switchboard_proto::v1::transfer;
        let mut f = Fixture::new(RoutingStrategy::LongestAvailable);
        f.agent("amy", 2).available("amy", 0).agent("bob", 1);
        f.owns("amy", "c1", QUEUE_CHAT);
        f.transfer("amy", "c1", transfer::Target::ToQueueId(QUEUE_CHAT_REQUEUE.into())).unwrap();
        // Amy is free the longest and has room, but owes c1 a wrap-up: it waits for bob.
        assert!(f.state.agents["amy"].can_take(switchboard_proto::v1::Channel::Webchat));
        assert_eq!(f.place("c1"), crate::state::Place::Queued);
        f.available("bob", 10_000);
        let offer = f.offered();
        assert_eq!(offer.agent_id, "bob");
        let passed: Vec<_> =
            offer.decision.unwrap().passed_over.iter().map(|p| (p.agent_id.clone(), p.reason())).collect();
        assert_eq!(passed, [("amy".to_string(), PassedOverReason::AlreadyParticipating)]);
    }

    #[test]
    fn members_are_found_among_the_agents_by_walking_or_by_searching() {
        let agent = |name: &str| Agent {
            name: name.into(),
            capacities: Default::default(),
            queues: Default::default(),
            status: AgentStatus::Available,
            idle_reason: String::new(),
            free_since_ms: 0,
            holdings: Default::default(),
            loads: Default::default(),
        };
        let queue = |members: &[&str]| Queue {
            config: Default::default(),
            waiting: Default::default(),
            members: members.iter().map(|m| m.to_string()).collect(),
            last_offered: None,
        };
        let found = |state: &DomainState, queue: &Queue| -> Vec<(usize, String)> {
            members_with_agents(state, queue).map(|(position, id, agent)| (position, agent.name.clone() + id)).collect()
        };
        let mut state = DomainState::new("d");
        for id in ["a1", "a2", "a3", "b1", "c1"] {
            state.agents.insert(id.into(), agent(id));
        }
        // Many members: one walk over both; members that are no agent keep their place but are left out.
        let many = queue(&["a0", "a2", "a3", "b0", "c1", "z9"]);
        assert_eq!(found(&state, &many), [(1, "a2a2".into()), (2, "a3a3".into()), (4, "c1c1".into())]);
        // Few members among many agents: searched one by one, with the same result.
        for i in 0..100 {
            state.agents.insert(format!("x{i:03}"), agent("x"));
        }
        let few = queue(&["a0", "a3", "x050"]);
        assert_eq!(found(&state, &few), [(1, "a3a3".into()), (2, "xx050".into())]);
        assert_eq!(found(&state, &many), [(1, "a2a2".into()), (2, "a3a3".into()), (4, "c1c1".into())]);
    }

    #[test]
    fn round_robin_takes_turns_in_id_order_and_wraps() {
        let mut f = Fixture::new(RoutingStrategy::RoundRobin);
        for agent in ["a1", "a2", "a3"] {
            f.agent(agent, 5).available(agent, 0);
        }
        let got: Vec<String> =
            (0..5).map(|i| f.customer_writes(&format!("c{i}"), QUEUE_CHAT, 10 + i).offered().agent_id).collect();
        assert_eq!(got, ["a1", "a2", "a3", "a1", "a2"]);
    }

    #[test]
    fn least_occupied_prefers_the_lowest_share_of_capacity() {
        let mut f = Fixture::new(RoutingStrategy::LeastOccupied);
        f.agent("big", 4).available("big", 0);
        f.agent("small", 1).available("small", 0);
        // big: 0/4, small: 0/1 -> tie on 0, smaller id wins.
        assert_eq!(f.customer_writes("c1", QUEUE_CHAT, 10).offered().agent_id, "big");
        // big: 1/4 = 25%, small: 0/1 = 0% -> small.
        assert_eq!(f.customer_writes("c2", QUEUE_CHAT, 20).offered().agent_id, "small");
        // small full; big 25% -> big, and small is passed over for capacity.
        let offer = f.customer_writes("c3", QUEUE_CHAT, 30).offered();
        assert_eq!(offer.agent_id, "big");
        assert_eq!(offer.decision.unwrap().passed_over[0].reason(), PassedOverReason::NoCapacity);
    }
}
