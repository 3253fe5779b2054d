//! The scenario of a simulated day: who works, what arrives, how people
//! behave. Read from TOML; every key has a default, and the defaults are
//! exactly `scenarios/default.toml` (a test holds the two together).

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand_distr::{Distribution as _, Exp, LogNormal};
use serde::{Deserialize, Serialize};

// The names and the queue format are the server configuration's, so that both
// files accept the same words and configure queues the same way.
pub use crate::config::{ChannelName, QueueSpec, StrategyName, TransferPolicyName};

/// The default scenario's text, as shipped in `scenarios/default.toml`.
const DEFAULT_TOML: &str = include_str!("../../scenarios/default.toml");

/// The 90th percentile of the standard normal distribution: turns a
/// median and a p90 into the log-normal's sigma.
const Z_90: f64 = 1.281_551_565_544_600_4;

/// A scenario the simulator cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Not TOML, or a key or value of the wrong shape.
    #[error("scenario file: {0}")]
    Parse(#[from] toml::de::Error),
    /// Well-formed, but inconsistent (an unknown queue, a probability above 1, ...).
    #[error("scenario: {0}")]
    Invalid(String),
}

fn invalid<T>(message: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError::Invalid(message.into()))
}

/// A whole simulated day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// The routing domain the events belong to.
    pub domain: String,
    /// Virtual time of the first command, in ms since the Unix epoch.
    pub start_ms: i64,
    /// The answer time the service level counts against.
    pub service_level_threshold_ms: i64,
    /// Agents log in (set Available) at random within this long after the start.
    pub login_spread_ms: u64,
    /// The wrap-up reasons agents choose from.
    pub wrap_up_reasons: Vec<String>,
    /// The reasons agents give for a break (Idle).
    pub idle_reasons: Vec<String>,
    /// The queues.
    pub queues: Vec<QueueSpec>,
    /// The agents, in groups of the same profile.
    pub agents: Vec<AgentGroup>,
    /// Streams of arriving customers.
    pub arrivals: Vec<ArrivalSpec>,
    /// How agents answer offers.
    pub offers: OfferBehaviour,
    /// How a conversation unfolds once accepted.
    pub conversation: ConversationBehaviour,
    /// How often and where agents transfer.
    pub transfers: TransferBehaviour,
    /// How often agents invite a colleague, and how it ends.
    pub conferences: ConferenceBehaviour,
    /// Customers who give up waiting.
    pub abandon: AbandonBehaviour,
    /// How agents wrap up.
    pub wrap_up: WrapUpBehaviour,
    /// Agents' idle breaks.
    pub breaks: BreakBehaviour,
}

/// Agents of one profile: ids `<prefix>-01`, `<prefix>-02`, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentGroup {
    /// Prefix of the agents' ids.
    pub prefix: String,
    /// How many agents; when `names` is given, it must be empty or zero, or match.
    pub count: u32,
    /// Display names, one per agent; when empty, names are made from the ids.
    pub names: Vec<String>,
    /// Conversations allowed per channel; a channel left out allows none.
    pub capacities: BTreeMap<ChannelName, u32>,
    /// Queues whose conversations these agents may be offered.
    pub queues: Vec<String>,
}

impl Default for AgentGroup {
    fn default() -> Self {
        Self {
            prefix: "agent".into(),
            count: 1,
            names: Vec::new(),
            capacities: BTreeMap::from([(ChannelName::Webchat, 3)]),
            queues: Vec::new(),
        }
    }
}

impl AgentGroup {
    /// How many agents the group has.
    pub fn size(&self) -> u32 {
        if self.names.is_empty() {
            self.count
        } else {
            self.names.len() as u32
        }
    }
}

/// A stream of customers arriving on one channel into one queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArrivalSpec {
    /// The channel they write on.
    pub channel: ChannelName,
    /// The queue the entry point sends them to (of the same channel).
    pub queue: String,
    /// Mean arrivals per hour (a Poisson process).
    pub per_hour: f64,
    /// The conversations' priority within the queue.
    pub priority: i32,
    /// Overrides `conversation.exchanges_min` for this stream.
    pub exchanges_min: Option<u32>,
    /// Overrides `conversation.exchanges_max` for this stream.
    pub exchanges_max: Option<u32>,
    /// Overrides `conversation.first_reply_ms` for this stream.
    pub first_reply_ms: Option<Distribution>,
}

