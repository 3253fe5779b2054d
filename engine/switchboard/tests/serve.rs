//! End-to-end: the real `switchboard serve` process on 127.0.0.1, driven
//! through its API along every path of SPEC.md's life of a conversation.
//! After each test, `switchboard replay --verify` on the log passes and its
//! digest equals the live engine's. Every test runs twice: on the embedded
//! journal, and on Kafka (`serve --kafka`, a real broker named by
//! `SWITCHBOARD_TEST_KAFKA`; see `switchboard_kafka::testing`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CONFIG: &str = r#"
[[tenants]]
id = "acme"
wrap_up_reasons = ["resolved", "sale", "follow-up"]
idle_reasons = ["lunch"]

[[tenants.queues]]
id = "chat"
channel = "webchat"
offer_timeout_ms = 60000
transfer_timeout = "drop"

[[tenants.queues]]
id = "chat-requeue"
channel = "webchat"
offer_timeout_ms = 60000
transfer_timeout = "requeue"

[[tenants.queues]]
id = "quick"
channel = "sms"
offer_timeout_ms = 700
transfer_timeout = "requeue"

[[tenants.queues]]
id = "quick-drop"
channel = "sms"
offer_timeout_ms = 700
transfer_timeout = "drop"

[[tenants.queues]]
id = "mail"
channel = "email"

[[tenants.queues]]
id = "wa"
channel = "whatsapp"
offer_timeout_ms = 60000

[[tenants.agents]]
id = "ana"
capacity = { webchat = 2, email = 2, sms = 2, whatsapp = 2 }
queues = ["chat", "chat-requeue", "quick", "quick-drop", "mail", "wa"]
token = "t-ana"

[[tenants.agents]]
id = "bob"
capacity = { webchat = 2, email = 2, sms = 2, whatsapp = 2 }
queues = ["chat", "chat-requeue", "quick", "quick-drop", "mail", "wa"]
token = "t-bob"

[[tenants.agents]]
id = "cid"
capacity = { webchat = 2, sms = 2 }
queues = ["chat"]
token = "t-cid"

[[tenants.supervisors]]
id = "sam"
token = "t-sam"

[[tenants.entry_points]]
channel = "webchat"
address = "chat.acme"
queue = "chat"

[[tenants.entry_points]]
channel = "webchat"
address = "requeue.acme"
queue = "chat-requeue"

[[tenants.entry_points]]
channel = "sms"
address = "+1555"
queue = "quick"

[[tenants.entry_points]]
channel = "sms"
address = "+1666"
queue = "quick-drop"

[[tenants.entry_points]]
channel = "email"
address = "help@acme"
queue = "mail"

[[tenants.entry_points]]
channel = "whatsapp"
address = "wa+1777"
queue = "wa"

[[tenants.workflows]]
id = "refund"
parameters = ["order"]

[[tenants.templates]]
id = "hello"
text = "Hello {{customer_name}}, {{agent_name}} here."

[[tenants.templates]]
id = "order"
channels = ["webchat"]
text = "Order {{order}} ships {{date}}."
locked = true

[[tenants]]
id = "globex"

[[tenants.queues]]
id = "chat"
channel = "webchat"

[[tenants.agents]]
id = "gus"
capacity = { webchat = 1 }
queues = ["chat"]
token = "t-gus"

[[tenants.supervisors]]
id = "gina"
token = "t-gina"

[[tenants.entry_points]]
channel = "webchat"
address = "chat.globex"
queue = "chat"
"#;

/// Where a test's engine keeps its log.
#[derive(Clone)]
enum Log {
    Embedded,
    /// Topics named `<prefix>.events` etc. on `brokers`, fresh for the test.
    Kafka {
        brokers: switchboard_kafka::testing::Broker,
        prefix: String,
    },
}

impl Log {
    /// Fresh topics on the test broker, or `None` (skipped) outside CI without one.
    fn kafka() -> Option<Log> {
        let brokers = switchboard_kafka::testing::broker()?;
        Some(Log::Kafka { brokers, prefix: switchboard_kafka::testing::unique_topic("sb-test-e2e") })
    }
}

/// A running `switchboard serve` on an ephemeral port, killed on drop.
struct Server {
    child: Child,
    base: String,
    data: PathBuf,
    log: Log,
}

impl Server {
    fn start(dir: &Path, log: &Log) -> Server {
        Server::start_with(dir, log, CONFIG)
    }

