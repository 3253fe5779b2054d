//! Switchboard's load generator: simulated customers arrive open-loop at a
//! target rate (a seeded Poisson process), simulated agents answer their
//! offers over the engine's HTTP API (and, optionally, their WebSockets),
//! and the run reports sustained lifecycles and events per second, offer
//! and accept latencies, errors by kind and the engine's peak memory.
//!
//! - [`config`]: the switchboard.toml a load test runs against, generated
//!   or read, and the part of it the simulated agents need.
//! - [`schedule`]: the seeded arrival schedule and each conversation's plan.
//! - [`events`]: the engine's events as the client reads them.
//! - [`api`]: the HTTP and WebSocket client (loopback targets only).
//! - [`run`]: the simulation itself.
//! - [`stats`]: histograms, counts and the printed summary.
//! - [`procfs`]: the engine's peak RSS and finding it by its port.
//! - [`disk`]: how long the disk under a data directory takes to fsync an append.

pub mod api;
pub mod config;
pub mod disk;
pub mod events;
pub mod procfs;
pub mod run;
pub mod schedule;
pub mod stats;
