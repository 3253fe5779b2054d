//! The `switchboard` command: run the engine, replay a log for an audit,
//! simulate a day into one, or set up the Kafka topics.

/// The process's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use switchboard::config::{Config, KafkaSection};
use switchboard::replay::{self, Filter, Replay, ReplayOptions, ReplayOutcome};
use switchboard::serve::{self, LogChoice};
use switchboard::simulate::{self, Scenario};
use switchboard::sink::JournalSink;
use switchboard_journal::{EmbeddedJournal, Journal, JournalOptions};
use switchboard_kafka::KafkaSettings;

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
        /// Threads that answer HTTP and the agents' WebSockets.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
        http_workers: u16,
        /// When a shard decides faster than the disk syncs, its writer waits
        /// this long before the next append so that one fsync carries more
        /// decisions; a command reaching an idle writer never waits. 0 turns
        /// it off. Embedded journal only.
        #[arg(long, default_value = "500us", value_parser = humantime::parse_duration, value_name = "DURATION")]
        commit_delay: std::time::Duration,
        /// Run on Kafka instead of --data: these brokers (or, with an empty
        /// value, the --config file's [kafka] brokers). The topics must exist
        /// (`switchboard kafka init`); every process started on the same
        /// topics shares the work.
        #[arg(long, value_name = "BROKERS", num_args = 0..=1, default_missing_value = "")]
        kafka: Option<String>,
    },
    /// Read a journal: the timeline of a conversation or an agent, or the
    /// figures of the whole log; with --verify, check every invariant.
    Replay {
        /// The journal's directory.
        #[arg(long, required_unless_present = "kafka", conflicts_with = "kafka")]
        data: Option<PathBuf>,
        /// Read the events topic on these Kafka brokers instead of a directory.
        #[arg(long, value_name = "BROKERS")]
        kafka: Option<String>,
        /// With --kafka: the events topic (default: [kafka.topics] events of
        /// --config, else switchboard.events).
        #[arg(long, requires = "kafka")]
        topic: Option<String>,
        /// With --kafka: only this partition (default: all).
        #[arg(long, requires = "kafka")]
        partition: Option<i32>,
        /// With --kafka: the configuration whose [kafka] table names the topics.
        #[arg(long, requires = "kafka")]
        config: Option<PathBuf>,
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
    /// Set up and inspect Switchboard's Kafka topics.
    Kafka {
        #[command(subcommand)]
        command: KafkaCommand,
    },
}

#[derive(Subcommand)]
enum KafkaCommand {
    /// Create the configured topics (commands, events, outbox, snapshots), or
    /// check that the existing ones match the configuration.
    Init {
        /// Configuration whose [kafka] table gives brokers and layout
        /// (without it: 127.0.0.1:9092 and the default layout).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Bootstrap brokers, overriding the configuration's.
        #[arg(long, value_name = "BROKERS")]
        brokers: Option<String>,
    },
}

/// Where the engine's log level comes from: `tracing` directives such as
/// `warn` or `info,switchboard_kafka=debug`.
const LOG_VARIABLE: &str = "SWITCHBOARD_LOG";

/// Sends the engine's own log (recoveries, failed appends, partition
/// rebuilds) to stderr: stdout belongs to the commands' output, whose first
/// line `serve` promises. `serve` logs from `info` by default, the one-shot
/// commands only warnings.
fn init_log(serving: bool) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var(LOG_VARIABLE) {
        Ok(directives) => EnvFilter::try_new(&directives)
            .with_context(|| format!("{LOG_VARIABLE}={directives:?} is not a log filter (try `info` or `warn`)"))?,
        Err(_) => EnvFilter::new(if serving { "info" } else { "warn" }),
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = init_log(matches!(cli.command, Command::Serve { .. })) {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { config, data, listen, shards, http_workers, commit_delay, kafka } => {
            let config = match config {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read configuration {}", path.display()))?;
                    Config::from_toml(&text).with_context(|| format!("invalid configuration {}", path.display()))?
                }
                None => Config::demo(),
            };
            let log = match kafka {
                Some(brokers) => {
                    let mut settings = config.kafka.clone().unwrap_or_default();
                    if !brokers.is_empty() {
                        settings.brokers = brokers;
                    }
                    LogChoice::Kafka(settings)
                }
                None => LogChoice::Embedded { data, shards, commit_delay },
            };
            actix_web::rt::System::new().block_on(serve::run(config, log, &listen, usize::from(http_workers)))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            data,
            kafka,
            topic,
            partition,
            config,
            conversation,
            agent,
            verify,
            format,
            service_level_ms,
        } => {
            let filter = match (conversation, agent) {
                (Some(id), _) => Filter::Conversation(id),
                (_, Some(id)) => Filter::Agent(id),
                _ => Filter::Summary,
            };
            let options = ReplayOptions { filter, verify, service_level_threshold_ms: service_level_ms };
            match (data, kafka) {
                (_, Some(brokers)) => {
                    let topic = match topic {
                        Some(topic) => topic,
                        None => kafka_settings(config.as_deref())?.topics.events,
                    };
                    replay_kafka(&brokers, &topic, partition, options, format)
                }
                (Some(data), None) => replay_journal(&data, options, format),
                (None, None) => bail!("say where the log is: --data DIR or --kafka BROKERS"),
            }
        }
        Command::Kafka { command: KafkaCommand::Init { config, brokers } } => {
            let mut settings = kafka_settings(config.as_deref())?;
            if let Some(brokers) = brokers {
                settings.brokers = brokers;
            }
            let report = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(switchboard_kafka::admin::init(&settings.brokers, &settings.topics))?;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
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

/// The `[kafka]` table of `config`, or the defaults without a file.
fn kafka_settings(config: Option<&Path>) -> Result<KafkaSettings> {
    match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read configuration {}", path.display()))?;
            KafkaSection::from_toml(&text).with_context(|| format!("invalid configuration {}", path.display()))
        }
        None => Ok(KafkaSettings::default()),
    }
}

