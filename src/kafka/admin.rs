//! `topics create`: creates every topic the topology needs and checks the ones that exist.
//!
//! Idempotent: an existing topic is not an error, but an existing topic that differs from the
//! topology (partition count, replication, a topic config) is reported as drift and the command
//! fails, because a wrong partition count silently breaks co-partitioning of state, and a changelog
//! without `cleanup.policy=compact` grows forever.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::config::KafkaArgs;
use crate::topology::TopicSpec;

/// What `ensure_topics` found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicStatus {
    Created,
    Exists,
    /// Exists but differs; each string says how.
    Drift(Vec<String>),
}

pub fn admin_client(kafka: &KafkaArgs) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(kafka.config_with(&[])?.create()?)
}

/// Creates missing topics, then checks every topic against its spec.
pub async fn ensure_topics(kafka: &KafkaArgs, topics: &[TopicSpec]) -> anyhow::Result<Vec<(String, TopicStatus)>> {
    let admin = admin_client(kafka)?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));

    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            topic.configs.iter().fold(
                NewTopic::new(&topic.name, topic.partitions, TopicReplication::Fixed(topic.replication_factor)),
                |new, (key, value)| new.set(key, value),
            )
        })
        .collect();
    let results = admin.create_topics(new_topics.iter(), &options).await?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("could not create topic {name}: {code}"),
        }
    }

    let mut report = Vec::new();
    for topic in topics {
        let drift = check_topic(&admin, topic).await?;
        let status = if !drift.is_empty() {
            TopicStatus::Drift(drift)
        } else if created.contains(&topic.name) {
            TopicStatus::Created
        } else {
            TopicStatus::Exists
        };
        report.push((topic.name.clone(), status));
    }
    Ok(report)
}

/// Sets the topology's configs on existing topics (`topics create --apply-configs`). Kafka's
/// AlterConfigs replaces a topic's whole config, so settings not in the topology return to the
/// broker defaults: the topology is the source of truth. Partition counts are not touched (they
/// cannot shrink, and growing them moves users between tasks).
pub async fn apply_configs(kafka: &KafkaArgs, topics: &[&TopicSpec]) -> anyhow::Result<()> {
    let admin = admin_client(kafka)?;
    let configs: Vec<AlterConfig<'_>> = topics
        .iter()
        .map(|topic| topic.configs.iter().fold(AlterConfig::new(ResourceSpecifier::Topic(&topic.name)), |alter, (k, v)| alter.set(k, v)))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    for result in admin.alter_configs(configs.iter(), &options).await? {
        if let Err((resource, code)) = result {
            anyhow::bail!("could not alter the configs of {resource:?}: {code}");
        }
    }
    Ok(())
}

/// Differences between the topic on the broker and its spec.
async fn check_topic(admin: &AdminClient<DefaultClientContext>, spec: &TopicSpec) -> anyhow::Result<Vec<String>> {
    let mut drift = Vec::new();
    // A topic created a moment ago may not be in the broker's metadata yet: ask again briefly.
    let mut attempts = 0;
    let metadata = loop {
        let metadata = admin.inner().fetch_metadata(Some(&spec.name), Duration::from_secs(10))?;
        let error = metadata.topics().iter().find(|t| t.name() == spec.name).and_then(|t| t.error());
        match error.map(RDKafkaErrorCode::from) {
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::LeaderNotAvailable) if attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(code) => anyhow::bail!("topic {}: {code}", spec.name),
            None => break metadata,
        }
    };
    let Some(topic) = metadata.topics().iter().find(|t| t.name() == spec.name) else {
        anyhow::bail!("topic {} is not in the broker's metadata", spec.name);
    };
    let partitions = topic.partitions().len() as i32;
    if partitions != spec.partitions {
        drift.push(format!("has {partitions} partitions, the topology says {}", spec.partitions));
    }
    if let Some(replicas) = topic.partitions().first().map(|p| p.replicas().len() as i32)
        && replicas != spec.replication_factor
    {
        drift.push(format!("has replication factor {replicas}, the topology says {}", spec.replication_factor));
    }

    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = admin.describe_configs([&ResourceSpecifier::Topic(&spec.name)], &options).await?;
    let actual: BTreeMap<String, Option<String>> = match described.into_iter().next() {
        Some(Ok(resource)) => resource.entries.into_iter().map(|entry| (entry.name, entry.value)).collect(),
        Some(Err(code)) => anyhow::bail!("describe configs of {}: {code}", spec.name),
        None => BTreeMap::new(),
    };
    for (key, wanted) in &spec.configs {
        let found = actual.get(key).cloned().flatten();
        if found.as_deref() != Some(wanted.as_str()) {
            drift.push(format!("{key} is {}, the topology says {wanted}", found.as_deref().unwrap_or("unset")));
        }
    }
    Ok(drift)
}

/// The value of topic config `key` for each of `topics` that exists and sets it (the broker's
/// effective value, defaults included). Missing topics are left out.
pub async fn topic_config(kafka: &KafkaArgs, topics: &[&str], key: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let admin = admin_client(kafka)?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let resources: Vec<ResourceSpecifier<'_>> = topics.iter().map(|topic| ResourceSpecifier::Topic(topic)).collect();
    let mut found = BTreeMap::new();
    for (topic, described) in topics.iter().zip(admin.describe_configs(resources.iter(), &options).await?) {
        if let Ok(resource) = described
            && let Some(value) = resource.entries.into_iter().find(|entry| entry.name == key).and_then(|entry| entry.value)
        {
            found.insert((*topic).to_owned(), value);
        }
    }
    Ok(found)
}
