//! Replay for auditors: fold a log from its first record, check every
//! invariant, and tell the story of one conversation or one agent, or the
//! day's figures. The log is read as written, never rewritten.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use serde::Serialize;
use sha2::{Digest, Sha256};
use switchboard_domain::{event_name, DomainState, Violation};
use switchboard_proto::v1::envelope::Event;
use switchboard_proto::v1::Envelope;

use crate::describe::{describe, timestamp, touched};
use crate::figures::{Figures, FiguresReport};

/// What the timeline shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// No timeline: the summary of figures.
    Summary,
    /// Every event of one conversation.
    Conversation(String),
    /// Every event of one agent, including offers they were passed over for.
    Agent(String),
}

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Timeline or summary.
    pub filter: Filter,
    /// Check every invariant after every command's events.
    pub verify: bool,
    /// Answer time counted as within the service level.
    pub service_level_threshold_ms: i64,
}

/// One line of a timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// Position in the journal.
    pub offset: u64,
    /// The routing domain.
    pub domain: String,
    /// Sequence within the domain.
    pub sequence: u64,
    /// When, RFC 3339.
    pub at: String,
    /// The event's kind.
    pub kind: &'static str,
    /// The causing command.
    pub command_id: String,
    /// Plain-language account, with the routing decision for offers.
    pub description: String,
    /// The event itself, for machines.
    pub event: Option<Event>,
}

/// A rule broken by the log, and where.
#[derive(Debug, Clone, Serialize)]
pub struct LogViolation {
    /// Journal offset of the event found breaking it.
    pub offset: u64,
    /// The rule and details.
    pub violation: Violation,
}

/// Everything a replay found.
#[derive(Debug, Serialize)]
pub struct ReplayOutcome {
    /// Records read.
    pub records: u64,
    /// Routing domains seen.
    pub domains: Vec<String>,
    /// The first broken rule, if any; folding stops there.
    pub violation: Option<LogViolation>,
    /// Hash of the folded state, to compare two folds of one log.
    pub digest: String,
    /// The filtered timeline (empty for a summary).
    pub timeline: Vec<TimelineEntry>,
    /// The supervisors' figures over the whole log.
    pub figures: FiguresReport,
}

/// The command whose events are being folded: invariants are checked once
/// all of them are in, since a command's events are one atomic batch.
#[derive(Default)]
struct OpenBatch {
    domain: String,
    command_id: String,
    offset: u64,
    sequence: u64,
    event_id: String,
    conversations: BTreeSet<String>,
    agents: BTreeSet<String>,
}

/// A fold in progress. Feed it records in journal order, then finish it.
pub struct Replay {
    options: ReplayOptions,
    states: BTreeMap<String, DomainState>,
    figures: Figures,
    timeline: Vec<TimelineEntry>,
    records: u64,
    violation: Option<LogViolation>,
    batch: OpenBatch,
}

impl Replay {
    /// A replay with nothing folded yet.
    pub fn new(options: ReplayOptions) -> Self {
        let figures = Figures::new(options.service_level_threshold_ms);
        Self {
            options,
            states: BTreeMap::new(),
            figures,
            timeline: Vec::new(),
            records: 0,
            violation: None,
            batch: OpenBatch::default(),
        }
    }

    /// Folds one record. Returns false once a rule is broken: the log cannot
    /// be explained past that point, so the caller stops reading.
    pub fn feed(&mut self, offset: u64, bytes: &[u8]) -> bool {
        if self.violation.is_some() {
            return false;
        }
        self.records += 1;
        let envelope = match Envelope::decode(bytes) {
            Ok(envelope) => envelope,
            Err(error) => {
                return self.broken(
                    offset,
                    Violation {
                        sequence: 0,
                        event_id: String::new(),
                        rule: "decodable records",
                        detail: format!("record at offset {offset} is not an Envelope: {error}"),
                    },
                );
            }
        };
        if self.options.verify
            && (envelope.command_id != self.batch.command_id || envelope.domain != self.batch.domain)
            && !self.check_batch()
        {
            return false;
        }
        let state = self.states.entry(envelope.domain.clone()).or_insert_with(|| DomainState::new(&envelope.domain));
        if let Err(violation) = state.apply(&envelope) {
            return self.broken(offset, violation);
        }
        self.figures.observe(&envelope);
        if let Some(event) = &envelope.event {
            let (conversation, agents) = touched(event);
            if self.options.verify {
                self.batch.domain.clone_from(&envelope.domain);
                self.batch.command_id.clone_from(&envelope.command_id);
                self.batch.offset = offset;
                self.batch.sequence = envelope.sequence;
                self.batch.event_id.clone_from(&envelope.event_id);
                self.batch.conversations.extend(conversation.map(str::to_owned));
                self.batch.agents.extend(agents.iter().map(|a| a.to_string()));
            }
            let shown = match &self.options.filter {
                Filter::Summary => None,
                Filter::Conversation(id) => (conversation == Some(id.as_str())).then(|| describe(event)),
                Filter::Agent(id) => agent_line(event, id, &agents),
            };
            if let Some(description) = shown {
                self.timeline.push(TimelineEntry {
                    offset,
                    domain: envelope.domain.clone(),
                    sequence: envelope.sequence,
                    at: timestamp(envelope.at_ms),
                    kind: event_name(event),
                    command_id: envelope.command_id.clone(),
                    description,
                    event: envelope.event.clone(),
                });
            }
        }
        true
    }

