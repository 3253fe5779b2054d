//! Given a configuration file, when it is parsed, validated and turned into
//! commands, then the domain ends up as written, or the error names what is wrong.

use switchboard_domain::DomainState;
use switchboard_proto::v1::Channel;

use super::*;

const EXAMPLE: &str = include_str!("../../../../switchboard.example.toml");

/// A small valid tenant that the error cases below break one key at a time.
const VALID: &str = r#"
[[tenants]]
id = "acme"
wrap_up_reasons = ["done"]
idle_reasons = ["break"]
[[tenants.queues]]
id = "chat"
channel = "webchat"
[[tenants.queues]]
id = "wa"
channel = "whatsapp"
[[tenants.agents]]
id = "ana"
capacity = { webchat = 2, whatsapp = 3 }
queues = ["chat", "wa"]
token = "token-ana"
[[tenants.supervisors]]
id = "sam"
token = "token-sam"
[[tenants.entry_points]]
channel = "whatsapp"
address = "+15550100"
queue = "wa"
[[tenants.templates]]
id = "hello"
text = "Hello {{customer_name}}"
[[tenants.workflows]]
id = "refund"
parameters = ["order"]
"#;

fn error_of(text: &str) -> String {
    match Config::from_toml(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error.to_string(),
    }
}

/// Runs the configuration commands of every tenant against a fresh domain,
/// one millisecond apart, and returns the domains.
fn configured_domains(config: &Config) -> BTreeMap<String, DomainState> {
    let mut domains = BTreeMap::new();
    for (i, command) in config.configuration_commands().into_iter().enumerate() {
        let state = domains.entry(command.domain.clone()).or_insert_with(|| DomainState::new(command.domain.clone()));
        let command = Command { at_ms: i as i64 + 1, ..command };
        if let Err(rejection) = state.execute(&command) {
            panic!("{} was rejected: {rejection:?}", command.command_id);
        }
    }
    domains
}

fn assert_configured_as_written(config: &Config) {
    let domains = configured_domains(config);
    assert_eq!(domains.len(), config.tenants.len());
    for tenant in &config.tenants {
        let state = &domains[&tenant.id];
        assert_eq!(state.queues.len(), tenant.queues.len());
        for queue in &tenant.queues {
            assert_eq!(state.queues[&queue.id].config, queue.queue_config(), "queue {}", queue.id);
        }
        assert_eq!(state.agents.len(), tenant.agents.len());
        for agent in &tenant.agents {
            let configured = &state.agents[&agent.id];
            assert_eq!(&configured.name, if agent.name.is_empty() { &agent.id } else { &agent.name });
            for (channel, max) in &agent.capacity {
                assert_eq!(configured.capacity(channel.channel()), *max, "agent {} {channel:?}", agent.id);
            }
            assert_eq!(configured.queues, agent.queues.iter().cloned().collect::<BTreeSet<_>>());
        }
        assert_eq!(state.wrap_up_reasons, tenant.wrap_up_reasons);
        assert_eq!(state.idle_reasons, tenant.idle_reasons);
        assert_eq!(state.closed_retention_ms, tenant.closed_retention_ms as i64);
        let templates: Vec<_> = tenant.templates.iter().map(TemplateSpec::message_template).collect();
        assert_eq!(state.templates.values().cloned().collect::<Vec<_>>(), templates);
        let workflows: Vec<_> = tenant.workflows.iter().map(WorkflowSpec::workflow).collect();
        assert_eq!(state.workflows.values().cloned().collect::<Vec<_>>(), workflows);
        state.check_invariants().unwrap();
    }
}

#[test]
fn the_example_file_parses_and_validates() {
    let config = Config::from_toml(EXAMPLE).unwrap();
    let acme = config.tenant("acme").unwrap();
    assert_eq!(acme.queues.len(), 3);
    assert_eq!(acme.agents[0].capacity[&ChannelName::Whatsapp], 5);
    assert_eq!(config.tenant("globex").unwrap().queues[0].offer_timeout_ms, 30_000, "defaults apply");
}