    fn start_with(dir: &Path, log: &Log, tenants: &str) -> Server {
        let config = dir.join("switchboard.toml");
        let data = dir.join("data");
        let mut serve = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        serve.args(["serve", "--listen", "127.0.0.1:0", "--config"]).arg(&config);
        match log {
            Log::Embedded => {
                std::fs::write(&config, tenants).unwrap();
                serve.arg("--data").arg(&data);
            }
            Log::Kafka { brokers, prefix } => {
                let kafka = format!(
                    "[kafka]\nbrokers = \"{brokers}\"\n# Snapshots often, so that every test also rebuilds from them.\nsnapshot_every = 5\n[kafka.topics]\ncommands = \"{prefix}.commands\"\nevents = \"{prefix}.events\"\noutbox = \"{prefix}.outbox\"\nsnapshots = \"{prefix}.snapshots\"\npartitions = 4\n"
                );
                std::fs::write(&config, format!("{tenants}\n{kafka}")).unwrap();
                let init = Command::new(env!("CARGO_BIN_EXE_switchboard"))
                    .args(["kafka", "init", "--config"])
                    .arg(&config)
                    .output()
                    .unwrap();
                assert!(init.status.success(), "kafka init: {}", String::from_utf8_lossy(&init.stderr));
                serve.arg(format!("--kafka={brokers}"));
            }
        }
        let mut child = serve.stdout(Stdio::piped()).spawn().expect("start switchboard serve");
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
        // Keep reading, as a terminal would, so the server's later lines find a reader.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let base =
            first.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {first:?}")).to_owned();
        let server = Server { child, base, data, log: log.clone() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.call("GET", "/readyz", None, None).0 != 200 {
            assert!(Instant::now() < deadline, "engine not ready in time");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut request = ureq::request(method, &format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(error) => panic!("{method} {path}: {error}"),
        };
        let status = response.status();
        let text = response.into_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A command that must succeed; returns the kinds of its events.
    fn ok(&self, token: &str, path: &str, body: Value) -> Vec<String> {
        let (status, reply) = self.call("POST", path, Some(token), Some(body));
        assert_eq!(status, 200, "POST {path}: {reply}");
        kinds(&reply)
    }

    fn customer_writes(&self, address: &str, conversation: &str, message: &str) -> Value {
        let body = json!({
            "channel": match address {
                _ if address.contains('@') => "email",
                _ if address.starts_with("wa+") => "whatsapp",
                _ if address.starts_with('+') => "sms",
                _ => "webchat",
            },
            "address": address,
            "conversation_id": conversation,
            "sender_message_id": message,
            "customer": { "name": "Kim", "email": "kim@example.com" },
            "subject": "Order 42",
            "text": "hello"
        });
        let (status, reply) = self.call("POST", "/v1/inbound/messages", Some("t-sam"), Some(body));
        assert_eq!(status, 200, "{reply}");
        reply
    }

    fn available(&self, token: &str) {
        self.ok(token, "/v1/agents/me/state", json!({ "status": "available" }));
    }

    fn agent_status(&self, agent: &str) -> String {
        let (_, agents) = self.call("GET", "/v1/agents", Some("t-sam"), None);
        let agents = agents["agents"].as_array().unwrap();
        agents.iter().find(|a| a["agent_id"] == agent).unwrap()["status"].as_str().unwrap().to_owned()
    }

    fn digest(&self) -> String {
        let (status, reply) = self.call("GET", "/v1/admin/digest", Some("t-sam"), None);
        assert_eq!(status, 200, "{reply}");
        reply["digest"].as_str().unwrap().to_owned()
    }

    /// `replay --verify` passes on the journal and agrees with the live digest.
    fn verify_replay(&self) {
        let live = self.digest();
        let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["replay", "--verify"])
            .args(self.replay_args())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "replay --verify failed:\n{text}");
        assert!(text.lines().any(|l| l == format!("digest: {live}")), "live digest {live} not in:\n{text}");
    }

    /// Where `switchboard replay` finds this server's log.
    fn replay_args(&self) -> Vec<String> {
        match &self.log {
            Log::Embedded => vec!["--data".into(), self.data.display().to_string()],
            Log::Kafka { brokers, prefix } => {
                vec!["--kafka".into(), brokers.to_string(), "--topic".into(), format!("{prefix}.events")]
            }
        }
    }

    fn kill(mut self) -> PathBuf {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        self.data.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kinds(reply: &Value) -> Vec<String> {
    reply["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e["event"].as_object()?.keys().next().cloned()).collect())
        .unwrap_or_default()
}

/// The first event of `kind` in a reply.
fn event<'a>(reply: &'a Value, kind: &str) -> &'a Value {
    reply["events"]
        .as_array()
        .and_then(|events| events.iter().find_map(|e| e["event"].get(kind)))
        .unwrap_or_else(|| panic!("no {kind} in {reply}"))
}

fn offer_id(reply: &Value) -> String {
    event(reply, "ConversationOffered")["offer_id"].as_str().unwrap().to_owned()
}

#[test]
fn a_conversation_lives_through_accept_transfer_conference_end_and_wrap_up() {
    a_conversation_lives_through_accept_transfer_conference_end_and_wrap_up_on(Log::Embedded);
}

#[test]
fn a_conversation_lives_through_accept_transfer_conference_end_and_wrap_up_on_kafka() {
    let Some(log) = Log::kafka() else { return };
    a_conversation_lives_through_accept_transfer_conference_end_and_wrap_up_on(log);
}

fn a_conversation_lives_through_accept_transfer_conference_end_and_wrap_up_on(log: Log) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &log);
    server.available("t-ana");
    let arrived = server.customer_writes("chat.acme", "c1", "m1");
    let offered = event(&arrived, "ConversationOffered");
    assert_eq!(offered["agent_id"], "ana");
    let accepted = server.ok("t-ana", &format!("/v1/offers/{}/accept", offer_id(&arrived)), json!({}));
    assert_eq!(accepted, ["OfferAccepted"]);

    // Over the limit: refused naming the limit, nothing sent.
    let (status, refusal) = server.call(
        "POST",
        "/v1/conversations/c1/messages",
        Some("t-ana"),
        Some(json!({ "message_id": "a1", "text": "x".repeat(1001) })),
    );
    assert_eq!(status, 422);
    assert_eq!(refusal["error"], "message_too_long");
    assert!(refusal["message"].as_str().unwrap().contains("1000"), "{refusal}");
    server.ok("t-ana", "/v1/conversations/c1/messages", json!({ "message_id": "a1", "text": "How can I help?" }));
    server.customer_writes("chat.acme", "c1", "m2");
    // A file goes with a message; an inline image is an email's alone.
    let guide =
        json!({ "name": "guide.pdf", "url": "https://files.acme/guide.pdf", "content_type": "application/pdf" });
    let (status, sent) = server.call(
        "POST",
        "/v1/conversations/c1/messages",
        Some("t-ana"),
        Some(json!({ "message_id": "a2", "attachments": [guide] })),
    );
    assert_eq!(status, 200, "{sent}");
    assert_eq!(event(&sent, "AgentMessageSent")["attachments"][0]["name"], "guide.pdf", "{sent}");
    let inline = json!({ "name": "logo.png", "url": "https://files.acme/logo.png", "inline": true });
    let (status, refusal) = server.call(
        "POST",
        "/v1/conversations/c1/messages",
        Some("t-ana"),
        Some(json!({ "message_id": "a3", "text": "logo", "attachments": [inline] })),
    );
    assert_eq!((status, refusal["error"].as_str()), (422, Some("not_allowed_on_channel")), "{refusal}");

