//! The server's configuration file (`switchboard serve --config FILE`): the
//! tenants, each one routing domain, with their queues, agents, supervisors,
//! reasons and entry points. [`Config::from_toml`] parses and validates it;
//! [`Config::configuration_commands`] turns it into the commands that set up
//! each tenant's domain. The format is in `docs/configuration.md`, and
//! `switchboard.example.toml` at the repository root is a commented example.
//!
//! The names of channels, strategies and policies ([`ChannelName`],
//! [`StrategyName`], [`TransferPolicyName`]) and the queue format
//! ([`QueueSpec`]) are shared with the simulator's scenario.

mod names;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use switchboard_kafka::KafkaSettings;
use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::{
    AgentProfile, Channel, ChannelCapacity, Command, ConfigureAgent, ConfigureIdleReasons, ConfigureQueue,
    ConfigureRetention, ConfigureTemplates, ConfigureWorkflows, ConfigureWrapUpReasons, MessageTemplate, Workflow,
};

pub use self::names::{ChannelName, QueueSpec, StrategyName, TransferPolicyName};

/// The channel names a file may use, for error messages.
const CHANNEL_NAMES: &str = "messenger, sms, webchat, email, whatsapp";

/// A configuration the server cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or a key or value of the wrong shape: an unknown key, an
    /// unknown channel, strategy or policy name, a missing required key.
    #[error("configuration file: {0}")]
    Parse(#[from] toml::de::Error),
    /// Well-formed, but inconsistent.
    #[error("configuration: {at}: {problem}")]
    Invalid {
        /// What is wrong, as a path: `tenant acme, queue wa-support`.
        at: String,
        /// Why it is wrong.
        problem: String,
    },
}

fn invalid<T>(at: impl Into<String>, problem: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid { at: at.into(), problem: problem.into() })
}

/// The whole configuration: parsed and, through [`Config::from_toml`] or
/// [`Config::demo`], validated.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The tenants, each one routing domain.
    pub tenants: Vec<Tenant>,
    /// Where the Kafka brokers are and how the topics are laid out, for
    /// `serve --kafka`, `kafka init` and `replay --kafka`.
    pub kafka: Option<KafkaSettings>,
}

/// Only the `[kafka]` table of a configuration file, for the commands that
/// need nothing else (`kafka init`, `replay --kafka`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KafkaSection {
    /// The table, if the file has one.
    pub kafka: Option<KafkaSettings>,
}

impl KafkaSection {
    /// Reads the `[kafka]` table of a configuration file, ignoring the rest.
    pub fn from_toml(text: &str) -> Result<KafkaSettings, ConfigError> {
        let section: Self = toml::from_str(text)?;
        let settings = section.kafka.unwrap_or_default();
        settings.topics.validate().or_else(|problem| invalid("kafka.topics", problem))?;
        Ok(settings)
    }
}

/// A closed conversation stays an hour: long enough for late commands and
/// receipts about it to be answered as about a closed conversation, short
/// enough that memory follows the traffic of the last hour, not all of it.
fn default_closed_retention_ms() -> u64 {
    3_600_000
}

/// One tenant: one routing domain and everything configured in it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// The tenant's id, which is also its routing domain's name (required).
    pub id: String,
    /// Display name; the id when empty.
    #[serde(default)]
    pub name: String,
    /// The queues.
    #[serde(default, deserialize_with = "queues_with_channel")]
    pub queues: Vec<QueueSpec>,
    /// The agents.
    #[serde(default)]
    pub agents: Vec<AgentSpec>,
    /// The supervisors.
    #[serde(default)]
    pub supervisors: Vec<SupervisorSpec>,
    /// The reasons agents may give for a wrap-up; empty accepts any reason.
    #[serde(default)]
    pub wrap_up_reasons: Vec<String>,
    /// The reasons agents may give for going Idle; empty accepts any reason.
    #[serde(default)]
    pub idle_reasons: Vec<String>,
    /// How long the engine keeps a closed conversation (ended, every
    /// wrap-up submitted) in memory, in milliseconds; 0 keeps them forever.
    /// Commands about a forgotten conversation are refused as about an
    /// unknown one; its events stay in the log.
    #[serde(default = "default_closed_retention_ms")]
    pub closed_retention_ms: u64,
    /// Which address of which channel feeds which queue.
    #[serde(default)]
    pub entry_points: Vec<EntryPoint>,
    /// The message templates agents attach to messages.
    #[serde(default)]
    pub templates: Vec<TemplateSpec>,
    /// The workflows agents may start from a conversation; none configured
    /// refuses every start.
    #[serde(default)]
    pub workflows: Vec<WorkflowSpec>,
}

