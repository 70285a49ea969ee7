//! Outputs that the broker would refuse for their size are never sent.
//!
//! An output larger than its topic's `max.message.bytes` fails on the broker, which makes the
//! whole transaction abortable: the processor aborts, rewinds to the same record, and fails
//! again (38 aborts in 18 s, every partition stuck, when a 2.5 MB Terra `reference_id` was
//! copied into an event). Identifiers are bounded at normalization, so events stay small; what
//! remains is topics configured apart from each other (a DLQ created at the broker's 1 MB default
//! beside a 6 MiB raw topic). So each record's outputs are checked against the limits the broker
//! reported at start, before any is sent:
//! - an event, pending fetch or retry that does not fit: the record is dead-lettered instead
//!   (`output_too_large`) and the transaction goes on;
//! - a dead letter that does not fit: it is written without its payload (header
//!   `payload-omitted`), pointing at the source record, which still holds the bytes.

use std::collections::HashMap;

use rdkafka::message::Headers;

use super::{Output, Pipeline, Record};
use crate::kafka::headers;

/// Dead-letter class: an output of the record would exceed its topic's maximum message size.
pub const OUTPUT_TOO_LARGE: &str = "output_too_large";

/// Bytes a record needs beyond its key, value and headers (record and batch framing).
const RECORD_OVERHEAD: usize = 128;

/// The largest record each output topic takes.
#[derive(Debug, Clone)]
pub struct TopicLimits {
    by_topic: HashMap<String, usize>,
    /// For topics the broker did not describe (and the producer's own `message.max.bytes`).
    default: usize,
}

impl TopicLimits {
    pub fn new(by_topic: HashMap<String, usize>, default: usize) -> TopicLimits {
        TopicLimits { by_topic, default }
    }

    fn limit(&self, topic: &str) -> usize {
        self.by_topic.get(topic).copied().unwrap_or(self.default).min(self.default)
    }

    fn fits(&self, output: &Output) -> bool {
        size(output) <= self.limit(&output.topic)
    }
}

/// An upper bound of the record's size on the wire, uncompressed.
fn size(output: &Output) -> usize {
    let headers: usize = output.headers.iter().map(|header| header.key.len() + header.value.map_or(0, <[u8]>::len) + 10).sum();
    output.key.as_ref().map_or(0, Vec::len) + output.payload.len() + headers + RECORD_OVERHEAD
}

impl Pipeline {
    /// `outputs` of `record`, made to fit their topics (see the module docs).
    pub fn fit_outputs(&self, record: &Record<'_>, outputs: Vec<Output>, limits: &TopicLimits) -> Vec<Output> {
        if outputs.iter().all(|output| limits.fits(output)) {
            return outputs;
        }
        let dlq = &self.topology.dlq_topic;
        let outputs = match outputs.iter().find(|output| &output.topic != dlq && !limits.fits(output)) {
            Some(too_large) => {
                let message = format!("an output for {} would be {} bytes, more than the topic takes", too_large.topic, size(too_large));
                vec![self.dead_letter(record, OUTPUT_TOO_LARGE, &message)]
            }
            None => outputs,
        };
        outputs.into_iter().map(|output| if limits.fits(&output) { output } else { without_payload(output) }).collect()
    }
}

/// A dead letter without its payload, saying so: the source record (named by the
/// `source-topic/partition/offset` headers) still holds the bytes.
fn without_payload(mut output: Output) -> Output {
    tracing::warn!(topic = %output.topic, bytes = output.payload.len(), "Dead letter too large for its topic; written without its payload.");
    let omitted = output.payload.len().to_string();
    output.headers = headers::with(output.headers, headers::PAYLOAD_OMITTED, &omitted);
    output.payload = Vec::new();
    output
}

#[cfg(test)]
mod tests {
    use rdkafka::message::OwnedHeaders;

    use super::*;
    use crate::topology::{DEFAULT_TOPOLOGY, Topology};

    fn pipeline() -> Pipeline {
        Pipeline::new(Topology::parse(DEFAULT_TOPOLOGY, "t").unwrap(), &HashMap::new())
    }

    fn record(payload: &[u8]) -> Record<'_> {
        Record {
            topic: "raw-webhooks",
            partition: 3,
            offset: 42,
            key: Some(b"terra:u"),
            payload: Some(payload),
            headers: None,
            timestamp_ms: None,
            at_rest: None,
        }
    }

    fn output(topic: &str, bytes: usize) -> Output {
        Output {
            topic: topic.to_owned(),
            key: None,
            payload: vec![b'x'; bytes],
            headers: OwnedHeaders::new(),
            received_at_ms: None,
            seal_for: None,
        }
    }

    #[test]
    fn outputs_that_fit_pass_unchanged() {
        let limits = TopicLimits::new(HashMap::from([("biometric-events".to_owned(), 10_000)]), 6 << 20);
        let fitted = pipeline().fit_outputs(&record(b"{}"), vec![output("biometric-events", 500)], &limits);
        assert_eq!(fitted.len(), 1);
        assert_eq!(fitted[0].payload.len(), 500);
    }

    #[test]
    fn an_event_too_large_dead_letters_the_record() {
        let limits = TopicLimits::new(HashMap::from([("biometric-events".to_owned(), 1_000)]), 6 << 20);
        let fitted = pipeline().fit_outputs(
            &record(b"{\"a\":1}"),
            vec![output("biometric-events", 100), output("biometric-events", 5_000)],
            &limits,
        );
        assert_eq!(fitted.len(), 1);
        assert_eq!(fitted[0].topic, "raw-webhooks.dlq");
        assert_eq!(fitted[0].payload, b"{\"a\":1}");
        let class = fitted[0].headers.iter().find(|h| h.key == headers::ERROR_CLASS).and_then(|h| h.value);
        assert_eq!(class, Some(OUTPUT_TOO_LARGE.as_bytes()));
    }

    #[test]
    fn a_dead_letter_too_large_loses_its_payload_not_its_place() {
        let limits = TopicLimits::new(HashMap::from([("raw-webhooks.dlq".to_owned(), 1 << 20)]), 6 << 20);
        let body = vec![b'x'; 2 << 20];
        let letter = pipeline().dead_letter(&record(&body), "invalid_json", "not JSON");
        let fitted = pipeline().fit_outputs(&record(&body), vec![letter], &limits);
        assert!(fitted[0].payload.is_empty());
        let omitted = fitted[0].headers.iter().find(|h| h.key == headers::PAYLOAD_OMITTED).and_then(|h| h.value);
        assert_eq!(omitted, Some((2usize << 20).to_string().as_bytes()));
        let offset = fitted[0].headers.iter().find(|h| h.key == headers::SOURCE_OFFSET).and_then(|h| h.value);
        assert_eq!(offset, Some(&b"42"[..]));
    }
}