    // Transfer to bob, who accepts; ana goes to wrap-up.
    server.available("t-bob");
    let (status, reply) =
        server.call("POST", "/v1/conversations/c1/transfer", Some("t-ana"), Some(json!({ "agent_id": "bob" })));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(kinds(&reply), ["TransferRequested", "WrapUpStarted", "ConversationOffered"]);
    assert_eq!(
        server.ok("t-bob", &format!("/v1/offers/{}/accept", offer_id(&reply)), json!({})),
        ["OfferAccepted", "TransferCompleted"]
    );
    // Bob's pane shows the whole thread, from before he took it over; the
    // refused message is not in it. Cid, who takes no part, is told nothing.
    let (status, pane) = server.call("GET", "/v1/conversations/c1", Some("t-bob"), None);
    assert_eq!(status, 200, "{pane}");
    let thread: Vec<(&str, &str)> = pane["thread"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["from"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        thread,
        [("customer", "hello"), ("agent", "How can I help?"), ("customer", "hello"), ("agent", "")],
        "{pane}"
    );
    assert_eq!(pane["thread"][3]["attachments"][0]["url"], "https://files.acme/guide.pdf", "{pane}");
    assert_eq!((pane["owner"].as_str(), pane["customer"]["name"].as_str()), (Some("bob"), Some("Kim")), "{pane}");
    assert_eq!(server.call("GET", "/v1/conversations/c1", Some("t-cid"), None).0, 404);
    assert_eq!(server.call("GET", "/v1/conversations/c1", Some("t-sam"), None).0, 200);
    server.ok("t-ana", "/v1/conversations/c1/wrap-up", json!({ "reasons": ["follow-up"] }));

    // Conference: cid joins, then leaves; the chat goes on with bob.
    server.available("t-cid");
    let (status, invitation) =
        server.call("POST", "/v1/conversations/c1/conference", Some("t-bob"), Some(json!({ "agent_id": "cid" })));
    assert_eq!(status, 200, "{invitation}");
    assert_eq!(
        server.ok("t-cid", &format!("/v1/offers/{}/accept", offer_id(&invitation)), json!({})),
        ["OfferAccepted", "ConferenceJoined"]
    );
    let (status, _) = server.call("POST", "/v1/conversations/c1/conference/end", Some("t-cid"), Some(json!({})));
    assert_eq!(status, 403, "only the owner ends a conference");
    assert_eq!(
        server.ok("t-cid", "/v1/conversations/c1/conference/leave", json!({})),
        ["ConferenceLeft", "WrapUpStarted"]
    );
    server.ok("t-bob", "/v1/conversations/c1/messages", json!({ "message_id": "b1", "text": "still here" }));
    // A configured workflow starts with its parameters; another is unknown.
    let start = |workflow: &str, parameters: Value| {
        let body = json!({ "workflow_id": workflow, "parameters": parameters });
        server.call("POST", "/v1/conversations/c1/workflows", Some("t-bob"), Some(body))
    };
    let (status, started) = start("refund", json!({ "order": "42" }));
    assert_eq!((status, kinds(&started)), (200, vec!["WorkflowTriggered".to_owned()]), "{started}");
    assert_eq!(start("dance", json!({})).0, 404);
    let (status, refusal) = start("refund", json!({}));
    assert!(status == 422 && refusal["message"].as_str().unwrap().contains("order"), "{status} {refusal}");
    let (_, listed) = server.call("GET", "/v1/workflows", Some("t-bob"), None);
    assert_eq!(listed["workflows"][0]["parameters"], json!(["order"]), "{listed}");

    // End by the agent; wrap-up with several reasons.
    assert_eq!(server.ok("t-bob", "/v1/conversations/c1/end", json!({})), ["ConversationEnded", "WrapUpStarted"]);
    server.ok("t-bob", "/v1/conversations/c1/wrap-up", json!({ "reasons": ["resolved", "sale"] }));
    server.ok("t-cid", "/v1/conversations/c1/wrap-up", json!({ "reasons": ["resolved"] }));
    let (status, refusal) =
        server.call("POST", "/v1/conversations/c1/wrap-up", Some("t-bob"), Some(json!({ "reasons": ["resolved"] })));
    assert_eq!((status, refusal["error"].as_str()), (409, Some("no_wrap_up_pending")));

    // A conference the owner ends, and an end by the customer.
    let arrived = server.customer_writes("chat.acme", "c2", "m1");
    let owner = event(&arrived, "ConversationOffered")["agent_id"].as_str().unwrap().to_owned();
    let owner_token = format!("t-{owner}");
    server.ok(&owner_token, &format!("/v1/offers/{}/accept", offer_id(&arrived)), json!({}));
    let invitee = if owner == "ana" { "cid" } else { "ana" };
    let (_, invitation) = server.call(
        "POST",
        "/v1/conversations/c2/conference",
        Some(&owner_token),
        Some(json!({ "agent_id": invitee })),
    );
    server.ok(&format!("t-{invitee}"), &format!("/v1/offers/{}/accept", offer_id(&invitation)), json!({}));
    assert_eq!(
        server.ok(&owner_token, "/v1/conversations/c2/conference/end", json!({})),
        ["ConferenceEnded", "ConversationEnded", "WrapUpStarted", "WrapUpStarted"]
    );
    let arrived = server.customer_writes("chat.acme", "c3", "m1");
    let owner = format!("t-{}", event(&arrived, "ConversationOffered")["agent_id"].as_str().unwrap());
    server.ok(&owner, &format!("/v1/offers/{}/accept", offer_id(&arrived)), json!({}));
    let (status, left) =
        server.call("POST", "/v1/inbound/leave", Some("t-sam"), Some(json!({ "conversation_id": "c3" })));
    assert_eq!(status, 200);
    assert_eq!(event(&left, "ConversationEnded")["by"], 2, "ended by the customer");
    server.verify_replay();
}

#[test]
fn on_whatsapp_the_owner_invites_a_queue_whose_strategy_picks_the_agent() {
    on_whatsapp_the_owner_invites_a_queue_whose_strategy_picks_the_agent_on(Log::Embedded);
}

#[test]
fn on_whatsapp_the_owner_invites_a_queue_whose_strategy_picks_the_agent_on_kafka() {
    let Some(log) = Log::kafka() else { return };
    on_whatsapp_the_owner_invites_a_queue_whose_strategy_picks_the_agent_on(log);
}

fn on_whatsapp_the_owner_invites_a_queue_whose_strategy_picks_the_agent_on(log: Log) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &log);
    server.available("t-ana");
    let arrived = server.customer_writes("wa+1777", "w1", "m1");
    assert_eq!(event(&arrived, "ConversationOffered")["agent_id"], "ana");
    server.ok("t-ana", &format!("/v1/offers/{}/accept", offer_id(&arrived)), json!({}));
    let invite = |conversation: &str, token: &str, body: Value| {
        server.call("POST", &format!("/v1/conversations/{conversation}/conference"), Some(token), Some(body))
    };

    let (status, refusal) = invite("w1", "t-ana", json!({ "queue_id": "wa" }));
    assert_eq!((status, refusal["error"].as_str()), (409, Some("target_unavailable")), "{refusal}");
    assert!(refusal["message"].as_str().unwrap().contains("no agent of queue wa"), "{refusal}");
    let (status, refusal) = invite("w1", "t-ana", json!({ "queue_id": "wa", "agent_id": "bob" }));
    assert_eq!(status, 400, "{refusal}");

    server.available("t-bob");
    let (status, invitation) = invite("w1", "t-ana", json!({ "queue_id": "wa" }));
    assert_eq!(status, 200, "{invitation}");
    assert_eq!(event(&invitation, "ConferenceRequested")["queue_id"], "wa");
    assert_eq!(event(&invitation, "ConversationOffered")["agent_id"], "bob");
    assert_eq!(
        server.ok("t-bob", &format!("/v1/offers/{}/accept", offer_id(&invitation)), json!({})),
        ["OfferAccepted", "ConferenceJoined"]
    );

    // The channel's receipts for an agent's message are recorded, repeats taken once.
    server.ok("t-ana", "/v1/conversations/w1/messages", json!({ "message_id": "a1", "text": "Hi" }));
    let receipt = |status: &str| {
        let body = json!({ "conversation_id": "w1", "message_id": "a1", "status": status });
        server.call("POST", "/v1/inbound/receipts", Some("t-sam"), Some(body))
    };
    assert_eq!(kinds(&receipt("delivered").1), ["MessageDelivered"]);
    assert_eq!(kinds(&receipt("read").1), ["MessageRead"]);
    assert_eq!(receipt("read"), (200, json!({ "events": [] })), "a repeated receipt changes nothing");
    let (status, refusal) = receipt("seen");
    assert_eq!((status, refusal["error"].as_str()), (400, Some("bad_request")), "{refusal}");
    let (_, pane) = server.call("GET", "/v1/conversations/w1", Some("t-bob"), None);
    let sent = &pane["thread"][1];
    assert_eq!(
        (sent["message_id"].as_str(), sent["delivered"].as_bool(), sent["read"].as_bool()),
        (Some("a1"), Some(true), Some(true)),
        "{pane}"
    );

    // Elsewhere the owner names the agent: a queue is refused.
    let arrived = server.customer_writes("chat.acme", "c1", "m1");
    let owner = format!("t-{}", event(&arrived, "ConversationOffered")["agent_id"].as_str().unwrap());
    server.ok(&owner, &format!("/v1/offers/{}/accept", offer_id(&arrived)), json!({}));
    let (status, refusal) = invite("c1", &owner, json!({ "queue_id": "chat" }));
    assert_eq!((status, refusal["error"].as_str()), (422, Some("not_allowed_on_channel")), "{refusal}");
    server.verify_replay();
}