impl Default for ArrivalSpec {
    fn default() -> Self {
        Self {
            channel: ChannelName::Webchat,
            queue: String::new(),
            per_hour: 60.0,
            priority: 0,
            exchanges_min: None,
            exchanges_max: None,
            first_reply_ms: None,
        }
    }
}

/// A random quantity (a duration in ms, a length in characters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Distribution {
    /// Always `value`.
    Fixed {
        /// The value.
        value: f64,
    },
    /// Uniform between `min` and `max`.
    Uniform {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
    },
    /// Exponential with the given mean (memoryless waits).
    Exponential {
        /// The mean.
        mean: f64,
    },
    /// Log-normal given by its median and 90th percentile (human think times).
    Lognormal {
        /// Half the values are below.
        median: f64,
        /// Nine in ten values are below.
        p90: f64,
    },
}

impl Distribution {
    fn check(&self, key: &str) -> Result<(), ScenarioError> {
        let ok = match *self {
            Self::Fixed { value } => value.is_finite() && value >= 0.0,
            Self::Uniform { min, max } => min.is_finite() && max.is_finite() && 0.0 <= min && min <= max,
            Self::Exponential { mean } => mean.is_finite() && mean > 0.0,
            Self::Lognormal { median, p90 } => median.is_finite() && p90.is_finite() && 0.0 < median && median < p90,
        };
        if ok {
            Ok(())
        } else {
            invalid(format!(
                "{key}: {self:?} is not a distribution (values must be finite and non-negative, \
                 min <= max, mean > 0, 0 < median < p90)"
            ))
        }
    }

    /// One draw, never negative.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let value = match *self {
            Self::Fixed { value } => value,
            Self::Uniform { min, max } => {
                if min < max {
                    rng.gen_range(min..=max)
                } else {
                    min
                }
            }
            Self::Exponential { mean } => Exp::new(1.0 / mean).map_or(mean, |d| d.sample(rng)),
            Self::Lognormal { median, p90 } => {
                let sigma = (p90 / median).ln() / Z_90;
                LogNormal::new(median.ln(), sigma).map_or(median, |d| d.sample(rng))
            }
        };
        value.max(0.0)
    }

    /// One draw rounded to whole milliseconds.
    pub fn sample_ms<R: Rng + ?Sized>(&self, rng: &mut R) -> i64 {
        // Cap at a year so that a heavy tail cannot overflow virtual time.
        self.sample(rng).round().min(31_536_000_000.0) as i64
    }
}

/// How agents answer offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfferBehaviour {
    /// From the offer to the accept; a draw past the offer's timeout lets it lapse.
    pub accept_after_ms: Distribution,
    /// Routed offers the agent ignores outright (RONA).
    pub lapse_probability: f64,
    /// Transfer offers the target agent ignores.
    pub transfer_lapse_probability: f64,
    /// Conference invitations the invitee ignores.
    pub conference_lapse_probability: f64,
    /// From RONA until the agent sets Available again by hand.
    pub rona_recovery_ms: Distribution,
}

impl Default for OfferBehaviour {
    fn default() -> Self {
        Self {
            accept_after_ms: Distribution::Lognormal { median: 4_000.0, p90: 12_000.0 },
            lapse_probability: 0.03,
            transfer_lapse_probability: 0.25,
            conference_lapse_probability: 0.15,
            rona_recovery_ms: Distribution::Exponential { mean: 45_000.0 },
        }
    }
}

/// How a conversation unfolds once an agent owns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConversationBehaviour {
    /// Fewest customer message / agent reply pairs after the agent's first reply.
    pub exchanges_min: u32,
    /// Most such pairs.
    pub exchanges_max: u32,
    /// From the accept to the agent's first message.
    pub first_reply_ms: Distribution,
    /// From a customer message to the agent's reply.
    pub agent_reply_ms: Distribution,
    /// From an agent message to the customer's next one.
    pub customer_reply_ms: Distribution,
    /// Length of an agent message, cut to the channel's compose limit.
    pub agent_message_chars: Distribution,
    /// Length of a customer message.
    pub customer_message_chars: Distribution,
    /// Conversations the customer ends (else the agent ends them).
    pub customer_ends_probability: f64,
}

