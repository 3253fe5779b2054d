//! How tests find the Kafka broker they run against.
//!
//! `SWITCHBOARD_TEST_KAFKA` names the bootstrap address (`deploy/local-kafka
//! start` prints one; `.ci/run` sets it). Without it a Kafka test cannot run:
//! under `CI=true` that is a failure, never a silent pass; on a developer's
//! machine the test says it was skipped and how to run it.

/// The environment variable holding the test broker's bootstrap address.
pub const BROKER_VARIABLE: &str = "SWITCHBOARD_TEST_KAFKA";

/// The test broker's address, or `None` (after saying so) when there is none
/// outside CI.
///
/// # Panics
///
/// Under `CI=true` when no broker is configured.
pub fn broker() -> Option<String> {
    match std::env::var(BROKER_VARIABLE) {
        Ok(address) if !address.trim().is_empty() => Some(address.trim().to_owned()),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!(
            "CI=true but {BROKER_VARIABLE} is not set: Kafka tests must run against a real broker; start one with `deploy/local-kafka start` and export {BROKER_VARIABLE}=<the address it prints>"
        ),
        _ => {
            eprintln!(
                "SKIPPED: no Kafka broker; run `deploy/local-kafka start` and set {BROKER_VARIABLE}=<address> to run this test"
            );
            None
        }
    }
}

/// A topic name no earlier test run used, so every test starts from an empty
/// log on a shared broker.
pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