#[test]
fn agents_send_templates_rendered_from_the_conversation_and_cannot_edit_a_locked_one() {
    agents_send_templates_rendered_from_the_conversation_and_cannot_edit_a_locked_one_on(Log::Embedded);
}

#[test]
fn agents_send_templates_rendered_from_the_conversation_and_cannot_edit_a_locked_one_on_kafka() {
    let Some(log) = Log::kafka() else { return };
    agents_send_templates_rendered_from_the_conversation_and_cannot_edit_a_locked_one_on(log);
}

fn agents_send_templates_rendered_from_the_conversation_and_cannot_edit_a_locked_one_on(log: Log) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &log);
    let (status, list) = server.call("GET", "/v1/templates", Some("t-ana"), None);
    assert_eq!(status, 200, "{list}");
    let templates = list["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 2, "{list}");
    let order = templates.iter().find(|t| t["template_id"] == "order").unwrap();
    assert_eq!((order["locked"].clone(), order["parameters"].clone()), (json!(true), json!(["order", "date"])));
    assert_eq!(order["channels"], json!(["webchat"]));
    let hello = templates.iter().find(|t| t["template_id"] == "hello").unwrap();
    assert_eq!(hello["system_parameters"], json!(["customer_name", "agent_name"]));
    assert_eq!(server.call("GET", "/v1/templates", None, None).0, 401);
    let (_, other_tenant) = server.call("GET", "/v1/templates", Some("t-gus"), None);
    assert_eq!(other_tenant["templates"], json!([]), "another tenant's templates are not shown");

    server.available("t-ana");
    let arrived = server.customer_writes("chat.acme", "t1", "m1");
    server.ok("t-ana", &format!("/v1/offers/{}/accept", offer_id(&arrived)), json!({}));
    let send = |body: Value| server.call("POST", "/v1/conversations/t1/messages", Some("t-ana"), Some(body));
    let (status, reply) = send(json!({ "message_id": "a1", "template_id": "hello" }));
    assert_eq!(status, 200, "{reply}");
    let sent = event(&reply, "AgentMessageSent");
    assert_eq!((sent["text"].as_str(), sent["template_id"].as_str()), (Some("Hello Kim, ana here."), Some("hello")));

    let parameters = json!({ "order": "A-7", "date": "Monday" });
    let (status, refusal) = send(json!({
        "message_id": "a2", "template_id": "order", "text": "Order A-7 ships whenever.", "template_parameters": parameters
    }));
    assert_eq!((status, refusal["error"].as_str()), (422, Some("template")), "{refusal}");
    assert!(refusal["message"].as_str().unwrap().contains("locked"), "{refusal}");
    let (status, refusal) =
        send(json!({ "message_id": "a2", "template_id": "order", "template_parameters": { "order": "A-7" } }));
    assert_eq!((status, refusal["error"].as_str()), (422, Some("template")), "{refusal}");
    assert!(refusal["message"].as_str().unwrap().contains("date is not filled in"), "{refusal}");
    let (status, reply) =
        send(json!({ "message_id": "a2", "template_id": "order", "template_parameters": parameters }));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(event(&reply, "AgentMessageSent")["text"], "Order A-7 ships Monday.");
    let (status, refusal) = send(json!({ "message_id": "a3", "template_id": "nope" }));
    assert_eq!((status, refusal["error"].as_str()), (404, Some("not_found")), "{refusal}");
    server.verify_replay();
}

#[test]
fn an_unanswered_offer_sends_the_agent_to_rona_until_they_return_by_hand() {
    an_unanswered_offer_sends_the_agent_to_rona_until_they_return_by_hand_on(Log::Embedded);
}

#[test]
fn an_unanswered_offer_sends_the_agent_to_rona_until_they_return_by_hand_on_kafka() {
    let Some(log) = Log::kafka() else { return };
    an_unanswered_offer_sends_the_agent_to_rona_until_they_return_by_hand_on(log);
}