    /// Checks the entities the last command touched.
    fn check_batch(&mut self) -> bool {
        let batch = std::mem::take(&mut self.batch);
        let Some(state) = self.states.get(&batch.domain) else {
            return true;
        };
        let checked = batch
            .conversations
            .iter()
            .try_for_each(|c| state.check_conversation(c))
            .and_then(|()| batch.agents.iter().try_for_each(|a| state.check_agent(a)));
        match checked {
            Ok(()) => true,
            Err(mut violation) => {
                violation.sequence = batch.sequence;
                violation.event_id = batch.event_id;
                self.broken(batch.offset, violation)
            }
        }
    }

    fn broken(&mut self, offset: u64, violation: Violation) -> bool {
        self.violation = Some(LogViolation { offset, violation });
        false
    }

    /// Ends the fold: last checks, the digest and the figures.
    pub fn finish(mut self) -> ReplayOutcome {
        if self.options.verify && self.violation.is_none() && self.check_batch() {
            for state in self.states.values() {
                if let Err(violation) = state.check_invariants() {
                    self.violation = Some(LogViolation { offset: self.records, violation });
                    break;
                }
            }
        }
        ReplayOutcome {
            records: self.records,
            domains: self.states.keys().cloned().collect(),
            violation: self.violation,
            digest: digest(&self.states),
            timeline: self.timeline,
            figures: self.figures.report(),
        }
    }
}

/// The timeline line of `event` for agent `id`, if it concerns them: their
/// own events, and offers they were passed over for, with the reason.
fn agent_line(event: &Event, id: &str, agents: &[&str]) -> Option<String> {
    if agents.contains(&id) {
        return Some(describe(event));
    }
    let Event::ConversationOffered(offer) = event else {
        return None;
    };
    let passed = offer.decision.as_ref()?.passed_over.iter().find(|p| p.agent_id == id)?;
    Some(format!(
        "passed over for {} of {} (went to {}): {}",
        offer.offer_id,
        offer.conversation_id,
        offer.agent_id,
        crate::describe::passed_over_reason(passed.reason)
    ))
}

/// A hash of the folded state of every domain: two folds of one log give
/// the same digest, and so do the live engine and a replay of its journal.
pub fn digest(states: &BTreeMap<String, DomainState>) -> String {
    let mut digest = StateDigest::default();
    for (domain, state) in states {
        digest.add(domain, state);
    }
    digest.finish()
}

/// The [`digest`] built one domain at a time, in domain order, hashing each
/// state as it is serialized: the live engine feeds it each domain on its
/// shard, so nobody copies the states to take it. The bytes hashed are
/// serde_json's of the whole map (`{"a":{..},"b":{..}}`), so digests taken
/// either way, and before this existed, agree.
pub struct StateDigest {
    hasher: Sha256,
    domains: usize,
}

impl Default for StateDigest {
    fn default() -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"{");
        StateDigest { hasher, domains: 0 }
    }
}

impl StateDigest {
    /// Adds the next domain; domains must come in order of their names.
    pub fn add(&mut self, domain: &str, state: &DomainState) {
        if self.domains > 0 {
            self.hasher.update(b",");
        }
        self.domains += 1;
        serde_json::to_writer(&mut self.hasher, domain).expect("a name serializes");
        self.hasher.update(b":");
        serde_json::to_writer(&mut self.hasher, state).expect("the state serializes");
    }