#[test]
fn the_demo_is_valid_with_three_channels_three_agents_and_a_supervisor() {
    let demo = Config::demo();
    demo.validate().unwrap();
    let tenant = demo.tenant("demo").unwrap();
    let channels: BTreeSet<_> = tenant.queues.iter().map(|q| q.channel).collect();
    assert_eq!(channels, BTreeSet::from([ChannelName::Webchat, ChannelName::Email, ChannelName::Whatsapp]));
    assert_eq!(tenant.agents.len(), 3);
    assert_eq!(tenant.supervisors.len(), 1);
    assert!(!tenant.wrap_up_reasons.is_empty() && !tenant.idle_reasons.is_empty());
    assert_eq!(tenant.entry_points.len(), 3);
}

#[test]
fn configuration_commands_set_up_fresh_domains_as_written() {
    assert_configured_as_written(&Config::demo());
    assert_configured_as_written(&Config::from_toml(EXAMPLE).unwrap());
    assert_configured_as_written(&Config::from_toml(VALID).unwrap());
}

#[test]
fn configuration_commands_have_deterministic_ids_per_tenant_and_leave_the_time_to_the_engine() {
    let config = Config::from_toml(VALID).unwrap();
    let commands = config.configuration_commands();
    let ids: Vec<_> = commands.iter().map(|c| c.command_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "config/acme/queue/chat",
            "config/acme/queue/wa",
            "config/acme/agent/ana",
            "config/acme/wrap-up-reasons",
            "config/acme/idle-reasons",
            "config/acme/templates",
            "config/acme/workflows",
            "config/acme/retention"
        ]
    );
    assert!(commands.iter().all(|c| c.domain == "acme" && c.at_ms == 0));
    assert_eq!(commands, config.configuration_commands());
}

#[test]
fn entry_points_resolve_to_their_queue_in_their_tenant_only() {
    let config = Config::from_toml(EXAMPLE).unwrap();
    assert_eq!(config.entry_point("acme", Channel::Whatsapp, "+15550100"), Some("wa-support"));
    assert_eq!(config.entry_point("acme", Channel::Email, "Support@ACME.example"), Some("email"), "mail ignores case");
    assert_eq!(config.entry_point("globex", Channel::Sms, "+15550199"), Some("sms"));
    assert_eq!(config.entry_point("acme", Channel::Sms, "+15550100"), None, "another channel");
    assert_eq!(config.entry_point("globex", Channel::Whatsapp, "+15550100"), None, "another tenant");
    assert_eq!(config.entry_point("nobody", Channel::Whatsapp, "+15550100"), None);
    assert_eq!(Config::demo().entry_point("demo", Channel::Webchat, "demo-site"), Some("webchat"));
}

#[test]
fn tokens_authenticate_their_agent_or_supervisor_and_nothing_else() {
    let demo = Config::demo().token_index();
    let agent = |id: &str| Some(Principal::Agent { tenant: "demo".into(), agent_id: id.into() });
    assert_eq!(demo.authenticate("agent-ana-token"), agent("ana"));
    assert_eq!(demo.authenticate("agent-ben-token"), agent("ben"));
    assert_eq!(demo.authenticate("agent-cleo-token"), agent("cleo"));
    let sam = demo.authenticate("supervisor-sam-token").unwrap();
    assert_eq!(sam, Principal::Supervisor { tenant: "demo".into(), supervisor_id: "sam".into() });
    assert_eq!(sam.tenant(), "demo");
    for wrong in ["", "agent-ana-toke", "agent-ana-tokenn", "AGENT-ANA-TOKEN", "agent-bob-token"] {
        assert_eq!(demo.authenticate(wrong), None, "{wrong:?}");
    }
    let example = Config::from_toml(EXAMPLE).unwrap().token_index();
    assert_eq!(
        example.authenticate("replace-me-globex-ana-c05e11aa"),
        Some(Principal::Agent { tenant: "globex".into(), agent_id: "ana".into() }),
        "the same agent id in two tenants is told apart by the token"
    );
}

#[test]
fn tokens_are_never_shown_in_debug_output_or_errors() {
    let debug = format!("{:?}", Config::demo());
    assert!(!debug.contains("agent-ana-token"), "{debug}");
    let shared = VALID.replace("token-sam", "token-ana");
    let error = error_of(&shared);
    assert!(!error.contains("token-ana"), "{error}");
}

