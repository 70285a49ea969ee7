//! Changelog-backed state stores, Kafka Streams style.
//!
//! Each task (input partition p) has its own in-memory table per store. Every changed key is
//! remembered, and at commit its latest value (or a tombstone) is sent to partition p of the
//! store's compacted changelog topic (`<application_id>-<store>-changelog`) in the same
//! transaction as the outputs and the input offsets. Writing once per key per transaction, not
//! once per update, is Kafka Streams' record cache: a user with many readings in one transaction
//! costs one changelog record. The changelog therefore holds exactly the
//! committed state: restoring it (read_committed, from the beginning) after a crash, an abort or a
//! rebalance yields the state that matches the committed offsets — never ahead, never behind.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::processor::store::KeyValueStore;

/// A change to send to the changelog: key, and the new value (`None`: tombstone).
pub type ChangelogRecord = (String, Option<Vec<u8>>);

/// One store's table for one task.
#[derive(Debug)]
pub struct ChangelogStore<V> {
    pub name: String,
    pub changelog_topic: String,
    pub partition: i32,
    /// Hashed with foldhash, not SipHash: a record looks up and marks several keys, and SipHash
    /// and the key comparisons of the ordered set of changed keys this had were large items of
    /// the processor's profile (BENCHMARKS.md: 30.0 → 26.9 CPU-µs per record without them).
    /// foldhash is seeded per process, so the keys (vendors' user ids) cannot be chosen to collide.
    map: HashMap<String, V, foldhash::fast::RandomState>,
    /// Keys changed since the last drain (sorted then, so changelog writes are deterministic).
    dirty: HashSet<String, foldhash::fast::RandomState>,
}

impl<V: Serialize + DeserializeOwned> ChangelogStore<V> {
    pub fn new(name: &str, changelog_topic: &str, partition: i32) -> Self {
        ChangelogStore {
            name: name.to_owned(),
            changelog_topic: changelog_topic.to_owned(),
            partition,
            map: HashMap::default(),
            dirty: HashSet::default(),
        }
    }

    /// The latest value (or a tombstone) of every key changed since the last drain, for the
    /// current transaction.
    pub fn drain_pending(&mut self) -> Vec<ChangelogRecord> {
        let mut keys: Vec<String> = std::mem::take(&mut self.dirty).into_iter().collect();
        keys.sort_unstable();
        keys.into_iter()
            .map(|key| {
                let value = self.map.get(&key).map(|value| serde_json::to_vec(value).expect("store values serialize"));
                (key, value)
            })
            .collect()
    }

    /// Remembers `key` for the next drain (its key copied only the first time).
    fn mark_changed(&mut self, key: &str) {
        if !self.dirty.contains(key) {
            self.dirty.insert(key.to_owned());
        }
    }

    /// Applies one changelog record during restore (no new changelog write).
    fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let key = String::from_utf8(key.to_vec()).map_err(|_| "changelog key is not UTF-8".to_owned())?;
        match value {
            Some(bytes) => {
                let value: V = serde_json::from_slice(bytes).map_err(|error| format!("changelog value for {key}: {error}"))?;
                self.map.insert(key, value);
            }
            None => {
                self.map.remove(&key);
            }
        }
        Ok(())
    }
}

impl<V: Serialize + DeserializeOwned> KeyValueStore<V> for ChangelogStore<V> {
    fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    fn put(&mut self, key: String, value: V) {
        self.mark_changed(&key);
        self.map.insert(key, value);
    }

