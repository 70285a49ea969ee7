//! The sink's Kafka consumer: read_committed, no offset commits to Kafka, and a *manual*
//! assignment (`assign()`) of every partition of the event topics at the offsets PostgreSQL holds.
//!
//! Why `assign()` rather than a subscription with a rebalance callback: the offsets live in
//! PostgreSQL, so the group coordinator has nothing to hand over, and a rebalance callback would
//! have to do blocking database I/O inside librdkafka's poll (and, on revoke, settle or drop the
//! open batch of partitions that another member may already be writing). One instance per sink
//! name reads all partitions instead: a batched multi-row upsert is far faster than the event
//! rate, the exactly-once guarantee comes from the database transaction rather than from group
//! membership, and a second instance started by mistake is fenced by the offset check in
//! `offsets.rs`, not trusted. Without group membership there is also no session or poll interval
//! to keep alive while PostgreSQL is down. Partitions added to a topic later are picked up by
//! [`partitions`] being re-read periodically. The group id (the sink name) only names the client.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::batch::{Offsets, TopicPartition};
use crate::config::KafkaArgs;

/// Publishes the lag of each partition from librdkafka's statistics: read_committed, so the
/// distance from the last stable offset to the next record the sink will consume.
pub struct SinkContext;

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::client_log::log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::client_log::error(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition >= 0 && p.ls_offset >= 0 && p.app_offset >= 0 {
                    let lag = (p.ls_offset - p.app_offset).max(0);
                    crate::metrics::CONSUMER_LAG.with_label_values(&[topic, &partition.to_string()]).set(lag);
                }
            }
        }
    }
}

impl ConsumerContext for SinkContext {}

pub type SinkConsumer = StreamConsumer<SinkContext>;

pub fn create(kafka: &KafkaArgs, sink: &str) -> anyhow::Result<SinkConsumer> {
    Ok(kafka
        .config_with(&[
            ("group.id", sink),
            ("client.id", sink),
            ("isolation.level", "read_committed"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            // Only when a stored offset no longer exists (retention deleted it): start over.
            ("auto.offset.reset", "earliest"),
            ("statistics.interval.ms", "5000"),
        ])?
        .create_with_context(SinkContext)?)
}

/// Every partition of `topics`, from the cluster metadata. Blocking (a metadata request).
pub fn partitions(consumer: &SinkConsumer, topics: &[String]) -> Result<BTreeSet<TopicPartition>, String> {
    let mut found = BTreeSet::new();
    for topic in topics {
        let metadata =
            consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|error| format!("metadata of {topic}: {error}"))?;
        let Some(described) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(format!("topic {topic} is not in the metadata"));
        };
        if let Some(error) = described.error() {
            return Err(format!("topic {topic}: {}", rdkafka::error::RDKafkaErrorCode::from(error)));
        }
        if described.partitions().is_empty() {
            return Err(format!("topic {topic} has no partitions (does it exist? `biometric-bridge topics create`)"));
        }
        found.extend(described.partitions().iter().map(|p| (topic.clone(), p.id())));
    }
    Ok(found)
}

/// `partitions`, each at its stored next offset, or the beginning when none is stored.
pub fn positioned(partitions: &BTreeSet<TopicPartition>, stored: &Offsets) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for tp in partitions {
        let offset = stored.get(tp).map_or(Offset::Beginning, |next| Offset::Offset(*next));
        tpl.add_partition_offset(&tp.0, tp.1, offset).expect("a valid offset");
    }
    tpl
}

/// The same partitions without offsets, for pause / resume.
pub fn list(partitions: &BTreeSet<TopicPartition>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    tpl
}
