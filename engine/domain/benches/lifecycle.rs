//! What one conversation's lifecycle costs the domain (decide and apply,
//! no I/O), with many closed conversations retained: every command looks up
//! its conversation, so this is where the conversations map's lookups show.
//!
//! `cargo bench -p switchboard-domain --bench lifecycle`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion};
use switchboard_domain::testing::{agent, available, customer_message, offered, webchat_queue};
use switchboard_domain::DomainState;
use switchboard_proto::v1::command::Command as C;
use switchboard_proto::v1::{
    AcceptOffer, Channel, Command, ConfigureRetention, ConfigureWrapUpReasons, EndConversation, SendAgentMessage,
    SubmitWrapUp,
};

const QUEUE: &str = "chat";
const AGENTS: usize = 200;

/// A domain that feeds its commands the time and unique ids, as the shard does.
struct Domain {
    state: DomainState,
    commands: u64,
    next_conversation: u64,
}

impl Domain {
    fn new() -> Self {
        let mut domain = Domain { state: DomainState::new("bench"), commands: 0, next_conversation: 0 };
        // Keep every closed conversation: the retained set is what is measured.
        domain.run(C::ConfigureRetention(ConfigureRetention { closed_conversation_ms: 0 }));
        domain.run(C::ConfigureWrapUpReasons(ConfigureWrapUpReasons { reasons: vec!["resolved".into()] }));
        domain.run(webchat_queue(QUEUE, 30_000, 0));
        for n in 0..AGENTS {
            let id = format!("agent-{n:05}");
            domain.run(agent(&id, Channel::Webchat as i32, &[QUEUE]));
            domain.run(available(&id));
        }
        domain
    }

    fn run(&mut self, command: C) -> Vec<std::sync::Arc<switchboard_domain::Envelope>> {
        self.commands += 1;
        let command = Command {
            command_id: format!("bench/{}", self.commands),
            domain: "bench".into(),
            at_ms: self.state.last_at_ms + 1,
            command: Some(command),
        };
        let events = self.state.execute(&command).expect("the benchmark's commands are accepted");
        events.into_iter().map(std::sync::Arc::new).collect()
    }

    /// A customer writes, is offered to an agent who accepts, answers, ends
    /// and wraps up: six commands, about ten events.
    fn lifecycle(&mut self) {
        self.next_conversation += 1;
        let conversation = format!("load-run-{:09}", self.next_conversation);
        let events = self.run(customer_message(&conversation, QUEUE, "m1"));
        let offer = offered(&events).expect("an agent is free").clone();
        let agent_id = offer.agent_id.clone();
        self.run(C::AcceptOffer(AcceptOffer { agent_id: agent_id.clone(), offer_id: offer.offer_id }));
        self.run(C::SendAgentMessage(SendAgentMessage {
            agent_id: agent_id.clone(),
            conversation_id: conversation.clone(),
            message_id: "a1".into(),
            text: "Happy to help.".into(),
            ..Default::default()
        }));
        self.run(C::EndConversation(EndConversation {
            agent_id: agent_id.clone(),
            conversation_id: conversation.clone(),
        }));
        black_box(self.run(C::SubmitWrapUp(SubmitWrapUp {
            agent_id,
            conversation_id: conversation,
            reasons: vec!["resolved".into()],
        })));
    }
}

fn lifecycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("lifecycle");
    for retained in [1_000u64, 100_000] {
        let mut domain = Domain::new();
        for _ in 0..retained {
            domain.lifecycle();
        }
        group.bench_function(BenchmarkId::new("closed_conversations_retained", retained), |b| {
            b.iter(|| domain.lifecycle())
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    lifecycle(&mut criterion);
    criterion.final_summary();
}