impl Default for ConversationBehaviour {
    fn default() -> Self {
        Self {
            exchanges_min: 1,
            exchanges_max: 6,
            first_reply_ms: Distribution::Lognormal { median: 8_000.0, p90: 20_000.0 },
            agent_reply_ms: Distribution::Lognormal { median: 25_000.0, p90: 70_000.0 },
            customer_reply_ms: Distribution::Lognormal { median: 30_000.0, p90: 120_000.0 },
            agent_message_chars: Distribution::Lognormal { median: 120.0, p90: 450.0 },
            customer_message_chars: Distribution::Lognormal { median: 60.0, p90: 250.0 },
            customer_ends_probability: 0.5,
        }
    }
}

/// How often agents transfer, and where to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferBehaviour {
    /// Conversations the first owner transfers instead of ending.
    pub probability: f64,
    /// Of those, the share sent to a named agent (never for email: those go to a queue).
    pub to_agent_share: f64,
}

impl Default for TransferBehaviour {
    fn default() -> Self {
        Self { probability: 0.12, to_agent_share: 0.5 }
    }
}

/// How often agents invite a colleague, and how the conference ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConferenceBehaviour {
    /// Conversations with a conference (never email).
    pub probability: f64,
    /// Conferences the invitee leaves (the chat goes on); else the owner ends them.
    pub invitee_leaves_share: f64,
    /// From the invitee's first message to the conference's end.
    pub duration_ms: Distribution,
}

impl Default for ConferenceBehaviour {
    fn default() -> Self {
        Self {
            probability: 0.08,
            invitee_leaves_share: 0.5,
            duration_ms: Distribution::Lognormal { median: 60_000.0, p90: 180_000.0 },
        }
    }
}

/// Customers who give up while waiting for a first answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbandonBehaviour {
    /// Customers who would leave if not answered within their patience.
    pub probability: f64,
    /// How long such a customer waits.
    pub patience_ms: Distribution,
}

impl Default for AbandonBehaviour {
    fn default() -> Self {
        Self { probability: 0.3, patience_ms: Distribution::Lognormal { median: 60_000.0, p90: 240_000.0 } }
    }
}

/// How agents wrap up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WrapUpBehaviour {
    /// From leaving a conversation to submitting the wrap-up by hand.
    pub duration_ms: Distribution,
    /// Wrap-ups giving two or three reasons instead of one.
    pub multiple_reasons_probability: f64,
}

impl Default for WrapUpBehaviour {
    fn default() -> Self {
        Self {
            duration_ms: Distribution::Lognormal { median: 15_000.0, p90: 45_000.0 },
            multiple_reasons_probability: 0.3,
        }
    }
}

/// Agents' idle breaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakBehaviour {
    /// From being back (or logged in) to the next break; agents who are not
    /// Available then try again after another draw.
    pub every_ms: Distribution,
    /// How long a break lasts.
    pub duration_ms: Distribution,
}

impl Default for BreakBehaviour {
    fn default() -> Self {
        Self {
            every_ms: Distribution::Exponential { mean: 5_400_000.0 },
            duration_ms: Distribution::Lognormal { median: 300_000.0, p90: 900_000.0 },
        }
    }
}

fn default_queue(id: &str, channel: ChannelName, strategy: StrategyName) -> QueueSpec {
    QueueSpec { id: id.into(), name: String::new(), channel, strategy, ..QueueSpec::default() }
}