#[test]
fn every_inconsistency_is_refused_naming_what_is_wrong() {
    let cases: &[(&str, &str, &str)] = &[
        ("", "", "no tenant is configured"),
        ("id = \"acme\"", "id = \"\"", "tenants[0]: id is empty"),
        ("id = \"chat\"", "id = \"wa\"", "tenant acme, queue wa: is defined twice"),
        ("id = \"chat\"", "id = \"\"", "tenant acme, queues[0]: id is empty"),
        (
            "channel = \"webchat\"",
            "channel = \"webchat\"\noffer_timeout_ms = 0",
            "queue chat: offer_timeout_ms must be above zero",
        ),
        (
            "queues = [\"chat\", \"wa\"]",
            "queues = [\"chat\", \"voice\"]",
            "agent ana: names unknown queue \"voice\" (queues: chat, wa)",
        ),
        ("id = \"ana\"", "id = \"\"", "tenant acme, agents[0]: id is empty"),
        ("id = \"sam\"", "id = \"\"", "tenant acme, supervisors[0]: id is empty"),
        (
            "token = \"token-sam\"",
            "token = \"token-ana\"",
            "supervisor acme/sam: token is also the token of agent acme/ana",
        ),
        ("token = \"token-sam\"", "token = \"\"", "supervisor acme/sam: token is empty"),
        (
            "queue = \"wa\"",
            "queue = \"voice\"",
            "entry_points[0] (whatsapp \"+15550100\"): names unknown queue \"voice\"",
        ),
        (
            "queue = \"wa\"",
            "queue = \"chat\"",
            "entry_points[0] (whatsapp \"+15550100\"): queue chat serves webchat, not whatsapp",
        ),
        ("address = \"+15550100\"", "address = \"\"", "entry_points[0] (whatsapp \"\"): address is empty"),
        ("[\"done\"]", "[\"done\", \"\"]", "tenant acme, wrap_up_reasons: contains an empty reason"),
        ("[\"break\"]", "[\"break\", \"break\"]", "tenant acme, idle_reasons: lists \"break\" twice"),
        ("idle_reasons = [\"break\"]", "closed_retention_ms = -1", "closed_retention_ms = -1"),
        (
            "text = \"Hello {{customer_name}}\"",
            "text = \"Hello {{customer_name\"",
            "tenant acme, templates[0] (hello): template hello: a placeholder opened at \"{{customer_name\" is not closed",
        ),
        ("text = \"Hello {{customer_name}}\"", "text = \"\"", "templates[0] (hello): template hello has no text"),
        ("id = \"refund\"", "id = \"\"", "tenant acme, workflows[0] (): id is empty"),
        ("parameters = [\"order\"]", "parameters = [\"\"]", "workflows[0] (refund): names an empty parameter"),
    ];
    for (from, to, expected) in cases {
        let text = if from.is_empty() { String::new() } else { VALID.replacen(from, to, 1) };
        assert_ne!(text, VALID, "{from:?} is not in the valid file");
        let error = error_of(&text);
        assert!(error.contains(expected), "{from:?} -> {to:?} gave {error:?}, expected {expected:?}");
    }
}

#[test]
fn duplicates_across_the_file_are_refused() {
    let twice = format!("{VALID}{}", VALID.replace("token-", "other-"));
    assert!(error_of(&twice).contains("tenant acme: is defined twice"));
    let agent_twice = VALID.replace(
        "[[tenants.supervisors]]",
        "[[tenants.agents]]\nid = \"ana\"\ntoken = \"t2\"\n[[tenants.supervisors]]",
    );
    assert!(error_of(&agent_twice).contains("tenant acme, agent ana: is defined twice"));
    let entry_twice =
        format!("{VALID}[[tenants.entry_points]]\nchannel = \"whatsapp\"\naddress = \"+15550100\"\nqueue = \"wa\"\n");
    assert!(error_of(&entry_twice).contains("entry_points[1] (whatsapp \"+15550100\"): is defined twice"));
    let template_twice = format!("{VALID}[[tenants.templates]]\nid = \"hello\"\ntext = \"Hi\"\n");
    assert!(error_of(&template_twice).contains("templates[1] (hello): is defined twice"));
    let other_tenant =
        format!("{VALID}[[tenants]]\nid = \"globex\"\n[[tenants.supervisors]]\nid = \"sam\"\ntoken = \"token-ana\"\n");
    assert!(error_of(&other_tenant).contains("supervisor globex/sam: token is also the token of agent acme/ana"));
}

