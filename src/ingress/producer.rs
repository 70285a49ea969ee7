//! Durable writes of raw webhooks to Kafka: the ingress answers 2xx only after this returns Ok.
//!
//! The producer is idempotent with `acks=all`, so an acknowledged record is on every in-sync
//! replica and never duplicated by librdkafka's own retries. `message.timeout.ms` equals the
//! produce timeout, and we stop waiting at the same moment: the vendor gets its 503 within
//! `PRODUCE_TIMEOUT_MS` even though librdkafka only scans for expired records about once a second.
//! A record may therefore still land after its 503; the vendor's retry then writes a copy, which
//! the processor's de-duplication removes. A circuit breaker fails fast while Kafka is down.
//!
//! Size: librdkafka refuses records over `message.max.bytes` (default 1 MB) and so does the
//! topic over `max.message.bytes` (default ~1 MB), while the ingress accepts bodies up to
//! `MAX_BODY_BYTES` (5 MiB). The producer limit is set from the body limit plus
//! [`RECORD_HEADROOM_BYTES`]; the topic needs `max.message.bytes` of at least that plus the
//! record-batch overhead (see [`required_topic_max_message_bytes`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;

use super::circuit::{CircuitBreaker, CircuitState};
use crate::config::KafkaArgs;

/// Room for the key and headers on top of the body. Header values copied from the request are
/// bounded by hyper's ~400 KiB header buffer; the key and delivery id are capped by the ingress.
pub const RECORD_HEADROOM_BYTES: usize = 512 * 1024;

/// The smallest topic `max.message.bytes` that holds every record this ingress may write: the
/// producer's `message.max.bytes` plus room for the record-batch framing, rounded up to MiB.
pub fn required_topic_max_message_bytes(max_body_bytes: usize) -> usize {
    const MIB: usize = 1024 * 1024;
    (max_body_bytes + RECORD_HEADROOM_BYTES + 1024).div_ceil(MIB) * MIB
}

/// Producer tuning (flags in `IngressArgs`).
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub topic: String,
    pub produce_timeout: Duration,
    pub linger_ms: u32,
    pub batch_size: u32,
    pub compression: String,
    /// The largest body the ingress accepts; sets `message.max.bytes`.
    pub max_body_bytes: usize,
    pub circuit_failure_threshold: u32,
    pub circuit_recovery: Duration,
}

/// Tracks whether any broker connection is up, from librdkafka's statistics (no extra requests).
#[derive(Default)]
pub struct ConnectivityContext {
    connected: Arc<AtomicBool>,
}

impl ClientContext for ConnectivityContext {
    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|broker| broker.nodeid >= 0 && broker.state == "UP");
        self.connected.store(up, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("circuit open")]
    CircuitOpen { retry_after: Duration },
    /// Kafka is down, slow or refusing for now: the vendor should retry later.
    #[error("kafka unavailable: {0}")]
    Unavailable(String),
    #[error("produce timed out")]
    Timeout,
    /// This record will never be accepted as configured (too large for the producer or topic).
    #[error("kafka refused the record: {0}")]
    Rejected(String),
}

/// Error codes that mean "this record, as configured, will never fit": retrying cannot help,
/// and the broker did answer, so they say nothing about Kafka being down.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
    )
}

pub struct RawProducer {
    producer: FutureProducer<ConnectivityContext>,
    connected: Arc<AtomicBool>,
    circuit: CircuitBreaker,
    settings: ProducerSettings,
}