/// A workflow an agent may start from a conversation, and the parameters
/// the agent must give it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    /// The workflow's id within the tenant (required).
    pub id: String,
    /// Display name; the id when empty.
    #[serde(default)]
    pub name: String,
    /// The names of the parameters a start must give.
    #[serde(default)]
    pub parameters: Vec<String>,
}

impl WorkflowSpec {
    /// The workflow as the schema carries it.
    pub fn workflow(&self) -> Workflow {
        Workflow {
            workflow_id: self.id.clone(),
            name: or_id(&self.name, &self.id).to_owned(),
            parameters: self.parameters.clone(),
        }
    }
}

/// A message template: text with `{{name}}` placeholders, filled in from
/// the conversation (customer_name, customer_email, customer_number,
/// agent_name, queue_name) or by the agent (any other name).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// The template's id within the tenant (required).
    pub id: String,
    /// Display name; the id when empty.
    #[serde(default)]
    pub name: String,
    /// The channels it may be used on; empty allows every channel.
    #[serde(default)]
    pub channels: Vec<ChannelName>,
    /// The text (required).
    pub text: String,
    /// A locked template is sent as rendered, never edited.
    #[serde(default)]
    pub locked: bool,
}

impl TemplateSpec {
    /// The template as the schema carries it.
    pub fn message_template(&self) -> MessageTemplate {
        MessageTemplate {
            template_id: self.id.clone(),
            name: or_id(&self.name, &self.id).to_owned(),
            channels: self.channels.iter().map(|c| c.channel() as i32).collect(),
            text: self.text.clone(),
            locked: self.locked,
        }
    }
}

/// An agent, their multimedia profile and their credential.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// The agent's id within the tenant (required).
    pub id: String,
    /// Display name; the id when empty.
    #[serde(default)]
    pub name: String,
    /// Conversations allowed at once per channel; a channel left out allows none.
    #[serde(default)]
    pub capacity: BTreeMap<ChannelName, u32>,
    /// The queues whose conversations the agent may be offered.
    #[serde(default)]
    pub queues: Vec<String>,
    /// The bearer token the agent's desktop presents (required).
    pub token: Token,
}

/// A supervisor and their credential.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSpec {
    /// The supervisor's id within the tenant (required).
    pub id: String,
    /// Display name; the id when empty.
    #[serde(default)]
    pub name: String,
    /// The bearer token the supervisor's console presents (required).
    pub token: Token,
}

/// Where customers write in: an address of a channel, and the queue its
/// conversations start in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryPoint {
    /// The channel.
    pub channel: ChannelName,
    /// The channel's address: a phone number, a mailbox, a page or widget id.
    /// Email addresses match ignoring ASCII case; others match exactly.
    pub address: String,
    /// The queue (of the same channel) new conversations go to.
    pub queue: String,
}

/// A bearer token. Its `Debug` hides it, so configurations can be logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// A token with the given secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Principal {
    /// An agent of a tenant.
    Agent {
        /// The tenant (routing domain).
        tenant: String,
        /// The agent.
        agent_id: String,
    },
    /// A supervisor of a tenant.
    Supervisor {
        /// The tenant (routing domain).
        tenant: String,
        /// The supervisor.
        supervisor_id: String,
    },
}