#[test]
fn unknown_names_are_refused_listing_the_allowed_ones() {
    let cases = [
        (
            "channel = \"webchat\"",
            "channel = \"fax\"",
            "unknown variant `fax`, expected one of `messenger`, `sms`, `webchat`, `email`, `whatsapp`",
        ),
        (
            "channel = \"webchat\"",
            "channel = \"webchat\"\nstrategy = \"random\"",
            "unknown variant `random`, expected one of `longest_available`, `round_robin`, `least_occupied`",
        ),
        (
            "channel = \"webchat\"",
            "channel = \"webchat\"\ntransfer_timeout = \"bounce\"",
            "unknown variant `bounce`, expected `drop` or `requeue`",
        ),
        ("webchat = 2", "voice = 2", "unknown variant `voice`, expected one of"),
        ("channel = \"whatsapp\"\naddress", "channel = \"telegram\"\naddress", "unknown variant `telegram`"),
    ];
    for (from, to, expected) in cases {
        let text = VALID.replacen(from, to, 1);
        assert_ne!(text, VALID, "{from:?} is not in the valid file");
        let error = error_of(&text);
        assert!(error.contains(expected), "{to:?} gave {error:?}, expected {expected:?}");
    }
    let error = error_of(&VALID.replacen("channel = \"webchat\"", "channel = \"fax\"", 1));
    assert!(error.contains("queue \"chat\""), "the queue is named: {error}");
}

#[test]
fn unknown_and_missing_keys_are_refused_naming_the_key() {
    let cases = [
        ("id = \"acme\"", "id = \"acme\"\nregion = \"eu\"", "unknown field `region`"),
        ("channel = \"webchat\"", "channel = \"webchat\"\npriorty = 2", "queue \"chat\": unknown field `priorty`"),
        ("id = \"ana\"", "id = \"ana\"\ncapacities = {}", "unknown field `capacities`"),
        ("id = \"sam\"", "id = \"sam\"\nrole = \"admin\"", "unknown field `role`"),
        ("queue = \"wa\"", "queue = \"wa\"\nweight = 1", "unknown field `weight`"),
        (
            "id = \"chat\"\nchannel = \"webchat\"",
            "id = \"chat\"",
            "queue \"chat\": missing field `channel` (one of messenger",
        ),
        ("token = \"token-ana\"", "", "missing field `token`"),
        ("address = \"+15550100\"", "", "missing field `address`"),
    ];
    for (from, to, expected) in cases {
        let text = VALID.replacen(from, to, 1);
        assert_ne!(text, VALID, "{from:?} is not in the valid file");
        let error = error_of(&text);
        assert!(error.contains(expected), "{to:?} gave {error:?}, expected {expected:?}");
    }
    assert!(error_of("[[tenant]]\nid = \"x\"\n").contains("unknown field `tenant`"));
}

#[test]
fn keys_left_out_take_their_defaults() {
    let config = Config::from_toml(VALID).unwrap();
    let tenant = config.tenant("acme").unwrap();
    assert_eq!(tenant.display_name(), "acme");
    assert_eq!(tenant.closed_retention_ms, 3_600_000, "closed conversations are kept an hour");
    let queue = &tenant.queues[0];
    assert_eq!(
        (queue.strategy, queue.offer_timeout_ms, queue.transfer_timeout, queue.priority, queue.auto_wrap_up_ms),
        (StrategyName::LongestAvailable, 30_000, TransferPolicyName::Requeue, 0, 0)
    );
    assert_eq!(queue.queue_config().name, "chat", "the name defaults to the id");
    assert_eq!(tenant.agents[0].profile().name, "ana");
    assert_eq!(tenant.supervisors[0].display_name(), "sam");
}