fn replay_journal(data: &Path, options: ReplayOptions, format: Format) -> Result<ExitCode> {
    let (journal, recovery) = EmbeddedJournal::open_read_only(data)
        .with_context(|| format!("cannot open the journal in {}", data.display()))?;
    let filter = options.filter.clone();
    let mut replay = Replay::new(options);
    for record in journal.read_from(0)? {
        let (offset, bytes) = record.with_context(|| format!("reading the journal in {}", data.display()))?;
        if !replay.feed(offset, &bytes) {
            break;
        }
    }
    let note = recovery.damage.is_some().then(|| recovery.to_string());
    report_replay(replay.finish(), &filter, note, format)
}

/// Replays the events topic partition by partition: each routing domain
/// lives in one partition, so the partitions' histories are independent and
/// their order between each other does not matter.
fn replay_kafka(
    brokers: &str,
    topic: &str,
    partition: Option<i32>,
    options: ReplayOptions,
    format: Format,
) -> Result<ExitCode> {
    let partitions = match partition {
        Some(partition) => vec![partition],
        None => (0..switchboard_kafka::partition_count(brokers, topic)?).collect(),
    };
    let filter = options.filter.clone();
    let mut replay = Replay::new(options);
    'partitions: for partition in partitions {
        for batch in switchboard_kafka::read_batches(brokers, topic, partition, 0)? {
            let batch = batch?;
            for (offset, bytes) in (batch.first_offset..).zip(&batch.records) {
                if !replay.feed(offset, bytes) {
                    break 'partitions;
                }
            }
        }
    }
    report_replay(replay.finish(), &filter, None, format)
}

fn report_replay(
    outcome: ReplayOutcome,
    filter: &Filter,
    journal_note: Option<String>,
    format: Format,
) -> Result<ExitCode> {
    match format {
        Format::Text => {
            if let Some(note) = &journal_note {
                println!("journal: {note}");
            }
            print!("{}", replay::render_text(&outcome, filter));
        }
        Format::Json => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_defaults_to_the_engines_commit_delay() {
        let cli = Cli::try_parse_from(["switchboard", "serve"]).unwrap();
        let Command::Serve { commit_delay, .. } = cli.command else { panic!("parsed as another command") };
        assert_eq!(commit_delay, switchboard_live::DEFAULT_COMMIT_DELAY);
        let off = Cli::try_parse_from(["switchboard", "serve", "--commit-delay", "0s"]).unwrap();
        assert!(matches!(off.command, Command::Serve { commit_delay, .. } if commit_delay.is_zero()));
        assert!(Cli::try_parse_from(["switchboard", "serve", "--commit-delay", "soon"]).is_err());
    }

    #[test]
    fn serve_takes_one_http_worker_or_more() {
        let Command::Serve { http_workers, .. } = Cli::try_parse_from(["switchboard", "serve"]).unwrap().command else {
            panic!("parsed as another command")
        };
        assert_eq!(http_workers, 2);
        let one = Cli::try_parse_from(["switchboard", "serve", "--http-workers", "1"]).unwrap();
        assert!(matches!(one.command, Command::Serve { http_workers: 1, .. }));
        let none = Cli::try_parse_from(["switchboard", "serve", "--http-workers", "0"]).err().expect("0 is refused");
        assert!(none.to_string().contains("--http-workers"), "{none}");
    }
}