impl Default for Scenario {
    /// The documented default: a mid-size team on all five channels
    /// (identical to `scenarios/default.toml`).
    fn default() -> Self {
        use ChannelName::*;
        Self {
            domain: "sim".into(),
            start_ms: 1_772_438_400_000,
            service_level_threshold_ms: 20_000,
            login_spread_ms: 300_000,
            wrap_up_reasons: ["sale", "support", "billing", "complaint", "other"].map(String::from).to_vec(),
            idle_reasons: ["break", "lunch", "training"].map(String::from).to_vec(),
            queues: vec![
                QueueSpec {
                    name: "Web chat support".into(),
                    transfer_timeout: TransferPolicyName::Drop,
                    ..default_queue("chat-support", Webchat, StrategyName::LongestAvailable)
                },
                QueueSpec {
                    name: "Web chat sales".into(),
                    priority: 1,
                    ..default_queue("chat-sales", Webchat, StrategyName::RoundRobin)
                },
                QueueSpec {
                    name: "WhatsApp".into(),
                    offer_timeout_ms: 45_000,
                    ..default_queue("whatsapp", Whatsapp, StrategyName::LeastOccupied)
                },
                QueueSpec {
                    name: "SMS".into(),
                    transfer_timeout: TransferPolicyName::Drop,
                    auto_wrap_up_ms: 30_000,
                    ..default_queue("sms", Sms, StrategyName::LongestAvailable)
                },
                QueueSpec {
                    name: "Messenger".into(),
                    ..default_queue("messenger", Messenger, StrategyName::RoundRobin)
                },
                QueueSpec {
                    name: "Email".into(),
                    offer_timeout_ms: 120_000,
                    priority: -1,
                    ..default_queue("email", Email, StrategyName::LeastOccupied)
                },
            ],
            agents: vec![
                AgentGroup {
                    prefix: "chat".into(),
                    count: 8,
                    names: Vec::new(),
                    capacities: BTreeMap::from([(Webchat, 3), (Messenger, 2)]),
                    queues: ["chat-support", "chat-sales", "messenger"].map(String::from).to_vec(),
                },
                AgentGroup {
                    prefix: "social".into(),
                    count: 6,
                    names: Vec::new(),
                    capacities: BTreeMap::from([(Whatsapp, 3), (Sms, 3), (Messenger, 2), (Webchat, 1)]),
                    queues: ["whatsapp", "sms", "messenger", "chat-support"].map(String::from).to_vec(),
                },
                AgentGroup {
                    prefix: "mail".into(),
                    count: 3,
                    names: Vec::new(),
                    capacities: BTreeMap::from([(Email, 5), (Webchat, 1)]),
                    queues: ["email", "chat-support"].map(String::from).to_vec(),
                },
            ],
            arrivals: vec![
                ArrivalSpec { channel: Webchat, queue: "chat-support".into(), per_hour: 90.0, ..Default::default() },
                ArrivalSpec { channel: Webchat, queue: "chat-sales".into(), per_hour: 40.0, ..Default::default() },
                ArrivalSpec { channel: Whatsapp, queue: "whatsapp".into(), per_hour: 50.0, ..Default::default() },
                ArrivalSpec { channel: Sms, queue: "sms".into(), per_hour: 30.0, ..Default::default() },
                ArrivalSpec { channel: Messenger, queue: "messenger".into(), per_hour: 30.0, ..Default::default() },
                ArrivalSpec {
                    channel: Email,
                    queue: "email".into(),
                    per_hour: 25.0,
                    exchanges_min: Some(0),
                    exchanges_max: Some(1),
                    first_reply_ms: Some(Distribution::Lognormal { median: 180_000.0, p90: 600_000.0 }),
                    ..Default::default()
                },
            ],
            offers: OfferBehaviour::default(),
            conversation: ConversationBehaviour::default(),
            transfers: TransferBehaviour::default(),
            conferences: ConferenceBehaviour::default(),
            abandon: AbandonBehaviour::default(),
            wrap_up: WrapUpBehaviour::default(),
            breaks: BreakBehaviour::default(),
        }
    }
}

fn probability(key: &str, value: f64) -> Result<(), ScenarioError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        invalid(format!("{key} is {value}: a probability must be between 0 and 1"))
    }
}

