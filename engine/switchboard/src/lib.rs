//! Switchboard's engine around the pure domain: replay for auditors, the
//! supervisors' figures, the day simulator, and what the binary needs to
//! drive them over a journal.

pub mod api;
pub mod backend;
pub mod config;
pub mod describe;
pub mod figures;
pub mod replay;
pub mod serve;
pub mod simulate;
pub mod sink;
