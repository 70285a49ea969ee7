//! `dlq replay`: puts dead letters back where they came from, after a fix, so nothing rejected is
//! lost for good.
//!
//! A replayed record is the original: same key (so the same partition, with the same default
//! partitioner as the ingress), same payload bytes, the original headers in their order — minus
//! the dead-letter ones (`error-*`, `source-*`, an earlier `replayed-from`) — plus
//! `replayed-from: <dlq topic>/<partition>/<offset>`. If it fails again, the processor
//! dead-letters it again with that header, so the chain stays visible.
//!
//! Replaying the same dead letter twice is skipped, not just warned about: before producing,
//! the target topic is read (read_committed, from shortly before the oldest selected dead letter
//! was written — a replay can only come after it) for `replayed-from` headers, and a dead letter
//! already named by one is reported as skipped. A replay interrupted halfway can therefore simply
//! be run again. `--force` replays regardless. The check looks only in the topic being replayed
//! to, and only as far back as that topic's retention.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::letter::DeadLetter;
use super::read::{self, Start};
use crate::config::KafkaArgs;
use crate::kafka::headers;
use crate::shutdown::CancellationToken;

/// Headers the processor adds to a dead letter; they do not belong on the replayed record.
pub const DEAD_LETTER_HEADERS: [&str; 6] = [
    headers::ERROR_CLASS,
    headers::ERROR_MESSAGE,
    headers::SOURCE_TOPIC,
    headers::SOURCE_PARTITION,
    headers::SOURCE_OFFSET,
    headers::REPLAYED_FROM,
];

/// How far before a dead letter's own timestamp the already-replayed check starts reading the
/// target: room for clock skew between the processor's host and this one.
const CLOCK_SKEW_MS: i64 = 60 * 60 * 1_000;

/// The value of `replayed-from` for the dead letter `letter` of `dlq_topic`.
pub fn marker(dlq_topic: &str, letter: &DeadLetter) -> String {
    format!("{dlq_topic}/{}", letter.position())
}

/// The headers of the replayed record: the original ones, in order, then `replayed-from`.
pub fn replay_headers(letter: &DeadLetter, marker: &str) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out: Vec<(String, Option<Vec<u8>>)> =
        letter.headers.iter().filter(|(key, _)| !DEAD_LETTER_HEADERS.contains(&key.as_str())).cloned().collect();
    out.push((headers::REPLAYED_FROM.to_owned(), Some(marker.as_bytes().to_vec())));
    out
}

/// Where `letter` goes: `--to`, else its `source-topic` header.
pub fn target<'a>(letter: &'a DeadLetter, to: Option<&'a str>) -> Option<&'a str> {
    to.or_else(|| letter.header(headers::SOURCE_TOPIC))
}

/// Every `replayed-from` value in `topic` from `since_ms` (minus clock skew) on.
pub fn replayed_markers(kafka: &KafkaArgs, topic: &str, since_ms: i64, shutdown: &CancellationToken) -> anyhow::Result<HashSet<String>> {
    let mut found = HashSet::new();
    read::read_to_end(kafka, topic, Start::Timestamp(since_ms.saturating_sub(CLOCK_SKEW_MS).max(0)), shutdown, |message| {
        let letter = DeadLetter::from_message(message);
        if let Some(marker) = letter.header(headers::REPLAYED_FROM) {
            found.insert(marker.to_owned());
        }
    })?;
    Ok(found)
}

/// Per target topic, the earliest timestamp of the dead letters going there.
pub fn earliest_by_target<'a>(letters: &'a [DeadLetter], to: Option<&'a str>) -> BTreeMap<&'a str, i64> {
    let mut earliest = BTreeMap::new();
    for letter in letters {
        if let Some(topic) = target(letter, to) {
            let at = letter.timestamp_ms.unwrap_or(0);
            earliest.entry(topic).and_modify(|e: &mut i64| *e = (*e).min(at)).or_insert(at);
        }
    }
    earliest
}

/// The idempotent, acks=all producer of replays.
pub fn producer(kafka: &KafkaArgs) -> anyhow::Result<FutureProducer> {
    Ok(kafka
        .config_with(&[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("client.id", "biometric-bridge-dlq-replay"),
            ("message.max.bytes", &crate::kafka::MAX_RAW_RECORD_BYTES.to_string()),
        ])?
        .create()?)
}

/// Produces `letter` to `topic` and waits for the broker's acknowledgement.
pub async fn send(producer: &FutureProducer, topic: &str, letter: &DeadLetter, marker: &str) -> anyhow::Result<()> {
    let headers = replay_headers(letter, marker)
        .iter()
        .fold(OwnedHeaders::new(), |out, (key, value)| out.insert(Header { key, value: value.as_deref() }));
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(key) = letter.key.as_deref() {
        record = record.key(key);
    }
    if let Some(payload) = letter.payload.as_deref() {
        record = record.payload(payload);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(error, _)| anyhow::anyhow!("replaying {marker} to {topic}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::super::letter::tests::letter;
    use super::*;

    #[test]
    fn replay_keeps_the_original_headers_in_order_and_adds_the_marker() {
        let mut dead = letter(7, "invalid_json", 0);
        dead.headers.insert(2, ("replayed-from".into(), Some(b"dlq/0/1".to_vec())));
        let headers = replay_headers(&dead, "dlq/0/7");
        let keys: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["vendor", "delivery-id", "binary", "empty", "replayed-from"]);
        assert_eq!(headers[2].1.as_deref(), Some(&[0xff, 0x00][..]), "binary values unchanged");
        assert_eq!(headers[3].1, None, "null values stay null");
        assert_eq!(headers[4].1.as_deref(), Some(&b"dlq/0/7"[..]), "only the new marker");
    }

    #[test]
    fn the_target_is_the_override_or_the_source_topic() {
        let dead = letter(7, "invalid_json", 0);
        assert_eq!(target(&dead, None), Some("raw-webhooks"));
        assert_eq!(target(&dead, Some("elsewhere")), Some("elsewhere"));
        let mut orphan = dead.clone();
        orphan.headers.retain(|(k, _)| k != "source-topic");
        assert_eq!(target(&orphan, None), None);
        assert_eq!(marker("raw-webhooks.dlq", &dead), "raw-webhooks.dlq/0/7");
    }

    #[test]
    fn the_marker_check_starts_at_the_earliest_dead_letter_per_target() {
        let letters = [letter(1, "a", 5_000), letter(2, "a", 3_000), letter(3, "a", 9_000)];
        assert_eq!(earliest_by_target(&letters, None), [("raw-webhooks", 3_000)].into());
        assert_eq!(earliest_by_target(&letters, Some("x")), [("x", 3_000)].into());
    }
}