impl Principal {
    /// The tenant the principal belongs to, and may act in only.
    pub fn tenant(&self) -> &str {
        match self {
            Self::Agent { tenant, .. } | Self::Supervisor { tenant, .. } => tenant,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Agent { tenant, agent_id } => write!(f, "agent {tenant}/{agent_id}"),
            Self::Supervisor { tenant, supervisor_id } => write!(f, "supervisor {tenant}/{supervisor_id}"),
        }
    }
}

/// Reads `[[tenants.queues]]` requiring `channel`: the shared queue format
/// defaults it to webchat, which suits a simulated day but would silently
/// misroute a real queue whose channel was forgotten.
fn queues_with_channel<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<QueueSpec>, D::Error> {
    let tables = Vec::<toml::Table>::deserialize(deserializer)?;
    tables
        .into_iter()
        .map(|table| {
            let id = table.get("id").and_then(toml::Value::as_str).unwrap_or_default().to_owned();
            if !table.contains_key("channel") {
                return Err(D::Error::custom(format!(
                    "queue {id:?}: missing field `channel` (one of {CHANNEL_NAMES})"
                )));
            }
            toml::Value::Table(table)
                .try_into::<QueueSpec>()
                .map_err(|e| D::Error::custom(format!("queue {id:?}: {}", e.message().trim_end())))
        })
        .collect()
}

/// How addresses of a channel compare: mailboxes ignore ASCII case, as mail
/// servers do in practice; phone numbers and page ids are taken as written.
fn address_key(channel: ChannelName, address: &str) -> String {
    match channel {
        ChannelName::Email => address.to_ascii_lowercase(),
        _ => address.to_owned(),
    }
}

fn or_id<'a>(name: &'a str, id: &'a str) -> &'a str {
    if name.is_empty() {
        id
    } else {
        name
    }
}

