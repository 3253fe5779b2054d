//! The `switchboard` command: replay a journal for an audit, or simulate a
//! day into one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use switchboard::config::Config;
use switchboard::replay::{self, Filter, Replay, ReplayOptions};
use switchboard::serve;
use switchboard::simulate::{self, Scenario};
use switchboard::sink::JournalSink;
use switchboard_journal::{EmbeddedJournal, Journal, JournalOptions};

#[derive(Parser)]
#[command(name = "switchboard", version, about = "Routing engine for digital contact centers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine: route conversations to agents over the API, on the
    /// embedded journal in --data.
    Serve {
        /// Tenants, queues, agents and tokens (TOML); without it a demo tenant.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The journal's directory (created if missing).
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Address to listen on; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Shards (threads) routing domains are spread over.
        #[arg(long, default_value_t = 2)]
        shards: usize,
    },
    /// Read a journal: the timeline of a conversation or an agent, or the
    /// figures of the whole log; with --verify, check every invariant.
    Replay {
        /// The journal's directory.
        #[arg(long)]
        data: PathBuf,
        /// Show the full timeline of this conversation.
        #[arg(long, conflicts_with = "agent")]
        conversation: Option<String>,
        /// Show the full timeline of this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Check every invariant; exit non-zero naming the first event that breaks one.
        #[arg(long)]
        verify: bool,
        /// Output for humans or machines.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Answer time within which a conversation counts toward the service level.
        #[arg(long, default_value_t = 20_000)]
        service_level_ms: i64,
    },
    /// Simulate a seeded day of traffic, in virtual time, into a new journal.
    Simulate {
        /// The journal's directory (created; must hold no records yet).
        #[arg(long)]
        data: PathBuf,
        /// Seed of the day: the same seed gives the same log.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many conversations arrive.
        #[arg(long, default_value_t = 1_000)]
        conversations: u64,
        /// Scenario file (TOML); without it the documented default.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Print the default scenario and exit.
        #[arg(long)]
        print_default_scenario: bool,
        /// Output for humans or machines.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { config, data, listen, shards } => {
            let config = match config {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read configuration {}", path.display()))?;
                    Config::from_toml(&text).with_context(|| format!("invalid configuration {}", path.display()))?
                }
                None => Config::demo(),
            };
            actix_web::rt::System::new().block_on(serve::run(config, data, &listen, shards))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { data, conversation, agent, verify, format, service_level_ms } => {
            let filter = match (conversation, agent) {
                (Some(id), _) => Filter::Conversation(id),
                (_, Some(id)) => Filter::Agent(id),
                _ => Filter::Summary,
            };
            replay_journal(&data, filter, verify, format, service_level_ms)
        }
        Command::Simulate { print_default_scenario: true, .. } => {
            print!("{}", Scenario::default_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate { data, seed, conversations, scenario, format, .. } => {
            simulate_day(&data, seed, conversations, scenario.as_deref(), format)
        }
    }
}

fn replay_journal(
    data: &Path,
    filter: Filter,
    verify: bool,
    format: Format,
    service_level_ms: i64,
) -> Result<ExitCode> {
    let (journal, recovery) = EmbeddedJournal::open_read_only(data)
        .with_context(|| format!("cannot open the journal in {}", data.display()))?;
    let mut replay =
        Replay::new(ReplayOptions { filter: filter.clone(), verify, service_level_threshold_ms: service_level_ms });
    for record in journal.read_from(0)? {
        let (offset, bytes) = record.with_context(|| format!("reading the journal in {}", data.display()))?;
        if !replay.feed(offset, &bytes) {
            break;
        }
    }
    let outcome = replay.finish();
    let damaged = recovery.damage.is_some();
    match format {
        Format::Text => {
            if damaged {
                println!("journal: {recovery}");
            }
            print!("{}", replay::render_text(&outcome, &filter));
        }
        Format::Json => {
            let journal_note = damaged.then(|| recovery.to_string());
            let document = serde_json::json!({ "journal": journal_note, "replay": outcome });
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
    }
    Ok(if outcome.violation.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn simulate_day(
    data: &Path,
    seed: u64,
    conversations: u64,
    scenario: Option<&Path>,
    format: Format,
) -> Result<ExitCode> {
    let scenario = match scenario {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read scenario {}", path.display()))?;
            Scenario::from_toml(&text).with_context(|| format!("invalid scenario {}", path.display()))?
        }
        None => Scenario::from_toml(Scenario::default_toml()).context("the built-in scenario is invalid")?,
    };
    let (journal, _) = EmbeddedJournal::open(data, JournalOptions::default())
        .with_context(|| format!("cannot open the journal in {}", data.display()))?;
    if journal.next_offset() > 0 {
        bail!(
            "{} already holds {} records: simulate into an empty or new directory",
            data.display(),
            journal.next_offset()
        );
    }
    let mut sink = JournalSink::new(journal);
    let report = simulate::run(&scenario, seed, conversations, &mut sink)?;
    let journal = sink.into_journal();
    match format {
        Format::Text => {
            println!("simulated {} conversations with seed {seed} into {}", conversations, data.display());
            println!("{} events in {} records", report.events, journal.next_offset());
            print!("{}", report.figures.render_text());
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}
