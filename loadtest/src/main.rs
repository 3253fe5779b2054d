//! The `switchboard-loadtest` command: drive a running engine with
//! simulated customers and agents, print the configuration to run it with,
//! or time the disk it runs on.

/// The process's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use switchboard_loadtest::api::Target;
use switchboard_loadtest::config::{generate, ConfigSpec, Roster};
use switchboard_loadtest::disk::{self, ProbeOptions};
use switchboard_loadtest::procfs;
use switchboard_loadtest::run::{self, RunOptions};
use switchboard_loadtest::schedule::Mix;

/// Load generator for a running switchboard engine. Without a subcommand it
/// runs the load; `config` prints a server configuration to run it against;
/// `disk` times the fsyncs of the disk under a directory.
#[derive(Parser)]
#[command(name = "switchboard-loadtest", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print a switchboard.toml for a load test: one tenant, a support and a
    /// sales queue per channel (webchat, whatsapp, email) with entry points,
    /// agents with capacities and tokens, a supervisor, wrap-up reasons.
    Config(ConfigArgs),
    /// Time the disk under a directory as the journal uses it (append, then
    /// fdatasync, at a steady pace), with the engine stopped: its slowest
    /// fsyncs are a floor under any load test's offer latency.
    Disk(DiskArgs),
}

#[derive(Args)]
struct DiskArgs {
    /// A directory on the disk to probe (the engine's --data, say).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Seconds to probe.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Bytes appended before each fsync (the default: about one group
    /// commit's worth at 3000 lifecycles/s).
    #[arg(long, default_value_t = 6_000)]
    record_bytes: usize,
    /// Microseconds to pause after each fsync (the default gives about the
    /// journal's ~1,000 fsyncs a second at 3000 lifecycles/s).
    #[arg(long, default_value_t = 700)]
    interval_us: u64,
}

#[derive(Args)]
struct ConfigArgs {
    /// How many agents.
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// The tenant's id.
    #[arg(long, default_value = "load")]
    tenant: String,
    /// Each agent's capacity per channel.
    #[arg(long, default_value_t = 4)]
    capacity: u32,
    /// Every queue's offer timeout (lapsed offers take this long to return).
    #[arg(long, default_value_t = 3_000)]
    offer_timeout_ms: u64,
}

