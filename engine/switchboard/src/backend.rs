//! The engine behind the API: in this process on the embedded journal, or
//! on Kafka (an edge that publishes commands and reads outcomes from the
//! log, beside a worker that decides the partitions this process owns).

use std::sync::{Arc, Mutex};

use switchboard_domain::{Command, DomainState, Envelope};
use switchboard_kafka::edge::{Edge, EdgeError, Outcome};
use switchboard_kafka::worker::Worker;
use switchboard_live::{Engine, Published};
use tokio::sync::broadcast;

use crate::api::ApiError;

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub enum Backend {
    /// The live engine on the embedded journal.
    Embedded(Engine),
    /// The engine on Kafka.
    Kafka {
        /// Publishes commands, reads outcomes and keeps the read model.
        edge: Edge,
        /// Decides the commands of the partitions this process owns.
        worker: Arc<Mutex<Option<Worker>>>,
    },
}

impl Backend {
    /// Whether the API may take commands: recovery (or catching up with the
    /// log) is done and nothing has failed.
    pub fn is_ready(&self) -> bool {
        match self {
            Backend::Embedded(engine) => engine.is_ready(),
            Backend::Kafka { edge, .. } => edge.is_ready(),
        }
    }

    /// On Kafka, the partitions this process's worker decides now.
    pub fn owned_partitions(&self) -> Option<Vec<i32>> {
        match self {
            Backend::Embedded(_) => None,
            Backend::Kafka { worker, .. } => {
                Some(worker.lock().unwrap().as_ref().map(Worker::owned_partitions).unwrap_or_default())
            }
        }
    }

    /// On Kafka, why the worker's last session failed, until one runs cleanly.
    pub fn worker_failure(&self) -> Option<String> {
        match self {
            Backend::Embedded(_) => None,
            Backend::Kafka { worker, .. } => worker.lock().unwrap().as_ref().and_then(Worker::failure),
        }
    }

    /// On Kafka, how many partition rebuilds started from a snapshot.
    pub fn rebuilds_from_snapshots(&self) -> Option<u64> {
        match self {
            Backend::Embedded(_) => None,
            Backend::Kafka { worker, .. } => {
                Some(worker.lock().unwrap().as_ref().map_or(0, Worker::rebuilds_from_snapshots))
            }
        }
    }

    /// On Kafka, how many partitions the edge's read model started from a
    /// snapshot of.
    pub fn read_model_from_snapshots(&self) -> Option<usize> {
        match self {
            Backend::Embedded(_) => None,
            Backend::Kafka { edge, .. } => Some(edge.partitions_from_snapshots()),
        }
    }

    /// Has `command` decided; its events once they are durable in the log.
    pub async fn submit(&self, command: Command) -> Result<Vec<Arc<Envelope>>, ApiError> {
        match self {
            Backend::Embedded(engine) => Ok(engine.submit(command).await?),
            Backend::Kafka { edge, .. } => match edge.submit(command).await {
                Ok(Outcome::Decided(events)) => Ok(events),
                Ok(Outcome::Refused { code, message }) => Err(ApiError::Refused { code, message }),
                Err(EdgeError::Unavailable(reason)) => Err(ApiError::Unavailable(reason)),
            },
        }
    }

    /// Every durable event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        match self {
            Backend::Embedded(engine) => engine.subscribe(),
            Backend::Kafka { edge, .. } => edge.subscribe(),
        }
    }

    /// The digest of every domain's state (`replay::digest`), each domain
    /// hashed where its state lives instead of copied out.
    pub async fn digest(&self) -> Result<String, ApiError> {
        let domains = self.read_all(|_, _| ()).await?;
        let mut digest = crate::replay::StateDigest::default();
        for (domain, ()) in domains {
            let name = domain.clone();
            // The digest travels to the domain's shard and back.
            digest = self
                .read(&domain, move |state| {
                    if let Some(state) = state {
                        digest.add(&name, state);
                    }
                    digest
                })
                .await?;
        }
        Ok(digest.finish())
    }

    /// What `view` takes from each domain's state, by domain: only that is
    /// copied.
    pub async fn read_all<T: Send + 'static>(
        &self,
        view: impl Fn(&str, &DomainState) -> T + Clone + Send + 'static,
    ) -> Result<Vec<(String, T)>, ApiError> {
        match self {
            Backend::Embedded(engine) => Ok(engine.read_all(view).await?),
            Backend::Kafka { edge, .. } => Ok(edge.read_all(view)),
        }
    }

    /// What `view` takes from one domain's state (`None` if it has no
    /// events yet): only that is copied, which matters for a large tenant.
    pub async fn read<T: Send + 'static>(
        &self,
        domain: &str,
        view: impl FnOnce(Option<&DomainState>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        match self {
            Backend::Embedded(engine) => Ok(engine.read(domain, view).await?),
            Backend::Kafka { edge, .. } => Ok(edge.read(domain, view)),
        }
    }

    /// Stops deciding and closes the log: the embedded engine writes what it
    /// decided and a last snapshot; the Kafka worker finishes its transaction
    /// and leaves the group.
    pub async fn shutdown(&self) -> Result<(), switchboard_live::EngineError> {
        match self {
            Backend::Embedded(engine) => engine.shutdown().await,
            Backend::Kafka { edge, worker } => {
                let (edge, worker) = (edge.clone(), worker.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(mut worker) = worker.lock().unwrap().take() {
                        worker.stop();
                    }
                    edge.shutdown();
                })
                .await;
                Ok(())
            }
        }
    }
}