impl Scenario {
    /// Reads a scenario from TOML; keys left out take their defaults.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Self = toml::from_str(text)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The default scenario's TOML, with every key and a comment on each.
    pub fn default_toml() -> &'static str {
        DEFAULT_TOML
    }

    /// The agents' ids and display names, in the order they are configured.
    pub fn agent_roster(&self) -> Vec<(String, String, &AgentGroup)> {
        let mut roster = Vec::new();
        for group in &self.agents {
            for i in 0..group.size() as usize {
                let id = format!("{}-{:02}", group.prefix, i + 1);
                let name = group.names.get(i).cloned().unwrap_or_else(|| format!("{} {:02}", group.prefix, i + 1));
                roster.push((id, name, group));
            }
        }
        roster
    }

    /// Checks everything the domain would refuse or the simulation could
    /// not finish with (a queue no agent serves would never empty).
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.domain.is_empty() {
            return invalid("domain is empty");
        }
        if self.service_level_threshold_ms < 0 {
            return invalid("service_level_threshold_ms is negative");
        }
        if self.wrap_up_reasons.iter().chain(&self.idle_reasons).any(String::is_empty) {
            return invalid("wrap_up_reasons and idle_reasons cannot contain an empty reason");
        }
        if self.wrap_up_reasons.is_empty() {
            return invalid("wrap_up_reasons is empty: agents need at least one reason to wrap up");
        }
        let mut queues = BTreeMap::new();
        for queue in &self.queues {
            if queue.id.is_empty() {
                return invalid("a queue has no id");
            }
            if queues.insert(queue.id.as_str(), queue).is_some() {
                return invalid(format!("queue {} is defined twice", queue.id));
            }
            if queue.offer_timeout_ms == 0 {
                return invalid(format!("queue {}: offer_timeout_ms must be above zero", queue.id));
            }
        }
        let mut ids = BTreeSet::new();
        for (id, _, group) in self.agent_roster() {
            if !ids.insert(id.clone()) {
                return invalid(format!("agent {id} is defined twice (two groups with prefix {})", group.prefix));
            }
        }
        for group in &self.agents {
            if group.prefix.is_empty() {
                return invalid("an agent group has no prefix");
            }
            if !group.names.is_empty() && group.count != 0 && group.count as usize != group.names.len() {
                return invalid(format!(
                    "agent group {}: count {} but {} names",
                    group.prefix,
                    group.count,
                    group.names.len()
                ));
            }
            if let Some(unknown) = group.queues.iter().find(|q| !queues.contains_key(q.as_str())) {
                return invalid(format!("agent group {} names unknown queue {unknown}", group.prefix));
            }
        }
        for (queue_id, queue) in &queues {
            let served = self.agents.iter().any(|g| {
                g.size() > 0
                    && g.queues.iter().any(|q| q == queue_id)
                    && g.capacities.get(&queue.channel).is_some_and(|c| *c > 0)
            });
            if !served {
                return invalid(format!(
                    "queue {queue_id}: no agent group serves it with a {:?} capacity above zero, \
                     so its conversations would wait forever",
                    queue.channel
                ));
            }
        }
        if self.arrivals.is_empty() {
            return invalid("arrivals is empty: nobody would ever write");
        }
        for (i, arrival) in self.arrivals.iter().enumerate() {
            let key = format!("arrivals[{i}]");
            let Some(queue) = queues.get(arrival.queue.as_str()) else {
                return invalid(format!("{key}: unknown queue {:?}", arrival.queue));
            };
            if queue.channel != arrival.channel {
                return invalid(format!(
                    "{key}: {:?} arrivals cannot go to queue {}, which serves {:?}",
                    arrival.channel, queue.id, queue.channel
                ));
            }
            if !(arrival.per_hour.is_finite() && arrival.per_hour > 0.0) {
                return invalid(format!("{key}: per_hour must be above zero"));
            }
            let (min, max) = self.exchanges(arrival);
            if min > max {
                return invalid(format!("{key}: exchanges_min {min} is above exchanges_max {max}"));
            }
            if let Some(first_reply) = &arrival.first_reply_ms {
                first_reply.check(&format!("{key}.first_reply_ms"))?;
            }
        }
        let c = &self.conversation;
        if c.exchanges_min > c.exchanges_max {
            return invalid("conversation.exchanges_min is above conversation.exchanges_max");
        }
        for (key, p) in [
            ("offers.lapse_probability", self.offers.lapse_probability),
            ("offers.transfer_lapse_probability", self.offers.transfer_lapse_probability),
            ("offers.conference_lapse_probability", self.offers.conference_lapse_probability),
            ("conversation.customer_ends_probability", c.customer_ends_probability),
            ("transfers.probability", self.transfers.probability),
            ("transfers.to_agent_share", self.transfers.to_agent_share),
            ("conferences.probability", self.conferences.probability),
            ("conferences.invitee_leaves_share", self.conferences.invitee_leaves_share),
            ("abandon.probability", self.abandon.probability),
            ("wrap_up.multiple_reasons_probability", self.wrap_up.multiple_reasons_probability),
        ] {
            probability(key, p)?;
        }
        if self.transfers.probability + self.conferences.probability > 1.0 {
            return invalid("transfers.probability + conferences.probability is above 1");
        }
        for (key, distribution) in [
            ("offers.accept_after_ms", &self.offers.accept_after_ms),
            ("offers.rona_recovery_ms", &self.offers.rona_recovery_ms),
            ("conversation.first_reply_ms", &c.first_reply_ms),
            ("conversation.agent_reply_ms", &c.agent_reply_ms),
            ("conversation.customer_reply_ms", &c.customer_reply_ms),
            ("conversation.agent_message_chars", &c.agent_message_chars),
            ("conversation.customer_message_chars", &c.customer_message_chars),
            ("conferences.duration_ms", &self.conferences.duration_ms),
            ("abandon.patience_ms", &self.abandon.patience_ms),
            ("wrap_up.duration_ms", &self.wrap_up.duration_ms),
            ("breaks.every_ms", &self.breaks.every_ms),
            ("breaks.duration_ms", &self.breaks.duration_ms),
        ] {
            distribution.check(key)?;
        }
        if let Distribution::Fixed { value } = self.breaks.every_ms {
            if value < 1.0 {
                return invalid("breaks.every_ms must not be zero: agents would never work");
            }
        }
        Ok(())
    }

    /// The exchange range of an arrival stream, its overrides applied.
    pub fn exchanges(&self, arrival: &ArrivalSpec) -> (u32, u32) {
        (
            arrival.exchanges_min.unwrap_or(self.conversation.exchanges_min),
            arrival.exchanges_max.unwrap_or(self.conversation.exchanges_max),
        )
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_shipped_default_file_is_the_default_scenario_and_is_valid() {
        let parsed = Scenario::from_toml(Scenario::default_toml()).unwrap();
        assert_eq!(parsed, Scenario::default());
        Scenario::default().validate().unwrap();
    }

    #[test]
    fn keys_left_out_take_their_defaults() {
        let scenario = Scenario::from_toml("domain = \"small\"\n[transfers]\nprobability = 0.5\n").unwrap();
        assert_eq!(scenario.domain, "small");
        assert_eq!(scenario.transfers.probability, 0.5);
        assert_eq!(scenario.transfers.to_agent_share, TransferBehaviour::default().to_agent_share);
        assert_eq!(scenario.queues, Scenario::default().queues);
    }

    #[test]
    fn mistakes_are_refused_naming_the_key() {
        let cases = [
            ("[[queues]]\nid = \"q\"\nchannel = \"fax\"\n", "unknown variant `fax`"),
            ("[offers]\nlapse_probabilty = 0.1\n", "unknown field `lapse_probabilty`"),
            ("[offers]\nlapse_probability = 1.5\n", "offers.lapse_probability is 1.5"),
            (
                "[offers]\naccept_after_ms = { kind = \"lognormal\", median = 10, p90 = 5 }\n",
                "offers.accept_after_ms",
            ),
            ("[[arrivals]]\nchannel = \"email\"\nqueue = \"chat-support\"\n", "cannot go to queue chat-support"),
            ("[[arrivals]]\nchannel = \"email\"\nqueue = \"nowhere\"\n", "unknown queue \"nowhere\""),
            (
                "[[queues]]\nid = \"lonely\"\n[[agents]]\nprefix = \"a\"\nqueues = [\"lonely\"]\ncapacities = { sms = 2 }\n\
                 [[arrivals]]\nqueue = \"lonely\"\n",
                "queue lonely: no agent group serves it",
            ),
        ];
        for (text, expected) in cases {
            let error = Scenario::from_toml(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?} gave {error:?}, expected {expected:?}");
        }
    }

    #[test]
    fn a_lognormal_given_by_median_and_p90_has_them() {
        let distribution = Distribution::Lognormal { median: 1_000.0, p90: 5_000.0 };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut draws: Vec<f64> = (0..20_000).map(|_| distribution.sample(&mut rng)).collect();
        draws.sort_by(f64::total_cmp);
        let (median, p90) = (draws[10_000], draws[18_000]);
        assert!((900.0..1_100.0).contains(&median), "median {median}");
        assert!((4_500.0..5_500.0).contains(&p90), "p90 {p90}");
        assert_eq!(Distribution::Fixed { value: -3.0 }.sample(&mut rng), 0.0, "never negative");
    }
}