fn an_unanswered_offer_sends_the_agent_to_rona_until_they_return_by_hand_on(log: Log) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &log);
    server.available("t-ana");
    let arrived = server.customer_writes("+1555", "s1", "m1");
    let offer = offer_id(&arrived);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.agent_status("ana") != "rona" {
        assert!(Instant::now() < deadline, "the offer did not time out");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, refusal) = server.call("POST", &format!("/v1/offers/{offer}/accept"), Some("t-ana"), Some(json!({})));
    assert_eq!((status, refusal["error"].as_str()), (409, Some("offer_not_open")), "{refusal}");
    let (_, queues) = server.call("GET", "/v1/queues", Some("t-ana"), None);
    let quick = queues["queues"].as_array().unwrap().iter().find(|q| q["queue_id"] == "quick").unwrap().clone();
    assert_eq!(quick["waiting"], 1, "back in its queue: {quick}");
    // Back to Available by hand: offered again at once.
    let (status, back) =
        server.call("POST", "/v1/agents/me/state", Some("t-ana"), Some(json!({ "status": "available" })));
    assert_eq!(status, 200);
    assert_eq!(event(&back, "ConversationOffered")["conversation_id"], "s1");
    server.ok("t-ana", &format!("/v1/offers/{}/accept", offer_id(&back)), json!({}));
    server.verify_replay();
}

#[test]
fn a_lapsed_transfer_to_an_agent_is_dropped_or_requeued_and_email_never_goes_to_an_agent() {
    a_lapsed_transfer_to_an_agent_is_dropped_or_requeued_and_email_never_goes_to_an_agent_on(Log::Embedded);
}

#[test]
fn a_lapsed_transfer_to_an_agent_is_dropped_or_requeued_and_email_never_goes_to_an_agent_on_kafka() {
    let Some(log) = Log::kafka() else { return };
    a_lapsed_transfer_to_an_agent_is_dropped_or_requeued_and_email_never_goes_to_an_agent_on(log);
}

fn a_lapsed_transfer_to_an_agent_is_dropped_or_requeued_and_email_never_goes_to_an_agent_on(log: Log) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &log);
    server.available("t-ana");
    let arrived = server.customer_writes("help@acme", "e1", "m1");
    server.ok("t-ana", &format!("/v1/offers/{}/accept", offer_id(&arrived)), json!({}));
    server.available("t-bob");
    let (status, refusal) =
        server.call("POST", "/v1/conversations/e1/transfer", Some("t-ana"), Some(json!({ "agent_id": "bob" })));
    assert_eq!((status, refusal["error"].as_str()), (422, Some("not_allowed_on_channel")), "{refusal}");
    // Email replies: To and Subject are fixed, reply-all keeps editable Cc, a forward needs a To.
    let (status, refusal) = server.call(
        "POST",
        "/v1/conversations/e1/messages",
        Some("t-ana"),
        Some(json!({ "message_id": "r1", "text": "Thanks", "email": { "mode": "reply", "to": ["x@example.com"] } })),
    );
    assert_eq!((status, refusal["error"].as_str()), (422, Some("invalid")), "{refusal}");
    let (status, sent) = server.call(
        "POST",
        "/v1/conversations/e1/messages",
        Some("t-ana"),
        Some(json!({ "message_id": "r1", "text": "Thanks", "email": { "mode": "reply_all", "cc": ["team@acme"] } })),
    );
    assert_eq!(status, 200, "{sent}");
    let headers = &event(&sent, "AgentMessageSent")["email"];
    assert_eq!((headers["to"].clone(), headers["cc"].clone()), (json!(["kim@example.com"]), json!(["team@acme"])));
    // The customer's mail came in through the API with its subject and Message-ID: the reply answers it.
    assert_eq!((headers["subject"].as_str(), headers["in_reply_to"].as_str()), (Some("Re: Order 42"), Some("m1")));
    let (status, refusal) = server.call(
        "POST",
        "/v1/conversations/e1/messages",
        Some("t-ana"),
        Some(json!({ "message_id": "r2", "text": "Thanks", "email": { "mode": "reply", "subject": "Other" } })),
    );
    assert_eq!((status, refusal["error"].as_str()), (422, Some("invalid")), "a reply's subject is fixed: {refusal}");
    let (status, _) = server.call(
        "POST",
        "/v1/conversations/e1/messages",
        Some("t-ana"),
        Some(json!({ "message_id": "f1", "text": "FYI", "email": { "mode": "forward" } })),
    );
    assert_eq!(status, 422, "a forward needs a To");
    server.ok("t-ana", "/v1/conversations/e1/transfer", json!({ "queue_id": "mail" }));
    let (_, offered) = server.call("GET", "/v1/agents", Some("t-sam"), None);
    let bob = offered["agents"].as_array().unwrap().iter().find(|a| a["agent_id"] == "bob").unwrap().clone();
    assert_eq!(bob["channels"]["email"]["load"], 1, "the email went to bob through the queue: {bob}");

    // Two SMS transfers to bob (700 ms offer timeout) that he lets lapse.
    for (address, conversation) in [("+1666", "dropped"), ("+1555", "requeued")] {
        let arrived = server.customer_writes(address, conversation, "m1");
        assert_eq!(event(&arrived, "ConversationOffered")["agent_id"], "ana");
        server.ok("t-ana", &format!("/v1/offers/{}/accept", offer_id(&arrived)), json!({}));
        let kinds =
            server.ok("t-ana", &format!("/v1/conversations/{conversation}/transfer"), json!({ "agent_id": "bob" }));
        assert_eq!(kinds, ["TransferRequested", "WrapUpStarted", "ConversationOffered"]);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, queues) = server.call("GET", "/v1/queues", Some("t-sam"), None);
        let quick = queues["queues"].as_array().unwrap().iter().find(|q| q["queue_id"] == "quick").unwrap().clone();
        if quick["waiting"] == 1 && server.agent_status("bob") == "rona" {
            break;
        }
        assert!(Instant::now() < deadline, "transfers did not lapse: {queues}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (conversation, outcome, last) in [("dropped", 1, "ConversationEnded"), ("requeued", 2, "ConversationQueued")] {
        let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["replay", "--format", "json", "--conversation", conversation])
            .args(server.replay_args())
            .output()
            .unwrap();
        let replay: Value = serde_json::from_slice(&output.stdout).unwrap();
        let timeline = replay["replay"]["timeline"].as_array().unwrap();
        let failed = timeline.iter().find(|e| e["kind"] == "TransferFailed").expect("a failed transfer");
        assert_eq!(failed["event"]["TransferFailed"]["outcome"], outcome, "{conversation}");
        assert_eq!(timeline.last().unwrap()["kind"], last, "{conversation}");
    }
    server.verify_replay();
}

#[test]
fn bad_requests_get_a_clear_status_and_json_and_tenants_never_see_each_other() {
    bad_requests_get_a_clear_status_and_json_and_tenants_never_see_each_other_on(Log::Embedded);
}

