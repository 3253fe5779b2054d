//! How tests find the Kafka broker they run against.
//!
//! In order: `SWITCHBOARD_TEST_KAFKA` names the bootstrap address
//! (`deploy/local-kafka start` prints one; `scripts/test` and `.ci/run` set
//! it); else, with the `testcontainers` feature (the tests' build) and a
//! Docker engine configured (`DOCKER_HOST` or `/var/run/docker.sock`), an
//! Apache Kafka container (`apache/kafka-native`, KRaft) shared by the tests
//! that run at the same time and removed when the last of them ends. Without
//! either, a Kafka test cannot run: under `CI=true` that is a failure, never
//! a silent pass; on a developer's machine the test says it was skipped and
//! how to run it.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The environment variable holding the test broker's bootstrap address.
pub const BROKER_VARIABLE: &str = "SWITCHBOARD_TEST_KAFKA";

/// A test broker's bootstrap address; a container started for it lives as
/// long as some clone of this does.
#[derive(Clone)]
pub struct Broker {
    address: String,
    _container: Option<Arc<dyn Send + Sync>>,
}

impl Deref for Broker {
    type Target = str;

    fn deref(&self) -> &str {
        &self.address
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Broker({})", self.address)
    }
}

/// The test broker, or `None` (after saying so) when there is none outside CI.
///
/// # Panics
///
/// Under `CI=true` when there is no broker.
pub fn broker() -> Option<Broker> {
    if let Ok(address) = std::env::var(BROKER_VARIABLE) {
        if !address.trim().is_empty() {
            return Some(Broker { address: address.trim().to_owned(), _container: None });
        }
    }
    let docker = docker::broker();
    let why = match docker {
        Some(Ok(broker)) => return Some(broker),
        Some(Err(error)) => format!("Docker is configured but the Kafka container did not start ({error})"),
        None => "no Docker engine is configured".to_owned(),
    };
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!(
            "CI=true but {BROKER_VARIABLE} is not set and {why}: Kafka tests must run against a real broker; start one with `deploy/local-kafka start` and export {BROKER_VARIABLE}=<the address it prints>"
        );
    }
    eprintln!(
        "SKIPPED: no Kafka broker ({BROKER_VARIABLE} unset, {why}); run `deploy/local-kafka start` and set {BROKER_VARIABLE}=<address> to run this test"
    );
    None
}

#[cfg(feature = "testcontainers")]
mod docker {
    use std::sync::{Arc, Mutex, Weak};

    use testcontainers_modules::kafka::apache;
    use testcontainers_modules::testcontainers::runners::SyncRunner;
    use testcontainers_modules::testcontainers::Container;

    use super::Broker;

    struct Running {
        address: String,
        _container: Container<apache::Kafka>,
    }

    /// The container of the tests running now; started again by a later test
    /// once every earlier holder has dropped it (dropping removes it).
    static SHARED: Mutex<Option<Weak<Running>>> = Mutex::new(None);

    fn configured() -> bool {
        std::env::var_os("DOCKER_HOST").is_some() || std::path::Path::new("/var/run/docker.sock").exists()
    }

    pub(super) fn broker() -> Option<Result<Broker, String>> {
        if !configured() {
            return None;
        }
        let mut shared = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let running = match shared.as_ref().and_then(Weak::upgrade) {
            Some(running) => running,
            None => match start() {
                Ok(running) => {
                    let running = Arc::new(running);
                    *shared = Some(Arc::downgrade(&running));
                    running
                }
                Err(error) => return Some(Err(error)),
            },
        };
        Some(Ok(Broker { address: running.address.clone(), _container: Some(running) }))
    }

    fn start() -> Result<Running, String> {
        let container = apache::Kafka::default().start().map_err(|e| e.to_string())?;
        let host = container.get_host().map_err(|e| e.to_string())?;
        let port = container.get_host_port_ipv4(apache::KAFKA_PORT).map_err(|e| e.to_string())?;
        Ok(Running { address: format!("{host}:{port}"), _container: container })
    }
}

#[cfg(not(feature = "testcontainers"))]
mod docker {
    pub(super) fn broker() -> Option<Result<super::Broker, String>> {
        None
    }
}

/// A topic layout (`<prefix>-….commands` and so on, replication 1) no
/// earlier test run used.
pub fn unique_layout(prefix: &str, partitions: i32) -> crate::TopicLayout {
    let prefix = unique_topic(prefix);
    crate::TopicLayout {
        commands: format!("{prefix}.commands"),
        events: format!("{prefix}.events"),
        outbox: format!("{prefix}.outbox"),
        snapshots: format!("{prefix}.snapshots"),
        partitions,
        replication: 1,
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
