//! Telling the processors: one erasure record on every partition of the ingress topic, so every
//! task deletes the person's state from its stores (`processor::erase`) after whatever it read
//! about them before.
//!
//! Telling consumers: one `USER_ERASED` event per output topic, keyed by the person's user id so
//! it lands on their partition after everything written about them before it. A consumer that
//! reads in order (NEUROS, the PostgreSQL sink) deletes what it holds about them when it gets
//! there; one re-reading the topic from the start meets the event again, after the data.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::places::Place;
use crate::config::{KafkaArgs, RegistryArgs};
use crate::event::avro::{EventCodec, register};
use crate::event::{BiometricEvent, Vendor};
use crate::topology::Topology;

/// The vendor a `USER_ERASED` event on `topic` names: one routed there (the field is required).
fn routed_vendor(topology: &Topology, topic: &str) -> Vendor {
    Vendor::ALL.into_iter().find(|&vendor| topology.route(vendor) == topic).unwrap_or(Vendor::Terra)
}

/// The `USER_ERASED` events for `user`, one per output topic.
pub fn events(topology: &Topology, user: &str, at_ms: i64) -> Vec<(String, BiometricEvent)> {
    topology
        .event_sinks
        .iter()
        .map(|topic| (topic.clone(), BiometricEvent::user_erased(user, routed_vendor(topology, topic), at_ms)))
        .collect()
}

/// Writes the erasure record to every partition of the ingress topic and waits for every
/// acknowledgement.
pub async fn tell_processors(
    producer: &FutureProducer,
    topology: &Topology,
    user: &str,
    vendor_users: &[(Vendor, String)],
) -> anyhow::Result<Place> {
    use rdkafka::producer::Producer as _;
    let topic = topology.ingress_topic().to_owned();
    let (client, reading) = (producer.clone(), topic.clone());
    let metadata = tokio::task::spawn_blocking(move || client.client().fetch_metadata(Some(&reading), Duration::from_secs(10))).await??;
    let partitions = metadata.topics().first().map_or(0, |found| found.partitions().len()) as i32;
    anyhow::ensure!(partitions > 0, "{topic} has no partitions (does it exist?)");
    let listed = crate::processor::erase::format_vendor_users(vendor_users);
    let erased_at = chrono::Utc::now().timestamp_millis().to_string();
    for partition in 0..partitions {
        let headers = rdkafka::message::OwnedHeaders::new();
        let headers = crate::kafka::headers::with(headers, crate::kafka::headers::ERASE_USER, user);
        let headers = crate::kafka::headers::with(headers, crate::kafka::headers::ERASE_VENDOR_USERS, &listed);
        let headers = crate::kafka::headers::with(headers, crate::kafka::headers::ERASED_AT, &erased_at);
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).partition(partition).headers(headers);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(error, _)| anyhow::anyhow!("writing the erasure record to {topic}/{partition}: {error}"))?;
    }
    Ok(Place::written(
        "stores",
        partitions as u64,
        format!("erasure record on every partition of {topic} ({partitions}): each task deletes the person's state when it reaches it"),
    ))
}

/// The erase's producer: acks=all, idempotent.
pub fn producer(kafka: &KafkaArgs) -> anyhow::Result<FutureProducer> {
    kafka
        .config_with(&[("acks", "all"), ("enable.idempotence", "true"), ("client.id", "biometric-bridge-users-erase")])?
        .create()
        .context("creating the Kafka producer")
}

/// Writes the events and waits for every broker acknowledgement.
pub async fn tell_consumers(producer: &FutureProducer, registry: &RegistryArgs, topology: &Topology, user: &str) -> anyhow::Result<Place> {
    let settings = registry.settings()?;
    let events = events(topology, user, chrono::Utc::now().timestamp_millis());
    for (topic, event) in &events {
        // Registering is idempotent: the processor registered the same schema under this subject.
        let id =
            register(&settings, &format!("{topic}-value")).await.with_context(|| format!("registering the event schema for {topic}"))?;
        let payload = EventCodec::new(id).encode(event)?;
        let record = FutureRecord::to(topic).key(user.as_bytes()).payload(&payload).headers(crate::kafka::headers::event_headers(event));
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(error, _)| anyhow::anyhow!("writing USER_ERASED to {topic}: {error}"))?;
    }
    let topics: Vec<&str> = events.iter().map(|(topic, _)| topic.as_str()).collect();
    Ok(Place::written("kafka.user_erased_events", events.len() as u64, format!("consumers told on {}", topics.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_topic_gets_one_user_erased_event_naming_a_vendor_routed_there() {
        let topology = Topology::parse(include_str!("../../topologies/biometric.toml"), "biometric.toml").unwrap();
        let events = events(&topology, "user-9", 1_000);
        let topics: Vec<&str> = events.iter().map(|(topic, _)| topic.as_str()).collect();
        assert_eq!(topics, ["terra-biometric-events", "biometric-events"]);
        for (topic, event) in &events {
            assert_eq!((event.kind.symbol(), event.user_id.as_str(), event.vendor_user_id.as_str()), ("USER_ERASED", "user-9", ""));
            assert_eq!(topology.route(event.vendor), topic);
            assert!(event.hrv_rmssd_ms.is_none() && event.triggers.is_empty());
        }
        assert_ne!(events[0].1.event_id, events[1].1.event_id);
        // It encodes against the schema (the symbol is in it).
        EventCodec::new(1).encode(&events[0].1).unwrap();
    }
}