    fn delete(&mut self, key: &str) {
        if self.map.remove(key).is_some() {
            self.mark_changed(key);
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        if self.map.contains_key(key) {
            self.mark_changed(key);
        }
        self.map.get_mut(key)
    }

    fn get_or_default(&mut self, key: String) -> &mut V
    where
        V: Default,
    {
        self.mark_changed(&key);
        self.map.entry(key).or_default()
    }

    fn keys_where(&self, expired: &dyn Fn(&V) -> bool) -> Vec<String> {
        self.map.iter().filter(|(_, v)| expired(v)).map(|(k, _)| k.clone()).collect()
    }

    fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.map.keys().filter(|key| key.starts_with(prefix)).cloned().collect()
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A task's store as the runtime handles it, whatever its value type: restored from its
/// changelog partition, drained into the transaction, sized for the metrics.
pub trait Restorable {
    fn changelog(&self) -> (&str, i32);
    fn apply_record(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String>;
    fn entries(&self) -> usize;
    fn store_name(&self) -> &str;
    /// The changed keys' records for the current transaction.
    fn drain(&mut self) -> Vec<ChangelogRecord>;
}

impl<V: Serialize + DeserializeOwned> Restorable for ChangelogStore<V> {
    fn changelog(&self) -> (&str, i32) {
        (&self.changelog_topic, self.partition)
    }
    fn apply_record(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        self.apply(key, value)
    }
    fn entries(&self) -> usize {
        self.map.len()
    }
    fn store_name(&self) -> &str {
        &self.name
    }
    fn drain(&mut self) -> Vec<ChangelogRecord> {
        self.drain_pending()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("corrupt changelog {topic}/{partition}: {message}")]
    Corrupt { topic: String, partition: i32, message: String },
}

/// Restores `stores` from their changelog partitions with `consumer` (read_committed, no group,
/// `enable.partition.eof=true`). The partitions of one changelog topic are restored together,
/// each read from the beginning until librdkafka reports its end (for read_committed: the last
/// stable offset). Logs progress every few seconds.
///
/// The topics' metadata is asked for first: assigned a partition of a topic it has not seen, the
/// consumer waits for the leader's discovery on a timer (measured: 1.1 s per changelog even when
/// empty, 3.3 s of every restart and rebalance with three stores, `scripts/bench-terra-downtime`).
pub fn restore(consumer: &BaseConsumer<RestoreContext>, stores: &mut [&mut dyn Restorable]) -> Result<(), RestoreError> {
    let mut topics: Vec<String> = stores.iter().map(|s| s.changelog().0.to_owned()).collect();
    topics.sort();
    topics.dedup();
    for topic in &topics {
        // A failure only costs the wait this avoids.
        if let Err(error) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            tracing::debug!(%error, topic, "No changelog metadata before restoring; the assignment will find it.");
        }
    }
    for topic in topics {
        let mut of_topic: Vec<&mut dyn Restorable> =
            stores.iter_mut().filter(|s| s.changelog().0 == topic).map(|s| &mut **s as &mut dyn Restorable).collect();
        restore_topic(consumer, &topic, &mut of_topic)?;
    }
    Ok(())
}

fn restore_topic(consumer: &BaseConsumer<RestoreContext>, topic: &str, stores: &mut [&mut dyn Restorable]) -> Result<(), RestoreError> {
    let started = Instant::now();
    let mut tpl = TopicPartitionList::new();
    let mut by_partition: HashMap<i32, usize> = HashMap::new();
    for (index, store) in stores.iter().enumerate() {
        let partition = store.changelog().1;
        tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
        by_partition.insert(partition, index);
    }
    consumer.assign(&tpl)?;
    let mut remaining: std::collections::HashSet<i32> = by_partition.keys().copied().collect();
    let mut applied = 0u64;
    let mut last_log = Instant::now();
    while !remaining.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let Some(index) = by_partition.get(&message.partition()) else { continue };
                stores[*index]
                    .apply_record(message.key().unwrap_or_default(), message.payload())
                    .map_err(|text| RestoreError::Corrupt { topic: topic.to_owned(), partition: message.partition(), message: text })?;
                applied += 1;
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                remaining.remove(&partition);
            }
            // Connection trouble is transient: librdkafka reconnects by itself.
            Some(Err(error)) if is_transient(&error) => {
                tracing::warn!(%error, topic, "Transient error while restoring; retrying.");
            }
            Some(Err(error)) => return Err(error.into()),
            None => {}
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            tracing::info!(
                topic,
                applied,
                partitions_left = remaining.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Restoring stores."
            );
            last_log = Instant::now();
        }
    }
    consumer.unassign()?;
    let elapsed = started.elapsed();
    // One observation per restore: its partitions were read together, so one wall time covers
    // them all (observing it per partition multiplied the sum by the partition count).
    if let Some(store) = stores.first() {
        crate::metrics::STORE_RESTORE_DURATION.with_label_values(&[store.store_name()]).observe(elapsed.as_secs_f64());
        crate::metrics::STORE_RESTORED_RECORDS.with_label_values(&[store.store_name()]).inc_by(applied);
    }
    let entries: usize = stores.iter().map(|s| s.entries()).sum();
    tracing::info!(
        topic,
        partitions = stores.len(),
        records = applied,
        entries,
        elapsed_ms = elapsed.as_millis() as u64,
        "Stores restored."
    );
    Ok(())
}

/// The restore consumer's context: end-of-partition is how restore knows it is done, not an
/// error worth logging.
pub struct RestoreContext;

impl rdkafka::ClientContext for RestoreContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::client_log::log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_))
            && error.rdkafka_error_code() != Some(rdkafka::error::RDKafkaErrorCode::PartitionEOF)
        {
            crate::kafka::client_log::error(&error, reason);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for RestoreContext {}

/// Errors librdkafka recovers from on its own (it keeps reconnecting and fetching).
fn is_transient(error: &KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::BrokerTransportFailure
                | Code::AllBrokersDown
                | Code::NetworkException
                | Code::RequestTimedOut
                | Code::OperationTimedOut
                | Code::LeaderNotAvailable
                | Code::NotLeaderForPartition
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_coalesced_per_key_until_drained() {
        let mut store: ChangelogStore<u32> = ChangelogStore::new("s", "s-changelog", 0);
        store.put("a".into(), 1);
        store.put("a".into(), 2);
        store.put("b".into(), 3);
        store.delete("b");
        store.delete("never-there");
        assert_eq!(store.drain_pending(), vec![("a".to_owned(), Some(b"2".to_vec())), ("b".to_owned(), None)]);
        assert!(store.drain_pending().is_empty());
    }

    #[test]
    fn changes_in_place_are_written_and_in_key_order() {
        let mut store: ChangelogStore<u32> = ChangelogStore::new("s", "s-changelog", 0);
        *store.get_or_default("z".into()) += 5;
        *store.get_or_default("z".into()) += 1;
        store.put("m".into(), 1);
        assert!(store.get_mut("absent").is_none());
        assert_eq!(store.drain_pending(), vec![("m".to_owned(), Some(b"1".to_vec())), ("z".to_owned(), Some(b"6".to_vec()))]);
        // A value changed in place after the drain is written again; one only read is not.
        *store.get_mut("m").unwrap() = 9;
        assert_eq!(store.get("z"), Some(&6));
        assert_eq!(store.drain_pending(), vec![("m".to_owned(), Some(b"9".to_vec()))]);
    }

    #[test]
    fn restore_applies_puts_and_tombstones() {
        let mut store: ChangelogStore<u32> = ChangelogStore::new("s", "s-changelog", 0);
        store.apply(b"a", Some(b"7")).unwrap();
        store.apply(b"b", Some(b"8")).unwrap();
        store.apply(b"b", None).unwrap();
        assert_eq!(store.get("a"), Some(&7));
        assert_eq!(store.get("b"), None);
        assert!(store.drain_pending().is_empty(), "restoring writes nothing back");
        assert!(store.apply(b"c", Some(b"not json")).is_err());
    }
}
