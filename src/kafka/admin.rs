//! `topics create`: creates every topic the topology needs and checks the ones that exist.
//!
//! Idempotent: an existing topic is not an error, but an existing topic that differs from the
//! topology (partition count, replication, a topic config) is reported as drift and the command
//! fails, because a wrong partition count silently breaks co-partitioning of state, and a changelog
//! without `cleanup.policy=compact` grows forever.
//!
//! Replication is decided against the cluster: `"auto"` topics get min(3, brokers) copies and
//! `min.insync.replicas` 2 once they have 3, and the report warns about topics that a broker loss
//! could lose records from (fewer than 3 copies on 3+ brokers, or 3+ copies with an in-sync
//! minimum below 2, where acks=all means "one broker has it").

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;

use super::client_log::Throttled;
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

pub fn admin_client(kafka: &KafkaArgs) -> anyhow::Result<AdminClient<Throttled>> {
    Ok(kafka.config_with(&[])?.create_with_context(Throttled)?)
}

/// What `ensure_topics` did, per topic, and what it warns about.
#[derive(Debug, Clone)]
pub struct TopicsReport {
    /// Brokers in the cluster's metadata, which `"auto"` replication followed.
    pub brokers: i32,
    pub topics: Vec<(String, TopicStatus)>,
    /// Topics that are as the topology says but could lose records when a broker fails.
    pub warnings: Vec<String>,
}

/// The topology's topics as they are to be on this cluster: replication and configs resolved.
struct Resolved<'a> {
    spec: &'a TopicSpec,
    replication_factor: i32,
    configs: BTreeMap<String, String>,
}

fn brokers(admin: &AdminClient<Throttled>) -> anyhow::Result<i32> {
    let metadata = admin.inner().fetch_metadata(None, Duration::from_secs(10))?;
    Ok(metadata.brokers().len().max(1) as i32)
}

fn resolve<'a>(topics: &'a [TopicSpec], brokers: i32) -> Vec<Resolved<'a>> {
    topics
        .iter()
        .map(|spec| {
            let (replication_factor, configs) = spec.on_cluster(brokers);
            Resolved { spec, replication_factor, configs }
        })
        .collect()
}

