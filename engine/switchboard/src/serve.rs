//! `switchboard serve`: recover the engine from its journal, then answer
//! the API until stopped.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use switchboard_live::{Engine, EngineOptions};

use crate::api::{self, ApiState};
use crate::config::Config;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The engine could not start (journal locked, log not explainable, ...).
    #[error("cannot start the engine: {0}")]
    Engine(#[from] switchboard_live::EngineError),
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

/// Starts the engine on `data`, then serves the API on `listen`. The first
/// line on stdout is `listening on http://HOST:PORT`, for tools and tests.
pub async fn run(config: Config, data: PathBuf, listen: &str, shards: usize) -> Result<(), ServeError> {
    let options = EngineOptions { shards, ..EngineOptions::new(data) };
    let engine = Engine::start(options, config.configuration_commands()).await?;
    let instance = format!("{}", std::process::id());
    let state = web::Data::new(ApiState::new(engine.clone(), Arc::new(config), instance));
    let server =
        HttpServer::new(move || App::new().app_data(state.clone()).app_data(api::json_config()).configure(api::routes))
            .workers(2)
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