#[test]
fn bad_requests_get_a_clear_status_and_json_and_tenants_never_see_each_other_on_kafka() {
    let Some(log) = Log::kafka() else { return };
    bad_requests_get_a_clear_status_and_json_and_tenants_never_see_each_other_on(log);
}

fn bad_requests_get_a_clear_status_and_json_and_tenants_never_see_each_other_on(log: Log) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &log);
    assert_eq!(server.call("GET", "/v1/queues", None, None).0, 401);
    let (status, body) = server.call("GET", "/v1/queues", Some("nope"), None);
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));
    server.customer_writes("chat.acme", "c1", "m1");
    // Globex's agent does not see Acme's conversation: 404, not 403.
    let (status, body) = server.call("POST", "/v1/conversations/c1/end", Some("t-gus"), Some(json!({})));
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")), "{body}");
    // An agent on a supervisor's route.
    assert_eq!(server.call("GET", "/v1/admin/digest", Some("t-ana"), None).0, 403);
    // Malformed JSON and unknown fields.
    let response = ureq::post(&format!("{}/v1/agents/me/state", server.base))
        .set("Authorization", "Bearer t-ana")
        .set("Content-Type", "application/json")
        .send_string("{not json");
    let Err(ureq::Error::Status(400, response)) = response else { panic!("expected 400") };
    let body: Value = serde_json::from_str(&response.into_string().unwrap()).unwrap();
    assert_eq!(body["error"], "bad_request");
    let (status, body) = server.call("POST", "/v1/agents/me/state", Some("t-ana"), Some(json!({ "status": "asleep" })));
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("asleep"), "{body}");
    let (status, _) = server.call("POST", "/v1/offers/nope/accept", Some("t-ana"), Some(json!({})));
    assert_eq!(status, 409);
    // The same sender message twice is taken once.
    let again = server.customer_writes("chat.acme", "c1", "m1");
    assert_eq!(kinds(&again), Vec::<String>::new());
    let (status, spec) = server.call("GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    assert!(spec["paths"]["/v1/conversations/{id}/transfer"].is_object());
    let metrics = ureq::get(&format!("{}/metrics", server.base)).call().unwrap().into_string().unwrap();
    assert!(metrics.contains("switchboard_queue_depth{domain=\"acme\",queue=\"chat\"} 1"), "{metrics}");
    server.verify_replay();
}

#[test]
fn a_killed_engine_restarts_with_everything_acknowledged_and_no_offer_left_hanging() {
    a_killed_engine_restarts_with_everything_acknowledged_and_no_offer_left_hanging_on(Log::Embedded);
}

#[test]
fn a_killed_engine_restarts_with_everything_acknowledged_and_no_offer_left_hanging_on_kafka() {
    let Some(log) = Log::kafka() else { return };
    a_killed_engine_restarts_with_everything_acknowledged_and_no_offer_left_hanging_on(log);
}