#[derive(Args)]
struct RunArgs {
    /// The engine: http://127.0.0.1:PORT (loopback only).
    #[arg(long)]
    target: Option<String>,
    /// Customers arriving per second (Poisson, open loop).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of arrivals; the run then drains and stops by itself.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seed of the arrival schedule and the conversations' plans.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The server's configuration file, for the agents' tokens; without it
    /// the one `config --agents N --tenant T` generates.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Agents to play (of the configuration's; all by default with --config).
    #[arg(long)]
    agents: Option<usize>,
    /// The tenant to load.
    #[arg(long, default_value = "load")]
    tenant: String,
    /// Capacity per channel, when the configuration is generated (as `config --capacity`).
    #[arg(long, default_value_t = 4)]
    capacity: u32,
    /// Offer timeout, when the configuration is generated (as `config --offer-timeout-ms`).
    #[arg(long, default_value_t = 3_000)]
    offer_timeout_ms: u64,
    /// HTTP connections at most (kept alive, shared by all simulated people).
    /// Requests in flight are arrival rate × round trip (Little's law), and
    /// a request waiting for a free connection is a closed loop in disguise:
    /// 32 connections capped a 40 ms round trip (on Kafka) at 800 requests/s.
    /// Real desktops each have their own connection, so the default is high.
    #[arg(long, default_value_t = 512)]
    connections: usize,
    /// Agents also listen on their WebSockets (/v1/agents/me/ws).
    #[arg(long)]
    ws: bool,
    /// Agents also send their commands on their WebSockets, as a desktop
    /// that keeps one open does (implies --ws); customers stay on HTTP.
    #[arg(long)]
    ws_commands: bool,
    /// The engine's process id, for its peak RSS; found by the target's port when left out.
    #[arg(long)]
    engine_pid: Option<u32>,
    /// Seconds at the start left out of the per-second rates (default: a fifth of the duration, at most 2).
    #[arg(long)]
    warmup: Option<f64>,
    /// Seconds to wait after the last arrival for conversations to finish
    /// (default: the longest offer timeout + 10).
    #[arg(long)]
    drain: Option<f64>,
    /// A request's time limit, seconds.
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
    /// Share of conversations whose first offer lapses.
    #[arg(long, default_value_t = 0.02)]
    lapse: f64,
    /// Share of conversations transferred to another queue.
    #[arg(long, default_value_t = 0.05)]
    transfer: f64,
    /// Share of conversations with a conference.
    #[arg(long, default_value_t = 0.03)]
    conference: f64,
    /// Share of conversations in which the customer answers.
    #[arg(long, default_value_t = 0.5)]
    customer_reply: f64,
    /// Mean ms from offer to accept.
    #[arg(long, default_value_t = 100)]
    think_ms: u64,
    /// Mean ms from the agent's message to the end.
    #[arg(long, default_value_t = 200)]
    talk_ms: u64,
    /// Mean ms from the end to the wrap-up.
    #[arg(long, default_value_t = 100)]
    wrap_ms: u64,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

fn seconds(value: f64, what: &str) -> Result<Duration> {
    if !(value.is_finite() && value >= 0.0) {
        bail!("{what} must be a number of seconds, not {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Config(args)) => {
            let spec = ConfigSpec {
                tenant: args.tenant,
                agents: args.agents,
                capacity: args.capacity,
                offer_timeout_ms: args.offer_timeout_ms,
            };
            print!("{}", generate(&spec));
            Ok(())
        }
        Some(Command::Disk(args)) => probe_disk(args),
        None => load(cli.run),
    }
}

fn probe_disk(args: DiskArgs) -> Result<()> {
    if args.record_bytes == 0 {
        bail!("--record-bytes must be at least 1: an fsync with nothing appended times nothing");
    }
    let options = ProbeOptions {
        dir: args.dir,
        duration: seconds(args.duration, "--duration")?,
        record_bytes: args.record_bytes,
        interval: Duration::from_micros(args.interval_us),
    };
    let report =
        disk::probe(&options).with_context(|| format!("cannot probe the disk under {}", options.dir.display()))?;
    print!("{}", report.render_text());
    println!("{}", report.to_json_line());
    Ok(())
}

fn load(args: RunArgs) -> Result<()> {
    let Some(target) = args.target.as_deref() else {
        bail!("--target http://127.0.0.1:PORT is required (or use the `config` subcommand)");
    };
    let target = Target::parse(target)?;
    let roster = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Roster::from_toml(&text, Some(&args.tenant)).with_context(|| format!("in {}", path.display()))?
        }
        None => Roster::generated(&ConfigSpec {
            tenant: args.tenant.clone(),
            agents: args.agents.unwrap_or(ConfigSpec::default().agents),
            capacity: args.capacity,
            offer_timeout_ms: args.offer_timeout_ms,
        }),
    };
    let duration = seconds(args.duration, "--duration")?;
    let warmup = match args.warmup {
        Some(w) => seconds(w, "--warmup")?,
        None => (duration / 5).min(Duration::from_secs(2)),
    };
    if warmup >= duration {
        bail!("--warmup must be shorter than --duration");
    }
    let drain = match args.drain {
        Some(d) => seconds(d, "--drain")?,
        None => Duration::from_millis(roster.max_offer_timeout_ms()) + Duration::from_secs(10),
    };
    for (name, p) in [
        ("--lapse", args.lapse),
        ("--transfer", args.transfer),
        ("--conference", args.conference),
        ("--customer-reply", args.customer_reply),
    ] {
        if !(0.0..=1.0).contains(&p) {
            bail!("{name} is a share between 0 and 1, not {p}");
        }
    }
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let options = RunOptions {
        target,
        rate: args.rate,
        duration,
        warmup,
        seed: args.seed,
        connections: args.connections,
        request_timeout: seconds(args.request_timeout, "--request-timeout")?,
        drain,
        ws: args.ws || args.ws_commands,
        ws_commands: args.ws_commands,
        mix: Mix {
            lapse: args.lapse,
            transfer: args.transfer,
            conference: args.conference,
            customer_reply: args.customer_reply,
            think: Duration::from_millis(args.think_ms),
            talk: Duration::from_millis(args.talk_ms),
            wrap: Duration::from_millis(args.wrap_ms),
        },
        agents: args.agents.unwrap_or(usize::MAX),
        run_id: format!("lt{}-{unix_ms}", args.seed),
        progress: !args.quiet,
    };
    let agents = options.agents.min(roster.agents.len());
    let engine_pid = args.engine_pid.or_else(|| procfs::find_listener_pid(target.port()));
    if engine_pid.is_none() {
        eprintln!(
            "note: no process found listening on port {}; give --engine-pid for the engine's peak RSS",
            target.port()
        );
    }
    let system = actix_rt::System::new();
    let (stats, unfinished, cpu) = system.block_on(run::run(roster, options.clone(), engine_pid))?;
    let rss = engine_pid.and_then(procfs::peak_rss_bytes);
    let summary = run::summarise(&options, agents, &stats, unfinished, rss, cpu);
    print!("{}", summary.render_text());
    println!("{}", summary.to_json_line());
    Ok(())
}
