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

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// Tracks which brokers librdkafka holds an open connection to, from its statistics (every
/// second, no extra requests): whether any is up, and which node ids.
#[derive(Default)]
pub struct ConnectivityContext {
    connected: Arc<AtomicBool>,
    up_brokers: Arc<Mutex<BTreeSet<i32>>>,
}

impl ClientContext for ConnectivityContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::client_log::log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::client_log::error(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let up: BTreeSet<i32> =
            statistics.brokers.values().filter(|broker| broker.nodeid >= 0 && broker.state == "UP").map(|broker| broker.nodeid).collect();
        self.connected.store(!up.is_empty(), Ordering::Relaxed);
        *self.up_brokers.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = up;
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
    up_brokers: Arc<Mutex<BTreeSet<i32>>>,
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
        let up_brokers = context.up_brokers.clone();
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
        Ok(RawProducer { producer, connected, up_brokers, circuit, settings })
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

    pub fn circuit(&self) -> &CircuitBreaker {
        &self.circuit
    }

    /// Whether the raw topic can take acks=all writes now, asked of Kafka itself rather than
    /// learnt from failed requests: every partition has a leader that this client is connected
    /// to, and at least `min_insync` in-sync replicas. Blocking (a metadata request, at most
    /// `timeout`). `Err` says what is missing.
    pub fn raw_topic_writable(&self, min_insync: usize, timeout: Duration) -> Result<(), NotWritable> {
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(&self.settings.topic), timeout)
            .map_err(|error| NotWritable::No(error.to_string()))?;
        let up = self.up_brokers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let alive: BTreeSet<i32> = metadata.brokers().iter().map(|broker| broker.id()).collect();
        let topic = metadata.topics().first().ok_or_else(|| NotWritable::No("no metadata for the raw topic".to_owned()))?;
        if let Some(error) = topic.error() {
            return Err(NotWritable::No(format!("raw topic: {:?}", RDKafkaErrorCode::from(error))));
        }
        topic_writable(topic.partitions().iter().map(|p| (p.id(), p.leader(), p.isr().len())), &up, &alive, min_insync)
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

/// Why the raw topic cannot take writes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotWritable {
    /// Everything Kafka says is fine, but this client holds no connection to a leader (a broker
    /// the cluster lists, so alive and unfenced): only a write will make librdkafka connect.
    NoConnection(String),
    /// Kafka itself says no (no leader, too few in-sync replicas, no metadata).
    No(String),
}

impl std::fmt::Display for NotWritable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotWritable::NoConnection(reason) | NotWritable::No(reason) => f.write_str(reason),
        }
    }
}

/// The verdict of [`RawProducer::raw_topic_writable`] over (partition, leader, ISR size), the
/// brokers this client is connected to (`up`) and those the cluster's metadata lists (`alive`).
fn topic_writable(
    partitions: impl Iterator<Item = (i32, i32, usize)>,
    up: &BTreeSet<i32>,
    alive: &BTreeSet<i32>,
    min_insync: usize,
) -> Result<(), NotWritable> {
    let (mut any, mut unconnected) = (false, None);
    for (partition, leader, isr) in partitions {
        any = true;
        if leader < 0 {
            return Err(NotWritable::No(format!("partition {partition} has no leader")));
        }
        if !alive.is_empty() && !alive.contains(&leader) {
            return Err(NotWritable::No(format!("partition {partition}: its leader, broker {leader}, is not in the cluster's metadata")));
        }
        if isr < min_insync {
            return Err(NotWritable::No(format!("partition {partition} has {isr} in-sync replicas, min.insync.replicas is {min_insync}")));
        }
        // Statistics lag the metadata by up to a second; an empty set means none arrived yet.
        if !up.is_empty() && !up.contains(&leader) {
            unconnected.get_or_insert_with(|| format!("partition {partition}: no connection to its leader, broker {leader}"));
        }
    }
    if !any {
        return Err(NotWritable::No("the raw topic has no partitions in the metadata".to_owned()));
    }
    unconnected.map_or(Ok(()), |reason| Err(NotWritable::NoConnection(reason)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_needs_every_leader_alive_and_connected_and_enough_in_sync_replicas() {
        let (up, alive): (BTreeSet<i32>, BTreeSet<i32>) = ([1, 2].into(), [1, 2, 3].into());
        assert_eq!(topic_writable([(0, 1, 3), (1, 2, 2)].into_iter(), &up, &alive, 2), Ok(()));
        let unconnected = topic_writable([(0, 1, 3), (1, 3, 3)].into_iter(), &up, &alive, 2);
        assert!(matches!(&unconnected, Err(NotWritable::NoConnection(reason)) if reason.contains("broker 3")), "{unconnected:?}");
        let fenced = topic_writable([(0, 1, 3), (1, 3, 3)].into_iter(), &up, &[1, 2].into(), 2);
        assert!(matches!(&fenced, Err(NotWritable::No(reason)) if reason.contains("not in the cluster")), "{fenced:?}");
        let no_leader = topic_writable([(0, -1, 0)].into_iter(), &up, &alive, 1);
        assert!(matches!(no_leader, Err(NotWritable::No(reason)) if reason.contains("no leader")));
        let too_few = topic_writable([(0, 1, 1), (1, 3, 3)].into_iter(), &up, &alive, 2);
        assert!(matches!(too_few, Err(NotWritable::No(reason)) if reason.contains("in-sync")), "Kafka's own no wins over a connection");
        assert!(matches!(topic_writable(std::iter::empty(), &up, &alive, 1), Err(NotWritable::No(_))));
    }

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