fn a_killed_engine_restarts_with_everything_acknowledged_and_no_offer_left_hanging_on(log: Log) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &log);
    server.available("t-ana");
    server.available("t-bob");
    // Traffic from another thread while the engine is killed.
    let base = server.base.clone();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    let sender = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for n in 0..10_000 {
            let body = json!({
                "channel": "sms", "address": "+1555", "conversation_id": format!("k{n}"),
                "sender_message_id": "m1", "text": "hi"
            });
            match ureq::post(&format!("{base}/v1/inbound/messages"))
                .set("Authorization", "Bearer t-sam")
                .send_json(body)
            {
                Ok(response) if response.status() == 200 => {
                    acknowledged.push(format!("k{n}"));
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                _ => break,
            }
        }
        acknowledged
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while count.load(std::sync::atomic::Ordering::SeqCst) < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let data = server.kill();
    let acknowledged = sender.join().unwrap();
    assert!(acknowledged.len() > 10, "traffic was flowing: {}", acknowledged.len());

    // Wait past every offer deadline (quick: 700 ms) while the engine is down.
    std::thread::sleep(Duration::from_millis(900));
    let server = Server::start(data.parent().unwrap(), &log);
    if let Log::Kafka { .. } = log {
        // On Kafka the partitions come back once the group has dropped the
        // dead member (its session times out) and the worker has rebuilt them.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = server.call("GET", "/readyz", None, None).1;
            if ready["partitions"].as_array().map_or(0, Vec::len) == 4 {
                assert!(ready["rebuilds_from_snapshots"].as_u64() > Some(0), "rebuilt from snapshots: {ready}");
                // The API's read model too: its digest below is the replay's.
                assert!(ready["read_model_from_snapshots"].as_u64() > Some(0), "read model from snapshots: {ready}");
                break;
            }
            assert!(Instant::now() < deadline, "the partitions did not come back: {ready}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // An offer that expired while down times out at start-up: at once on the
    // embedded journal (before /readyz), as soon as a worker owns the
    // partition again on Kafka.
    let deadline = Instant::now() + Duration::from_secs(40);
    for agent in ["ana", "bob"] {
        while server.agent_status(agent) != "rona" {
            assert!(
                Instant::now() < deadline,
                "{agent}'s expired offer did not time out: {}",
                server.agent_status(agent)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (_, queues) = server.call("GET", "/v1/queues", Some("t-sam"), None);
    let waiting = queues["queues"].as_array().unwrap().iter().find(|q| q["queue_id"] == "quick").unwrap()["waiting"]
        .as_u64()
        .unwrap();
    // Every acknowledged conversation is there (waiting: none were accepted).
    assert!(waiting as usize >= acknowledged.len(), "{waiting} waiting, {} acknowledged", acknowledged.len());
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("replay")
        .args(server.replay_args())
        .args(["--format", "json"])
        .output()
        .unwrap();
    let replay: Value = serde_json::from_slice(&output.stdout).unwrap();
    let created = replay["replay"]["figures"]["conversations"]["created"].as_u64();
    assert!(
        created.is_some_and(|c| c as usize >= acknowledged.len()),
        "{}",
        replay["replay"]["figures"]["conversations"]
    );
    server.verify_replay();
}

#[test]
fn an_agent_session_gets_its_offers_pushed_and_resumes_without_losing_any() {
    an_agent_session_gets_its_offers_pushed_and_resumes_without_losing_any_on(Log::Embedded);
}

#[test]
fn an_agent_session_gets_its_offers_pushed_and_resumes_without_losing_any_on_kafka() {
    let Some(log) = Log::kafka() else { return };
    an_agent_session_gets_its_offers_pushed_and_resumes_without_losing_any_on(log);
}

fn an_agent_session_gets_its_offers_pushed_and_resumes_without_losing_any_on(log: Log) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &log);
    let ws_url = server.base.replace("http://", "ws://") + "/v1/agents/me/ws";
    let connect = |url: &str| {
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
        request.headers_mut().insert("Authorization", "Bearer t-ana".parse().unwrap());
        let stream = std::net::TcpStream::connect(url.trim_start_matches("ws://").split('/').next().unwrap()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tungstenite::client(request, stream).unwrap().0
    };
    let mut socket = connect(&ws_url);
    server.available("t-ana");
    let read = |socket: &mut tungstenite::WebSocket<std::net::TcpStream>| -> Value {
        loop {
            if let tungstenite::Message::Text(text) = socket.read().unwrap() {
                return serde_json::from_str(&text).unwrap();
            }
        }
    };
    let state_change = read(&mut socket);
    assert!(state_change["event"]["event"]["AgentStateChanged"].is_object(), "{state_change}");
    // Operators see the sessions connected.
    let (_, metrics) = server.call("GET", "/metrics", None, None);
    assert!(metrics.as_str().unwrap().contains("switchboard_agent_sessions 1"), "{metrics}");
    let seen = state_change["sequence"].as_u64().unwrap();
    drop(socket);
    // While disconnected, a conversation is offered to ana.
    server.customer_writes("chat.acme", "c1", "m1");
    let mut socket = connect(&format!("{ws_url}?after={seen}"));
    // What ana missed comes first, in order: the conversation's arrival, then its offer.
    let mut pushed = read(&mut socket);
    let mut missed = Vec::new();
    while pushed["event"]["event"]["ConversationOffered"].is_null() {
        missed.extend(pushed["event"]["event"].as_object().unwrap().keys().cloned());
        pushed = read(&mut socket);
    }
    assert_eq!(missed, ["ConversationCreated", "CustomerMessageReceived", "ConversationQueued"]);
    let offer = &pushed["event"]["event"]["ConversationOffered"];
    assert_eq!(offer["agent_id"], "ana", "{pushed}");
    // The popover's fields: queue name, customer, source, and the time since arrival.
    let popover = &pushed["offer"];
    assert_eq!(popover["queue_name"], "chat", "{pushed}");
    assert_eq!(popover["arrival"]["customer"]["name"], "Kim");
    assert_eq!(popover["arrival"]["customer"]["email"], "kim@example.com");
    assert_eq!(popover["arrival"]["source"], "chat.acme");
    assert_eq!(popover["arrival"]["channel"], "webchat");
    assert!(popover["waited_ms"].as_i64().is_some_and(|w| w >= 0), "{pushed}");
    assert!(pushed["sequence"].as_u64().unwrap() > seen);
    // A desktop that reloads gets the same from GET /v1/agents/me.
    let (status, me) = server.call("GET", "/v1/agents/me", Some("t-ana"), None);
    assert_eq!(status, 200, "{me}");
    let held = &me["conversations"][0];
    assert_eq!((held["conversation_id"].as_str(), held["role"].as_str()), (Some("c1"), Some("offered")), "{me}");
    assert_eq!(held["offer"]["offer_id"], offer["offer_id"], "{me}");
    assert_eq!((held["customer"]["name"].as_str(), held["source"].as_str()), (Some("Kim"), Some("chat.acme")));
    assert!(me["wrap_up_reasons"].as_array().is_some_and(|r| !r.is_empty()), "{me}");
    assert_eq!(server.call("GET", "/v1/agents/me", Some("t-sam"), None).0, 403, "a supervisor is not an agent");

    // The agent's commands go over the same socket, answered by request id.
    let ask = |socket: &mut tungstenite::WebSocket<std::net::TcpStream>, frame: Value| -> Value {
        let request_id = frame["request_id"].clone();
        socket.send(tungstenite::Message::Text(frame.to_string())).unwrap();
        loop {
            let reply = read(socket);
            if reply["reply_to"] == request_id {
                return reply;
            }
        }
    };
    let accept = json!({ "request_id": "r1", "command": "accept", "offer_id": offer["offer_id"] });
    let reply = ask(&mut socket, accept.clone());
    assert_eq!(kinds(&reply), ["OfferAccepted"], "{reply}");
    let again = ask(&mut socket, accept);
    assert_eq!(again["events"], reply["events"], "a resent request is decided once and answered the same");
    let reply = ask(
        &mut socket,
        json!({ "request_id": "r2", "command": "send_message", "conversation_id": "c1",
        "message_id": "a1", "text": "x".repeat(1001) }),
    );
    assert_eq!(reply["error"]["error"], "message_too_long", "{reply}");
    let reply = ask(&mut socket, json!({ "request_id": "r3", "command": "dance" }));
    assert_eq!(reply["error"]["error"], "bad_request", "{reply}");
    server.verify_replay();

    // After a restart the new process has pushed nothing yet: a resume from
    // before its start is refused (410), not answered with nothing missed;
    // the desktop reloads the agent's state and resumes from its sequence.
    drop(socket);
    let data = server.kill();
    let server = Server::start(data.parent().unwrap(), &log);
    let ws_url = server.base.replace("http://", "ws://") + "/v1/agents/me/ws";
    let address = ws_url.trim_start_matches("ws://").split('/').next().unwrap().to_owned();
    // The status the handshake is answered with.
    let handshake = |after: u64| -> u16 {
        let url = format!("{ws_url}?after={after}");
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
        request.headers_mut().insert("Authorization", "Bearer t-ana".parse().unwrap());
        match tungstenite::client(request, std::net::TcpStream::connect(&address).unwrap()) {
            Ok((_, response)) => response.status().as_u16(),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => response.status().as_u16(),
            Err(other) => panic!("handshake: {other}"),
        }
    };
    assert_eq!(handshake(seen), 410, "a resume from before the restart must be refused");
    let (_, me) = server.call("GET", "/v1/agents/me", Some("t-ana"), None);
    assert_eq!(me["conversations"][0]["role"], "owner", "{me}");
    assert!(me["sequence"].as_u64().unwrap() > seen, "{me}");
    assert_eq!(handshake(me["sequence"].as_u64().unwrap()), 101, "a resume from the reloaded state must be taken");

    // A conversation that arrived before the restart, offered after it,
    // still shows the customer and the wait in the offer's popover.
    let bob_url = server.base.replace("http://", "ws://") + "/v1/agents/me/ws";
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(bob_url).unwrap();
    request.headers_mut().insert("Authorization", "Bearer t-bob".parse().unwrap());
    let stream = std::net::TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bob = tungstenite::client(request, stream).unwrap().0;
    server.available("t-bob");
    server.ok("t-ana", "/v1/conversations/c1/transfer", json!({ "queue_id": "chat" }));
    let mut pushed = read(&mut bob);
    while pushed["event"]["event"]["ConversationOffered"].is_null() {
        pushed = read(&mut bob);
    }
    assert_eq!(pushed["event"]["event"]["ConversationOffered"]["agent_id"], "bob", "{pushed}");
    assert_eq!(pushed["offer"]["arrival"]["customer"]["name"], "Kim", "{pushed}");
    assert!(pushed["offer"]["waited_ms"].as_i64().is_some_and(|w| w >= 0), "{pushed}");
}

/// Tenants `t0` to `t7` (routing domains spread over the partitions), each
/// with a chat queue, one agent (`a0`... token `ta0`...) and a supervisor
/// (token `ts0`...; `t-sam` too, in `t0`, for the digest), entry point
/// `chat.t0`...
fn spread_tenants() -> String {
    let sam = "[[tenants.supervisors]]\nid = \"sam\"\ntoken = \"t-sam\"\n\n";
    (0..8)
        .map(|t| {
            format!(
                "[[tenants]]\nid = \"t{t}\"\nwrap_up_reasons = [\"resolved\"]\n\n[[tenants.queues]]\nid = \"chat\"\nchannel = \"webchat\"\noffer_timeout_ms = 60000\n\n[[tenants.agents]]\nid = \"a{t}\"\ncapacity = {{ webchat = 500 }}\nqueues = [\"chat\"]\ntoken = \"ta{t}\"\n\n[[tenants.supervisors]]\nid = \"s{t}\"\ntoken = \"ts{t}\"\n\n[[tenants.entry_points]]\nchannel = \"webchat\"\naddress = \"chat.t{t}\"\nqueue = \"chat\"\n\n{}",
                if t == 0 { sam } else { "" }
            )
        })
        .collect()
}

/// Sends one customer message to tenant `t` through `base`, retrying while
/// the engine is failing over; returns the reply once decided. Retries
/// carry the first attempt's `Idempotency-Key`, as a client must: an
/// attempt that failed may still have been decided, and only the same
/// command id is answered with that first decision (a new one would be a
/// repeated customer message, taken once, answered with no events).
fn write_in(base: &str, t: usize, conversation: &str, deadline: Instant) -> Value {
    let body = json!({
        "channel": "webchat", "address": format!("chat.t{t}"), "conversation_id": conversation,
        "sender_message_id": "m1", "text": "hello"
    });
    loop {
        let response = ureq::post(&format!("{base}/v1/inbound/messages"))
            .set("Authorization", &format!("Bearer ts{t}"))
            .set("Idempotency-Key", &format!("t{t}/{conversation}"))
            .send_json(body.clone());
        match response {
            Ok(response) => return response.into_json().unwrap(),
            Err(error) => {
                assert!(Instant::now() < deadline, "{conversation} in t{t} never decided: {error}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

#[test]
fn a_surviving_engine_takes_over_the_partitions_of_a_killed_one_and_decides_nothing_twice() {
    let Some(log) = Log::kafka() else { return };
    let Log::Kafka { brokers, prefix } = log.clone() else { unreachable!() };
    let tenants = spread_tenants();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start_with(dir_a.path(), &log, &tenants);
    let b = Server::start_with(dir_b.path(), &log, &tenants);
    // Both processes share the work: wait until each decides some partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    let owned =
        |server: &Server| server.call("GET", "/readyz", None, None).1["partitions"].as_array().map_or(0, Vec::len);
    while owned(&a) == 0 || owned(&b) == 0 || owned(&a) + owned(&b) != 4 {
        assert!(Instant::now() < deadline, "the group did not share the 4 partitions: {} and {}", owned(&a), owned(&b));
        std::thread::sleep(Duration::from_millis(100));
    }
    for t in 0..8 {
        a.ok(&format!("ta{t}"), "/v1/agents/me/state", json!({ "status": "available" }));
    }

    // Traffic into every tenant through both processes; then B dies.
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    for round in 0..3 {
        for t in 0..8 {
            let via = if (round + t) % 2 == 0 { &a.base } else { &b.base };
            let conversation = format!("before-{round}-{t}");
            let reply = write_in(via, t, &conversation, deadline);
            assert!(kinds(&reply).contains(&"ConversationOffered".to_owned()), "{reply}");
            acknowledged.push((t, conversation));
        }
    }
    drop(b.kill());
    // The survivor decides for every tenant again, those of B's partitions
    // included, and answers repeated requests from the log, not anew.
    for t in 0..8 {
        let conversation = format!("after-{t}");
        let reply = write_in(&a.base, t, &conversation, deadline);
        assert!(kinds(&reply).contains(&"ConversationOffered".to_owned()), "{reply}");
        acknowledged.push((t, conversation));
    }
    assert_eq!(owned(&a), 4, "the survivor owns every partition");

    // Every acknowledged conversation is in the log; no command was decided
    // twice; no offer was made twice; the log verifies.
    let mut created = std::collections::BTreeSet::new();
    let mut decided = std::collections::BTreeSet::new();
    let mut offers = std::collections::BTreeSet::new();
    let events = format!("{prefix}.events");
    for partition in 0..4 {
        for batch in switchboard_kafka::read_batches(&brokers, &events, partition, 0).unwrap() {
            let batch = batch.unwrap();
            if !batch.records.is_empty() {
                assert!(decided.insert(batch.command_id.clone()), "command {} decided twice", batch.command_id);
            }
            for bytes in &batch.records {
                use prost::Message as _;
                let envelope = switchboard_proto::v1::Envelope::decode(bytes.as_slice()).unwrap();
                match envelope.event {
                    Some(switchboard_proto::v1::envelope::Event::ConversationCreated(c)) => {
                        created.insert((envelope.domain.clone(), c.conversation_id));
                    }
                    Some(switchboard_proto::v1::envelope::Event::ConversationOffered(o)) => {
                        assert!(offers.insert(o.offer_id.clone()), "offer {} made twice", o.offer_id);
                    }
                    _ => {}
                }
            }
        }
    }
    for (t, conversation) in &acknowledged {
        assert!(created.contains(&(format!("t{t}"), conversation.clone())), "t{t}/{conversation} lost");
    }
    a.verify_replay();
}