impl RawProducer {
    pub fn new(kafka: &KafkaArgs, settings: ProducerSettings) -> anyhow::Result<RawProducer> {
        let timeout_ms = settings.produce_timeout.as_millis().max(1).to_string();
        let linger = settings.linger_ms.to_string();
        let batch = settings.batch_size.to_string();
        let max_message = (settings.max_body_bytes + RECORD_HEADROOM_BYTES).to_string();
        let context = ConnectivityContext::default();
        let connected = context.connected.clone();
        let producer: FutureProducer<ConnectivityContext> = kafka
            .config_with(&[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("linger.ms", &linger),
                ("batch.size", &batch),
                ("compression.type", &settings.compression),
                ("message.max.bytes", &max_message),
                ("message.timeout.ms", &timeout_ms),
                ("statistics.interval.ms", "1000"),
                ("client.id", "biometric-bridge-ingress"),
            ])?
            .create_with_context(context)?;
        let circuit = CircuitBreaker::new(settings.circuit_failure_threshold, settings.circuit_recovery);
        Ok(RawProducer { producer, connected, circuit, settings })
    }

    /// Writes one raw webhook and waits for the broker's acknowledgement, at most the produce
    /// timeout.
    pub async fn send(&self, key: &str, payload: &[u8], headers: OwnedHeaders) -> Result<(), ProduceError> {
        let attempt = self.circuit.try_acquire().map_err(|open| ProduceError::CircuitOpen { retry_after: open.retry_after })?;
        let started = Instant::now();
        let record = FutureRecord::to(&self.settings.topic).key(key).payload(payload).headers(headers);
        // Zero queue timeout: a full local queue is back-pressure to answer with 503 now, not a
        // reason to hold the request.
        let delivery = self.producer.send(record, Duration::ZERO);
        let result = match tokio::time::timeout(self.settings.produce_timeout, delivery).await {
            Err(_) => Err(ProduceError::Timeout),
            Ok(Ok(_delivered)) => Ok(()),
            Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _))) => Err(ProduceError::Timeout),
            Ok(Err((KafkaError::MessageProduction(code), _))) if is_permanent(code) => Err(ProduceError::Rejected(code.to_string())),
            Ok(Err((error, _))) => Err(ProduceError::Unavailable(error.to_string())),
        };
        crate::metrics::KAFKA_PRODUCE_DURATION.observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => attempt.succeeded(),
            // The broker (or librdkafka's own size check) answered: Kafka is up.
            Err(ProduceError::Rejected(reason)) => {
                tracing::error!(
                    error = %reason,
                    bytes = payload.len(),
                    "Kafka refused a raw webhook for good: raise the raw topic's max.message.bytes (and the producer's message.max.bytes) or lower MAX_BODY_BYTES."
                );
                attempt.succeeded();
            }
            Err(error) => {
                tracing::warn!(%error, "Writing a raw webhook to Kafka failed.");
                attempt.failed();
            }
        }
        result
    }

    pub fn circuit_state(&self) -> CircuitState {
        self.circuit.state()
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// A fatal producer error (e.g. the idempotent producer lost its sequence): librdkafka will
    /// not produce again, so the process must be restarted. Shown by `/ready`.
    pub fn fatal_error(&self) -> Option<String> {
        self.producer.client().fatal_error().map(|(code, reason)| format!("{code}: {reason}"))
    }

    /// How long a refused vendor should wait before retrying.
    /// How long a write may wait for the broker's acknowledgement.
    pub fn produce_timeout(&self) -> Duration {
        self.settings.produce_timeout
    }

    pub fn retry_after(&self) -> Duration {
        self.settings.produce_timeout.max(Duration::from_secs(1))
    }

    /// Waits for every queued record to be acknowledged (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_body_limit_needs_a_6_mib_topic() {
        assert_eq!(required_topic_max_message_bytes(5 * 1024 * 1024), 6 * 1024 * 1024);
        assert!(required_topic_max_message_bytes(1024) >= 1024 + RECORD_HEADROOM_BYTES);
    }

    #[test]
    fn only_size_and_format_errors_are_permanent() {
        assert!(is_permanent(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(!is_permanent(RDKafkaErrorCode::MessageTimedOut));
        assert!(!is_permanent(RDKafkaErrorCode::QueueFull));
        assert!(!is_permanent(RDKafkaErrorCode::NotEnoughReplicas));
    }
}
