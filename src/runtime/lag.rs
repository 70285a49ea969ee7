//! Consumer lag as an operator means it: per assigned partition, the records a read_committed
//! consumer could read that the group has not committed yet.
//!
//! librdkafka's own `consumer_lag` statistic cannot serve: it subtracts the committed offset
//! librdkafka *fetched at assignment*, and our offsets are committed through the producer's
//! transaction (`send_offsets_to_transaction`), which librdkafka's consumer never learns of. It
//! therefore counted the records consumed since the assignment (38 and 4 where the group's real
//! lag was 0), and on a fresh group, with nothing committed, it was -1 and never exported.
//!
//! So the engine tells this tracker what it committed (at assignment: what the group had; then
//! each transaction's offsets), the statistics callback tells it each partition's end (the last
//! stable offset for read_committed; the start offset too, for partitions with nothing committed,
//! which `auto.offset.reset=earliest` reads from the start), and the gauge is their difference.
//! The difference is what `kafka-consumer-groups --describe` reports as LAG.

use std::collections::HashMap;

use rdkafka::statistics::Statistics;

type Key = (String, i32);

/// What is known of one assigned partition.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Offsets {
    /// The group's committed offset (the next record to process); `None` while nothing is.
    committed: Option<i64>,
    /// The offset past the last readable record (last stable offset under read_committed).
    end: Option<i64>,
    /// The first offset still in the log (where an uncommitted partition starts reading).
    start: Option<i64>,
}

impl Offsets {
    /// The lag, once the end is known; never negative (the statistics may be a moment older than
    /// the latest commit).
    fn lag(&self) -> Option<i64> {
        let end = self.end?;
        let from = self.committed.or(self.start)?;
        Some((end - from).max(0))
    }
}

/// One per engine; its gauge series are those of the partitions it holds.
#[derive(Debug, Default)]
pub struct Lag {
    partitions: HashMap<Key, Offsets>,
}

impl Lag {
    /// Partitions newly assigned, with the group's committed offsets (`None`: nothing committed).
    pub fn assigned(&mut self, committed: impl IntoIterator<Item = (String, i32, Option<i64>)>) {
        for (topic, partition, offset) in committed {
            let key = (topic, partition);
            let entry = self.partitions.entry(key.clone()).or_default();
            entry.committed = offset;
            publish(&key, entry);
        }
    }

    /// Partitions given up: their series go with them, so a moved partition is reported once,
    /// by its new owner.
    pub fn revoked<'a>(&mut self, partitions: impl IntoIterator<Item = (&'a str, i32)>) {
        for (topic, partition) in partitions {
            if self.partitions.remove(&(topic.to_owned(), partition)).is_some() {
                let _ = crate::metrics::CONSUMER_LAG.remove_label_values(&[topic, &partition.to_string()]);
            }
        }
    }

    /// Offsets just committed with a transaction (next offset to consume, per partition).
    pub fn committed<'a>(&mut self, offsets: impl IntoIterator<Item = (&'a (String, i32), &'a i64)>) {
        for (key, offset) in offsets {
            if let Some(entry) = self.partitions.get_mut(key) {
                entry.committed = Some(*offset);
            }
        }
    }

    /// The ends and starts from librdkafka's statistics; refreshes every gauge.
    pub fn observe(&mut self, statistics: &Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                let Some(entry) = self.partitions.get_mut(&(topic.clone(), *partition)) else { continue };
                // -1001 (OFFSET_INVALID) until the first fetch answered.
                let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
                if end >= 0 {
                    entry.end = Some(end);
                }
                if p.lo_offset >= 0 {
                    entry.start = Some(p.lo_offset);
                }
            }
        }
        for (key, entry) in &self.partitions {
            publish(key, entry);
        }
    }

    /// The lag of one partition, when known.
    #[cfg(test)]
    pub fn of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partitions.get(&(topic.to_owned(), partition)).and_then(Offsets::lag)
    }
}

fn publish(key: &Key, offsets: &Offsets) {
    if let Some(lag) = offsets.lag() {
        crate::metrics::CONSUMER_LAG.with_label_values(&[&key.0, &key.1.to_string()]).set(lag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_end_past_the_committed_offset() {
        let offsets = Offsets { committed: Some(40), end: Some(42), start: Some(0) };
        assert_eq!(offsets.lag(), Some(2));
    }

    #[test]
    fn an_uncommitted_partition_lags_by_everything_still_in_the_log() {
        let offsets = Offsets { committed: None, end: Some(100), start: Some(30) };
        assert_eq!(offsets.lag(), Some(70));
    }

    #[test]
    fn lag_is_unknown_before_the_end_is_and_never_negative() {
        assert_eq!(Offsets { committed: Some(5), end: None, start: None }.lag(), None);
        assert_eq!(Offsets { committed: Some(50), end: Some(42), start: Some(0) }.lag(), Some(0));
    }

    #[test]
    fn a_commit_lowers_the_lag_and_a_revoke_forgets_the_partition() {
        let mut lag = Lag::default();
        lag.assigned([("lag-test-topic".to_owned(), 0, Some(10))]);
        lag.partitions.get_mut(&("lag-test-topic".to_owned(), 0)).unwrap().end = Some(25);
        assert_eq!(lag.of("lag-test-topic", 0), Some(15));
        let committed = HashMap::from([(("lag-test-topic".to_owned(), 0), 25_i64)]);
        lag.committed(&committed);
        assert_eq!(lag.of("lag-test-topic", 0), Some(0));
        lag.revoked([("lag-test-topic", 0)]);
        assert_eq!(lag.of("lag-test-topic", 0), None);
    }
}