    /// The digest of every domain added.
    pub fn finish(mut self) -> String {
        self.hasher.update(b"}");
        hex::encode(self.hasher.finalize())
    }
}

/// The outcome for humans: the timeline or the figures, the violation if
/// any, and the digest on a line of its own.
pub fn render_text(outcome: &ReplayOutcome, filter: &Filter) -> String {
    let mut text = String::new();
    match filter {
        Filter::Summary => {
            text.push_str(&format!("{} records, domains: {}\n", outcome.records, outcome.domains.join(", ")));
            text.push_str(&outcome.figures.render_text());
        }
        Filter::Conversation(id) | Filter::Agent(id) => {
            if outcome.timeline.is_empty() {
                text.push_str(&format!("no events concern {id}\n"));
            }
            for entry in &outcome.timeline {
                text.push_str(&format!(
                    "{}  #{:<6} {:<24} {}  [command {}]\n",
                    entry.at, entry.sequence, entry.kind, entry.description, entry.command_id
                ));
            }
        }
    }
    match &outcome.violation {
        Some(v) => text.push_str(&format!("violation at offset {}: {}\n", v.offset, v.violation)),
        None => text.push_str("invariants: ok\n"),
    }
    text.push_str(&format!("digest: {}\n", outcome.digest));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::v1::command::Command as C;
    use switchboard_proto::v1::*;

    fn options(filter: Filter) -> ReplayOptions {
        ReplayOptions { filter, verify: true, service_level_threshold_ms: 20_000 }
    }

    /// A small day: a queue, two agents, one conversation offered, accepted,
    /// ended and wrapped up.
    fn small_log() -> Vec<Vec<u8>> {
        let mut state = DomainState::new("acme");
        let mut log = Vec::new();
        let queue = QueueConfig {
            queue_id: "chat".into(),
            name: "Chat".into(),
            channel: Channel::Webchat as i32,
            strategy: RoutingStrategy::LongestAvailable as i32,
            offer_timeout_ms: 30_000,
            transfer_timeout_policy: TransferTimeoutPolicy::Drop as i32,
            ..Default::default()
        };
        let agent = |id: &str| {
            C::ConfigureAgent(ConfigureAgent {
                profile: Some(AgentProfile {
                    agent_id: id.into(),
                    name: id.into(),
                    capacities: vec![ChannelCapacity { channel: Channel::Webchat as i32, max: 1 }],
                    queue_ids: vec!["chat".into()],
                }),
            })
        };
        let available = |id: &str| {
            C::SetAgentState(SetAgentState {
                agent_id: id.into(),
                status: AgentStatus::Available as i32,
                idle_reason: String::new(),
            })
        };
        let commands = vec![
            C::ConfigureQueue(ConfigureQueue { queue: Some(queue) }),
            C::ConfigureWrapUpReasons(ConfigureWrapUpReasons { reasons: vec!["sale".into()] }),
            agent("amy"),
            agent("bob"),
            available("amy"),
            available("bob"),
            C::ReceiveCustomerMessage(ReceiveCustomerMessage {
                conversation_id: "c1".into(),
                channel: Channel::Webchat as i32,
                queue_id: "chat".into(),
                message_id: "m1".into(),
                text: "hi".into(),
                ..Default::default()
            }),
            C::AcceptOffer(AcceptOffer { agent_id: "amy".into(), offer_id: "acme-o1".into() }),
            C::EndConversation(EndConversation { agent_id: "amy".into(), conversation_id: "c1".into() }),
            C::SubmitWrapUp(SubmitWrapUp {
                agent_id: "amy".into(),
                conversation_id: "c1".into(),
                reasons: vec!["sale".into()],
            }),
        ];
        for (n, command) in commands.into_iter().enumerate() {
            let command = Command {
                command_id: format!("k{n}"),
                domain: "acme".into(),
                at_ms: 1_000 * n as i64,
                command: Some(command),
            };
            let events = state.execute(&command).expect("the small day is valid");
            log.extend(events.iter().map(Message::encode_to_vec));
        }
        log
    }

    fn replay(log: &[Vec<u8>], filter: Filter) -> ReplayOutcome {
        let mut replay = Replay::new(options(filter));
        for (offset, record) in log.iter().enumerate() {
            if !replay.feed(offset as u64, record) {
                break;
            }
        }
        replay.finish()
    }

    #[test]
    fn a_valid_log_verifies_and_two_folds_give_one_digest() {
        let log = small_log();
        let first = replay(&log, Filter::Summary);
        assert!(first.violation.is_none(), "{:?}", first.violation);
        assert_eq!(first.records, log.len() as u64);
        assert_eq!(first.digest, replay(&log, Filter::Summary).digest);
        assert_eq!(first.digest.len(), 64);
        let shorter = replay(&log[..log.len() - 1], Filter::Summary);
        assert_ne!(shorter.digest, first.digest, "the digest follows the state");
        let text = render_text(&first, &Filter::Summary);
        assert!(text.lines().any(|l| l == format!("digest: {}", first.digest)), "{text}");
    }

    #[test]
    fn the_digest_taken_a_domain_at_a_time_is_the_hash_of_the_whole_map_as_json() {
        // given the states of a replayed log under two names, one needing escapes
        let mut replay = Replay::new(options(Filter::Summary));
        for (offset, record) in small_log().iter().enumerate() {
            assert!(replay.feed(offset as u64, record));
        }
        let state = replay.states.values().next().expect("a domain").clone();
        let states: BTreeMap<String, DomainState> =
            [("acme".to_string(), state.clone()), ("b\"quoted\"".to_string(), state)].into_iter().collect();

        // then the digest, taken a domain at a time, is that of serde_json's bytes for the whole map
        let whole = hex::encode(Sha256::digest(serde_json::to_vec(&states).unwrap()));
        assert_eq!(digest(&states), whole);
        assert_eq!(digest(&BTreeMap::new()), hex::encode(Sha256::digest(b"{}")));
    }

    #[test]
    fn a_conversation_timeline_explains_where_the_offer_went() {
        let outcome = replay(&small_log(), Filter::Conversation("c1".into()));
        let kinds: Vec<&str> = outcome.timeline.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                "ConversationCreated",
                "CustomerMessageReceived",
                "ConversationQueued",
                "ConversationOffered",
                "OfferAccepted",
                "ConversationEnded",
                "WrapUpStarted",
                "WrapUpSubmitted"
            ]
        );
        let offer = &outcome.timeline[3].description;
        assert!(offer.contains("to amy") && offer.contains("longest available"), "{offer}");
        assert!(offer.contains("bob passed over: free for less time"), "{offer}");
        assert!(outcome.timeline.iter().all(|e| !e.command_id.is_empty()));
    }

    #[test]
    fn an_agent_timeline_includes_offers_they_were_passed_over_for() {
        let outcome = replay(&small_log(), Filter::Agent("bob".into()));
        let lines: Vec<&str> = outcome.timeline.iter().map(|e| e.description.as_str()).collect();
        assert!(lines.iter().any(|l| l.starts_with("passed over for acme-o1 of c1 (went to amy)")), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("bob went from logged out to available")), "{lines:?}");
    }

    #[test]
    fn verify_names_the_first_event_that_breaks_a_rule() {
        let mut log = small_log();
        // Drop the OfferAccepted: the end of an unaccepted conversation by an
        // agent who does not own it cannot be explained.
        let accepted = log
            .iter()
            .position(|r| matches!(Envelope::decode(r.as_slice()).unwrap().event, Some(Event::OfferAccepted(_))))
            .unwrap();
        let removed = log.remove(accepted);
        let outcome = replay(&log, Filter::Summary);
        let violation = outcome.violation.expect("a gap is found");
        assert_eq!(violation.offset, accepted as u64);
        assert_eq!(violation.violation.rule, "gapless sequence");

        // Renumber the rest so only the missing accept is wrong.
        let mut renumbered: Vec<Vec<u8>> = log
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut e = Envelope::decode(r.as_slice()).unwrap();
                e.sequence = i as u64 + 1;
                e.event_id = format!("acme/{}", e.sequence);
                e.encode_to_vec()
            })
            .collect();
        let outcome = replay(&renumbered, Filter::Summary);
        let violation = outcome.violation.as_ref().expect("ending an unaccepted conversation is found");
        assert_eq!(violation.offset, accepted as u64);
        assert!(render_text(&outcome, &Filter::Summary).contains(&format!("violation at offset {accepted}")));
        // Garbage bytes are named as such.
        renumbered.insert(2, b"\xff\xff\xff".to_vec());
        assert_eq!(replay(&renumbered, Filter::Summary).violation.unwrap().violation.rule, "decodable records");
        drop(removed);
    }
}
