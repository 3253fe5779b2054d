//! `switchboard kafka init`: create the layout's topics, or check that the
//! ones already there match it.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::layout::{TopicLayout, TopicSpec};
use crate::Error;

const TIMEOUT: Duration = Duration::from_secs(30);

/// What `init` found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    /// The topic did not exist and was created.
    Created,
    /// The topic existed and matches the layout.
    Matches,
}

/// The result of [`init`]: one line per topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Each topic with what happened to it, in layout order.
    pub topics: Vec<(TopicSpec, TopicOutcome)>,
}

impl std::fmt::Display for InitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (spec, outcome) in &self.topics {
            let what = match outcome {
                TopicOutcome::Created => "created",
                TopicOutcome::Matches => "exists and matches",
            };
            writeln!(
                f,
                "{:<10} {} ({} partitions, replication {}): {what}",
                format!("{:?}", spec.role).to_lowercase(),
                spec.name,
                spec.partitions,
                spec.replication
            )?;
        }
        Ok(())
    }
}

/// Makes an admin client for `brokers`.
fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, Error> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4")
        .create()
        .map_err(|source| Error::client("connect an admin client", source))
}

/// Creates every topic of `layout` that is missing and checks every one that
/// exists: partition count, replication factor and the configuration the
/// layout sets. A mismatch is refused with [`Error::LayoutMismatch`] naming
/// the topic and the difference, and nothing is changed: repartitioning
/// `commands` and `events` would move routing domains between partitions
/// and must be a deliberate migration, not a side effect of start-up.
pub async fn init(brokers: &str, layout: &TopicLayout) -> Result<InitReport, Error> {
    layout.validate().map_err(Error::InvalidLayout)?;
    let admin = admin(brokers)?;
    let specs = layout.specs();
    let existing = existing_topics(&admin, &specs)?;

    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let mut report = InitReport { topics: Vec::new() };
    for spec in &specs {
        let shape = match existing.get(&spec.name) {
            Some(&shape) => shape,
            None if create(&admin, &options, spec).await? => {
                // Done means usable: wait until the cluster's metadata shows
                // the new topic, or a client started right after would not
                // find it.
                shape_when_visible(&admin, spec).await?;
                report.topics.push((spec.clone(), TopicOutcome::Created));
                continue;
            }
            // Someone else created it since we looked (or the metadata we
            // read was stale): check it like any existing topic.
            None => shape_when_visible(&admin, spec).await?,
        };
        check_shape(spec, shape.0, shape.1)?;
        check_config(&admin, &options, spec).await?;
        report.topics.push((spec.clone(), TopicOutcome::Matches));
    }
    Ok(report)
}

/// The partition count and replication of a topic the broker says exists,
/// waiting for the metadata to show it.
async fn shape_when_visible(admin: &AdminClient<DefaultClientContext>, spec: &TopicSpec) -> Result<(i32, i32), Error> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(&shape) = existing_topics(admin, std::slice::from_ref(spec))?.get(&spec.name) {
            return Ok(shape);
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::MissingTopic(spec.name.clone()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates one topic as `spec` describes it: `true` if this call created it,
/// `false` if a topic of that name already existed.
async fn create(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    spec: &TopicSpec,
) -> Result<bool, Error> {
    let topic = spec.config.iter().fold(
        NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(spec.replication)),
        |topic, (key, value)| topic.set(key, value),
    );
    let results = admin.create_topics([&topic], options).await.map_err(|e| Error::client("create topics", e))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((name, code))) => {
            Err(Error::Broker { action: format!("create topic {name}"), reason: code.to_string() })
        }
        None => Err(Error::Broker { action: format!("create topic {}", spec.name), reason: "no answer".into() }),
    }
}

/// Creates `spec`'s topic if it does not exist (tests and tools that need a
/// single topic rather than a whole layout).
pub async fn create_topic(brokers: &str, spec: &TopicSpec) -> Result<(), Error> {
    let admin = admin(brokers)?;
    create(&admin, &AdminOptions::new().operation_timeout(Some(TIMEOUT)), spec).await.map(|_| ())
}

/// Partition count and replication factor of every topic of `specs` that
/// exists, by name.
fn existing_topics(
    admin: &AdminClient<DefaultClientContext>,
    specs: &[TopicSpec],
) -> Result<HashMap<String, (i32, i32)>, Error> {
    let metadata =
        admin.inner().fetch_metadata(None, TIMEOUT).map_err(|e| Error::client("read cluster metadata", e))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| specs.iter().any(|s| s.name == t.name()) && t.error().is_none())
        .map(|t| {
            let replication = t.partitions().first().map_or(0, |p| p.replicas().len() as i32);
            (t.name().to_owned(), (t.partitions().len() as i32, replication))
        })
        .collect())
}

fn check_shape(spec: &TopicSpec, partitions: i32, replication: i32) -> Result<(), Error> {
    if partitions != spec.partitions {
        return Err(Error::LayoutMismatch {
            topic: spec.name.clone(),
            problem: format!(
                "it has {partitions} partitions but the configuration asks for {}; set [kafka.topics] partitions = {partitions} to use it as it is, or choose new topic names",
                spec.partitions
            ),
        });
    }
    if replication != spec.replication {
        return Err(Error::LayoutMismatch {
            topic: spec.name.clone(),
            problem: format!(
                "it has replication factor {replication} but the configuration asks for {}; set [kafka.topics] replication = {replication} or reassign its replicas first",
                spec.replication
            ),
        });
    }
    Ok(())
}

async fn check_config(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    spec: &TopicSpec,
) -> Result<(), Error> {
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(&spec.name)], options)
        .await
        .map_err(|e| Error::client("describe topic configuration", e))?;
    let resource = described
        .into_iter()
        .next()
        .ok_or_else(|| Error::Broker {
            action: format!("describe topic {}", spec.name),
            reason: "the broker returned no configuration".into(),
        })?
        .map_err(|code| Error::Broker { action: format!("describe topic {}", spec.name), reason: code.to_string() })?;
    for (key, wanted) in &spec.config {
        let actual = resource.get(key).and_then(|entry| entry.value.clone()).unwrap_or_default();
        if actual != *wanted {
            return Err(Error::LayoutMismatch {
                topic: spec.name.clone(),
                problem: format!(
                    "its {key} is {actual:?} but Switchboard needs {wanted:?}; change it with kafka-configs --alter --add-config {key}={wanted}"
                ),
            });
        }
    }
    Ok(())
}
