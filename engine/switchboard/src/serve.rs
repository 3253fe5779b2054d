//! `switchboard serve`: recover the engine from its journal (or catch up
//! with the Kafka log and join the engine group), then answer the API until
//! stopped.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use switchboard_kafka::edge::Edge;
use switchboard_kafka::worker::{Worker, WorkerOptions};
use switchboard_kafka::KafkaSettings;
use switchboard_live::{Engine, EngineOptions};

use crate::api::{self, ApiState};
use crate::backend::Backend;
use crate::config::Config;

/// Where the engine keeps its log.
#[derive(Debug, Clone)]
pub enum LogChoice {
    /// The embedded journal in a directory, decided by `shards` threads.
    Embedded {
        /// The journal's directory.
        data: PathBuf,
        /// Shards (threads) the routing domains are spread over.
        shards: usize,
        /// How long a busy shard's writer waits to let one fsync carry more
        /// decisions (`EngineOptions::commit_delay`).
        commit_delay: std::time::Duration,
    },
    /// Kafka topics, shared with the other engine processes of the group.
    Kafka(KafkaSettings),
}

/// How long `serve --kafka` waits to catch up with the log at start.
const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The engine could not start (journal locked, log not explainable, ...).
    #[error("cannot start the engine: {0}")]
    Engine(#[from] switchboard_live::EngineError),
    /// The Kafka log could not be reached or read.
    #[error("cannot start on Kafka: {0}")]
    Kafka(#[from] switchboard_kafka::Error),
    /// A configuration command was refused or not decided in time.
    #[error("cannot apply the configuration ({command_id}): {reason}")]
    Configuration {
        /// The configuration command.
        command_id: String,
        /// Why.
        reason: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address asked for.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("server error: {0}")]
    Server(#[from] std::io::Error),
}

/// Starts the engine on `data`, then serves the API on `listen` with
/// `http_workers` threads. The first line on stdout is
/// `listening on http://HOST:PORT`, for tools and tests.
pub async fn run(config: Config, log: LogChoice, listen: &str, http_workers: usize) -> Result<(), ServeError> {
    // Command ids must not repeat across restarts or processes (a repeated id
    // is answered from the first command's outcome), so the instance name
    // holds the start time beside the process id.
    let started_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let instance = format!("{}-{started_ms}", std::process::id());
    let engine = match log {
        LogChoice::Embedded { data, shards, commit_delay } => {
            let options = EngineOptions { shards, commit_delay, ..EngineOptions::new(data) };
            Backend::Embedded(Engine::start(options, config.configuration_commands()).await?)
        }
        LogChoice::Kafka(settings) => start_on_kafka(&config, settings, &instance).await?,
    };
    let state = web::Data::new(ApiState::new(engine.clone(), Arc::new(config), instance));
    let server =
        HttpServer::new(move || App::new().app_data(state.clone()).app_data(api::json_config()).configure(api::routes))
            .workers(http_workers)
            // Agent sessions stay open until their agents leave; a stop must not wait for that.
            .shutdown_timeout(3)
            .bind(listen)
            .map_err(|source| ServeError::Listen { address: listen.to_owned(), source })?;
    let address = server.addrs()[0];
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{address}")?;
    stdout.flush()?;
    // Whoever started us may stop reading after the first line: the rest is
    // for people, and a closed pipe must not stop the server.
    let _ = writeln!(
        stdout,
        "API: http://{address}/v1 (OpenAPI at /v1/openapi.json), metrics: http://{address}/metrics, health: /healthz, /readyz"
    )
    .and_then(|()| stdout.flush());
    let result = server.run().await;
    engine.shutdown().await?;
    result.map_err(ServeError::from)
}

/// Catches up with the Kafka log, joins the engine group, and submits the
/// configuration (a command that would change nothing writes nothing, so
/// every process and every restart may submit it).
async fn start_on_kafka(config: &Config, settings: KafkaSettings, instance: &str) -> Result<Backend, ServeError> {
    let KafkaSettings { brokers, topics, snapshot_every } = settings;
    let edge = {
        let (brokers, topics) = (brokers.clone(), topics.clone());
        tokio::task::spawn_blocking(move || Edge::start(&brokers, topics, 16_384))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??
    };
    let deadline = std::time::Instant::now() + CATCH_UP_TIMEOUT;
    while !edge.is_ready() {
        if std::time::Instant::now() > deadline {
            return Err(ServeError::Kafka(switchboard_kafka::Error::Broker {
                action: "catch up with the events topic".into(),
                reason: format!("not done within {} s", CATCH_UP_TIMEOUT.as_secs()),
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let worker = Worker::start(WorkerOptions { snapshot_every, ..WorkerOptions::new(brokers, topics, instance) });
    let backend = Backend::Kafka { edge, worker: Arc::new(std::sync::Mutex::new(Some(worker))) };
    for command in config.configuration_commands() {
        let command_id = command.command_id.clone();
        backend
            .submit(command)
            .await
            .map_err(|error| ServeError::Configuration { command_id, reason: error.to_string() })?;
    }
    Ok(backend)
}