impl Config {
    /// Parses and validates a configuration file.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// The tenant with the given id.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id == id)
    }

    /// Checks everything the domain would refuse, and the mistakes it could
    /// not see (a duplicated id would silently overwrite the first, a shared
    /// token would log one person in as another).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tenants.is_empty() {
            return invalid("tenants", "no tenant is configured");
        }
        if let Some(kafka) = &self.kafka {
            kafka.topics.validate().or_else(|problem| invalid("kafka.topics", problem))?;
        }
        let mut tenant_ids = BTreeSet::new();
        for (i, tenant) in self.tenants.iter().enumerate() {
            if tenant.id.is_empty() {
                return invalid(format!("tenants[{i}]"), "id is empty");
            }
            if !tenant_ids.insert(tenant.id.as_str()) {
                return invalid(format!("tenant {}", tenant.id), "is defined twice");
            }
            tenant.validate()?;
        }
        let mut holders: BTreeMap<&str, Principal> = BTreeMap::new();
        for (token, principal) in self.credentials() {
            if token.0.is_empty() {
                return invalid(principal.to_string(), "token is empty");
            }
            // Never name the token itself: errors end up in logs.
            if let Some(first) = holders.insert(&token.0, principal.clone()) {
                return invalid(
                    principal.to_string(),
                    format!("token is also the token of {first}: tokens must be unique"),
                );
            }
        }
        Ok(())
    }

    /// Every token and who holds it.
    fn credentials(&self) -> impl Iterator<Item = (&Token, Principal)> {
        self.tenants.iter().flat_map(|tenant| {
            let agents = tenant
                .agents
                .iter()
                .map(|a| (&a.token, Principal::Agent { tenant: tenant.id.clone(), agent_id: a.id.clone() }));
            let supervisors = tenant
                .supervisors
                .iter()
                .map(|s| (&s.token, Principal::Supervisor { tenant: tenant.id.clone(), supervisor_id: s.id.clone() }));
            agents.chain(supervisors)
        })
    }

    /// The commands that configure each tenant's domain as written: per
    /// tenant, its queues, its agents (after the queues they name), its
    /// wrap-up reasons and its idle reasons. Command ids are derived from
    /// what they configure (`config/<tenant>/queue/<id>`), so the same file
    /// always yields the same commands; `at_ms` is 0 for the engine to stamp.
    pub fn configuration_commands(&self) -> Vec<Command> {
        let mut commands = Vec::new();
        for tenant in &self.tenants {
            let command = |what: String, body: C| Command {
                command_id: format!("config/{}/{what}", tenant.id),
                domain: tenant.id.clone(),
                at_ms: 0,
                command: Some(body),
            };
            for queue in &tenant.queues {
                let body = C::ConfigureQueue(ConfigureQueue { queue: Some(queue.queue_config()) });
                commands.push(command(format!("queue/{}", queue.id), body));
            }
            for agent in &tenant.agents {
                let body = C::ConfigureAgent(ConfigureAgent { profile: Some(agent.profile()) });
                commands.push(command(format!("agent/{}", agent.id), body));
            }
            let reasons = tenant.wrap_up_reasons.clone();
            commands
                .push(command("wrap-up-reasons".into(), C::ConfigureWrapUpReasons(ConfigureWrapUpReasons { reasons })));
            let reasons = tenant.idle_reasons.clone();
            commands.push(command("idle-reasons".into(), C::ConfigureIdleReasons(ConfigureIdleReasons { reasons })));
            // TOML integers are i64, so a parsed u64 always fits.
            let templates = tenant.templates.iter().map(TemplateSpec::message_template).collect();
            commands.push(command("templates".into(), C::ConfigureTemplates(ConfigureTemplates { templates })));
            let workflows = tenant.workflows.iter().map(WorkflowSpec::workflow).collect();
            commands.push(command("workflows".into(), C::ConfigureWorkflows(ConfigureWorkflows { workflows })));
            let closed_conversation_ms = i64::try_from(tenant.closed_retention_ms).unwrap_or(i64::MAX);
            commands.push(command(
                "retention".into(),
                C::ConfigureRetention(ConfigureRetention { closed_conversation_ms }),
            ));
        }
        commands
    }

    /// The queue new conversations arriving at `address` on `channel` start
    /// in, for the tenant `tenant`.
    pub fn entry_point(&self, tenant: &str, channel: Channel, address: &str) -> Option<&str> {
        let tenant = self.tenant(tenant)?;
        tenant
            .entry_points
            .iter()
            .find(|e| {
                e.channel.channel() == channel && address_key(e.channel, &e.address) == address_key(e.channel, address)
            })
            .map(|e| e.queue.as_str())
    }

    /// Who holds which token: the server's one lookup per request.
    pub fn token_index(&self) -> TokenIndex {
        TokenIndex {
            principals: self.credentials().map(|(token, principal)| (token_digest(&token.0), principal)).collect(),
        }
    }

    /// The demo tenant the server runs when no file is given: a webchat, an
    /// email and a WhatsApp queue, three agents, one supervisor. Its tokens
    /// (`agent-ana-token`, `agent-ben-token`, `agent-cleo-token`,
    /// `supervisor-sam-token`) are public: for trying things out only.
    pub fn demo() -> Self {
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let queue = |id: &str, name: &str, channel, strategy| QueueSpec {
            id: id.into(),
            name: name.into(),
            channel,
            strategy,
            ..QueueSpec::default()
        };
        let agent = |id: &str, name: &str, capacity: &[(ChannelName, u32)], queues: &[&str]| AgentSpec {
            id: id.into(),
            name: name.into(),
            capacity: capacity.iter().copied().collect(),
            queues: strings(queues),
            token: Token::new(format!("agent-{id}-token")),
        };
        let entry =
            |channel, address: &str, queue: &str| EntryPoint { channel, address: address.into(), queue: queue.into() };
        use ChannelName::{Email, Webchat, Whatsapp};
        let tenant = Tenant {
            id: "demo".into(),
            name: "Demo".into(),
            queues: vec![
                QueueSpec {
                    transfer_timeout: TransferPolicyName::Drop,
                    ..queue("webchat", "Web chat", Webchat, StrategyName::LongestAvailable)
                },
                QueueSpec {
                    offer_timeout_ms: 120_000,
                    priority: -1,
                    ..queue("email", "Email", Email, StrategyName::LeastOccupied)
                },
                QueueSpec {
                    offer_timeout_ms: 45_000,
                    ..queue("whatsapp", "WhatsApp", Whatsapp, StrategyName::RoundRobin)
                },
            ],
            agents: vec![
                agent("ana", "Ana", &[(Webchat, 3), (Whatsapp, 3)], &["webchat", "whatsapp"]),
                agent("ben", "Ben", &[(Webchat, 2), (Email, 5)], &["webchat", "email"]),
                agent("cleo", "Cleo", &[(Whatsapp, 3), (Email, 5)], &["whatsapp", "email"]),
            ],
            supervisors: vec![SupervisorSpec {
                id: "sam".into(),
                name: "Sam".into(),
                token: Token::new("supervisor-sam-token"),
            }],
            wrap_up_reasons: strings(&["resolved", "follow-up", "sale", "other"]),
            idle_reasons: strings(&["break", "lunch", "training"]),
            closed_retention_ms: default_closed_retention_ms(),
            templates: vec![
                TemplateSpec {
                    id: "greeting".into(),
                    name: "Greeting".into(),
                    channels: Vec::new(),
                    text: "Hello {{customer_name}}, this is {{agent_name}} from {{queue_name}}. How can I help?".into(),
                    locked: false,
                },
                TemplateSpec {
                    id: "order-status".into(),
                    name: "Order status".into(),
                    channels: vec![Webchat, Whatsapp],
                    text: "Your order {{order_number}} is on its way and should arrive by {{delivery_date}}.".into(),
                    locked: true,
                },
            ],
            workflows: vec![WorkflowSpec {
                id: "refund".into(),
                name: "Refund an order".into(),
                parameters: strings(&["order_number"]),
            }],
            entry_points: vec![
                entry(Webchat, "demo-site", "webchat"),
                entry(Email, "support@demo.example", "email"),
                entry(Whatsapp, "+15550100", "whatsapp"),
            ],
        };
        Self { tenants: vec![tenant], kafka: None }
    }
}