/// Creates missing topics, then checks every topic against its spec.
pub async fn ensure_topics(kafka: &KafkaArgs, topics: &[TopicSpec]) -> anyhow::Result<TopicsReport> {
    let admin = admin_client(kafka)?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let brokers = brokers(&admin)?;
    let resolved = resolve(topics, brokers);

    let new_topics: Vec<NewTopic<'_>> = resolved
        .iter()
        .map(|topic| {
            topic.configs.iter().fold(
                NewTopic::new(&topic.spec.name, topic.spec.partitions, TopicReplication::Fixed(topic.replication_factor)),
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

    let mut report = TopicsReport { brokers, topics: Vec::new(), warnings: Vec::new() };
    for topic in &resolved {
        let (drift, warnings) = check_topic(&admin, topic, brokers).await?;
        let name = &topic.spec.name;
        let status = if !drift.is_empty() {
            TopicStatus::Drift(drift)
        } else if created.contains(name) {
            TopicStatus::Created
        } else {
            TopicStatus::Exists
        };
        report.topics.push((name.clone(), status));
        report.warnings.extend(warnings.into_iter().map(|warning| format!("{name}: {warning}")));
    }
    Ok(report)
}

/// Sets the topology's configs on existing topics (`topics create --apply-configs`). Kafka's
/// AlterConfigs replaces a topic's whole config, so settings not in the topology return to the
/// broker defaults: the topology is the source of truth. Partition counts are not touched (they
/// cannot shrink, and growing them moves users between tasks).
pub async fn apply_configs(kafka: &KafkaArgs, topics: &[TopicSpec]) -> anyhow::Result<()> {
    let admin = admin_client(kafka)?;
    let resolved = resolve(topics, brokers(&admin)?);
    let configs: Vec<AlterConfig<'_>> = resolved
        .iter()
        .map(|topic| {
            topic.configs.iter().fold(AlterConfig::new(ResourceSpecifier::Topic(&topic.spec.name)), |alter, (k, v)| alter.set(k, v))
        })
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    for result in admin.alter_configs(configs.iter(), &options).await? {
        if let Err((resource, code)) = result {
            anyhow::bail!("could not alter the configs of {resource:?}: {code}");
        }
    }
    Ok(())
}

/// Differences between the topic on the broker and its spec, and warnings about its durability.
async fn check_topic(admin: &AdminClient<Throttled>, resolved: &Resolved<'_>, brokers: i32) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let spec = resolved.spec;
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
    let replicas = topic.partitions().first().map_or(0, |p| p.replicas().len() as i32);
    if replicas != resolved.replication_factor {
        let wanted = match spec.replication_factor {
            crate::topology::Replicas::Auto => format!("{} (\"auto\" on {brokers} brokers)", resolved.replication_factor),
            crate::topology::Replicas::Fixed(count) => count.to_string(),
        };
        drift.push(format!("has replication factor {replicas}, the topology says {wanted}"));
    }

    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = admin.describe_configs([&ResourceSpecifier::Topic(&spec.name)], &options).await?;
    let actual: BTreeMap<String, Option<String>> = match described.into_iter().next() {
        Some(Ok(resource)) => resource.entries.into_iter().map(|entry| (entry.name, entry.value)).collect(),
        Some(Err(code)) => anyhow::bail!("describe configs of {}: {code}", spec.name),
        None => BTreeMap::new(),
    };
    for (key, wanted) in &resolved.configs {
        let found = actual.get(key).cloned().flatten();
        if found.as_deref() != Some(wanted.as_str()) {
            drift.push(format!("{key} is {}, the topology says {wanted}", found.as_deref().unwrap_or("unset")));
        }
    }
    let min_insync = actual.get("min.insync.replicas").cloned().flatten().and_then(|value| value.parse().ok()).unwrap_or(1);
    Ok((drift, durability_warnings(brokers, replicas, min_insync)))
}

/// Why a topic with `replicas` copies and this in-sync minimum could lose acknowledged records.
pub fn durability_warnings(brokers: i32, replicas: i32, min_insync: i32) -> Vec<String> {
    let mut warnings = Vec::new();
    if brokers >= 3 && replicas < 3 {
        warnings.push(format!(
            "replication factor {replicas} on a cluster of {brokers} brokers: losing a broker can lose acknowledged records (use 3, or \"auto\")"
        ));
    }
    if replicas >= 3 && min_insync < 2 {
        warnings.push(format!(
            "min.insync.replicas {min_insync} with {replicas} copies: acks=all then means one broker has the record (set 2; `topics create --apply-configs` does)"
        ));
    }
    warnings
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

/// A topic's `max.message.bytes` as the broker reports it (its default included), or `None` when
/// the topic does not exist.
pub async fn topic_max_message_bytes(kafka: &KafkaArgs, topic: &str) -> anyhow::Result<Option<usize>> {
    let admin = admin_client(kafka)?;
    // The broker describes an unknown topic as one with no configs, so existence comes from the
    // metadata (no topic is auto-created: the stack and the README turn that off).
    let exists = tokio::task::spawn_blocking({
        let topic = topic.to_owned();
        move || {
            let metadata = admin.inner().fetch_metadata(Some(&topic), Duration::from_secs(10));
            // Only "unknown topic" means missing: a leader election must not stop a start.
            let unknown = |t: &rdkafka::metadata::MetadataTopic| {
                t.error().map(RDKafkaErrorCode::from) == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
            };
            metadata.map(|m| m.topics().first().is_some_and(|t| !unknown(t)))
        }
    })
    .await?;
    if !exists? {
        return Ok(None);
    }
    let found = topic_config(kafka, &[topic], "max.message.bytes").await?;
    let value = found.get(topic).ok_or_else(|| anyhow::anyhow!("the broker did not report {topic}'s max.message.bytes"))?;
    Ok(Some(value.parse()?))
}

#[cfg(test)]
mod tests {
    use super::durability_warnings;

    #[test]
    fn topics_a_broker_loss_could_lose_records_from_are_warned_about() {
        assert!(durability_warnings(1, 1, 1).is_empty(), "a single-node cluster has no better choice");
        assert!(durability_warnings(3, 3, 2).is_empty());
        let single_copy = durability_warnings(3, 1, 1);
        assert_eq!(single_copy.len(), 1);
        assert!(single_copy[0].contains("replication factor 1 on a cluster of 3 brokers"), "{single_copy:?}");
        let weak_isr = durability_warnings(3, 3, 1);
        assert!(weak_isr[0].contains("min.insync.replicas 1"), "{weak_isr:?}");
    }
}