impl Tenant {
    /// The display name: the name, or the id when no name is given.
    pub fn display_name(&self) -> &str {
        or_id(&self.name, &self.id)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let at = |what: String| format!("tenant {}, {what}", self.id);
        let mut queues = BTreeMap::new();
        for (i, queue) in self.queues.iter().enumerate() {
            if queue.id.is_empty() {
                return invalid(at(format!("queues[{i}]")), "id is empty");
            }
            if queues.insert(queue.id.as_str(), queue).is_some() {
                return invalid(at(format!("queue {}", queue.id)), "is defined twice");
            }
            if queue.offer_timeout_ms == 0 {
                return invalid(at(format!("queue {}", queue.id)), "offer_timeout_ms must be above zero");
            }
        }
        let known_queues = || queues.keys().copied().collect::<Vec<_>>().join(", ");
        let mut agents = BTreeSet::new();
        for (i, agent) in self.agents.iter().enumerate() {
            if agent.id.is_empty() {
                return invalid(at(format!("agents[{i}]")), "id is empty");
            }
            if !agents.insert(agent.id.as_str()) {
                return invalid(at(format!("agent {}", agent.id)), "is defined twice");
            }
            if let Some(unknown) = agent.queues.iter().find(|q| !queues.contains_key(q.as_str())) {
                return invalid(
                    at(format!("agent {}", agent.id)),
                    format!("names unknown queue {unknown:?} (queues: {})", known_queues()),
                );
            }
        }
        let mut supervisors = BTreeSet::new();
        for (i, supervisor) in self.supervisors.iter().enumerate() {
            if supervisor.id.is_empty() {
                return invalid(at(format!("supervisors[{i}]")), "id is empty");
            }
            if !supervisors.insert(supervisor.id.as_str()) {
                return invalid(at(format!("supervisor {}", supervisor.id)), "is defined twice");
            }
        }
        for (key, reasons) in [("wrap_up_reasons", &self.wrap_up_reasons), ("idle_reasons", &self.idle_reasons)] {
            let mut seen = BTreeSet::new();
            for reason in reasons {
                if reason.is_empty() {
                    return invalid(at(key.into()), "contains an empty reason");
                }
                if !seen.insert(reason) {
                    return invalid(at(key.into()), format!("lists {reason:?} twice"));
                }
            }
        }
        let mut templates = BTreeSet::new();
        for (i, template) in self.templates.iter().enumerate() {
            let here = at(format!("templates[{i}] ({})", template.id));
            if !templates.insert(template.id.as_str()) {
                return invalid(here, "is defined twice");
            }
            if let Err(problem) = switchboard_domain::template::validate(&template.message_template()) {
                return invalid(here, problem);
            }
        }
        let mut workflows = BTreeSet::new();
        for (i, workflow) in self.workflows.iter().enumerate() {
            let here = at(format!("workflows[{i}] ({})", workflow.id));
            if workflow.id.is_empty() {
                return invalid(here, "id is empty");
            }
            if !workflows.insert(workflow.id.as_str()) {
                return invalid(here, "is defined twice");
            }
            if workflow.parameters.iter().any(String::is_empty) {
                return invalid(here, "names an empty parameter");
            }
        }
        let mut addresses = BTreeSet::new();
        for (i, entry) in self.entry_points.iter().enumerate() {
            let here = at(format!("entry_points[{i}] ({} {:?})", entry.channel.name(), entry.address));
            if entry.address.is_empty() {
                return invalid(here, "address is empty");
            }
            let Some(queue) = queues.get(entry.queue.as_str()) else {
                return invalid(here, format!("names unknown queue {:?} (queues: {})", entry.queue, known_queues()));
            };
            if queue.channel != entry.channel {
                return invalid(
                    here,
                    format!("queue {} serves {}, not {}", queue.id, queue.channel.name(), entry.channel.name()),
                );
            }
            if !addresses.insert((entry.channel, address_key(entry.channel, &entry.address))) {
                return invalid(here, "is defined twice: an address feeds one queue");
            }
        }
        Ok(())
    }
}

impl AgentSpec {
    /// The schema's profile, as `ConfigureAgent` carries it.
    pub fn profile(&self) -> AgentProfile {
        AgentProfile {
            agent_id: self.id.clone(),
            name: or_id(&self.name, &self.id).to_owned(),
            capacities: self
                .capacity
                .iter()
                .map(|(channel, max)| ChannelCapacity { channel: channel.channel() as i32, max: *max })
                .collect(),
            queue_ids: self.queues.clone(),
        }
    }
}

impl SupervisorSpec {
    /// The display name: the name, or the id when no name is given.
    pub fn display_name(&self) -> &str {
        or_id(&self.name, &self.id)
    }
}

/// Tokens by their SHA-256 digest. Looking up the digest of the presented
/// token, rather than the token, keeps the lookup's timing from telling how
/// much of a guess matched a real token.
#[derive(Debug, Clone)]
pub struct TokenIndex {
    principals: std::collections::HashMap<[u8; 32], Principal>,
}

impl TokenIndex {
    /// Who holds `token`, if anyone.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        if token.is_empty() {
            return None;
        }
        self.principals.get(&token_digest(token)).cloned()
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}
