//! Durable writes of raw webhooks to Kafka: the ingress answers 2xx only after this returns Ok.
//!
//! The producer is idempotent with `acks=all`, so an acknowledged record is on every in-sync
//! replica and never duplicated by librdkafka's own retries. `message.timeout.ms` equals the
//! produce timeout: librdkafka gives up on a record at the same moment we answer 503, so a vendor
//! retry does not race an old attempt for long (and if it does, the processor's de-duplication
//! catches the copy). A circuit breaker fails fast while Kafka is down.

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

/// Producer tuning (flags in `IngressArgs`).
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub topic: String,
    pub produce_timeout: Duration,
    pub linger_ms: u32,
    pub batch_size: u32,
    pub compression: String,
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
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("produce timed out")]
    Timeout,
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
        let context = ConnectivityContext::default();
        let connected = context.connected.clone();
        let producer: FutureProducer<ConnectivityContext> = kafka
            .config_with(&[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("linger.ms", &linger),
                ("batch.size", &batch),
                ("compression.type", &settings.compression),
                ("message.timeout.ms", &timeout_ms),
                ("statistics.interval.ms", "1000"),
                ("client.id", "biometric-bridge-ingress"),
            ])
            .create_with_context(context)?;
        let circuit = CircuitBreaker::new(settings.circuit_failure_threshold, settings.circuit_recovery);
        Ok(RawProducer { producer, connected, circuit, settings })
    }

    /// Writes one raw webhook and waits for the broker's acknowledgement.
    pub async fn send(&self, key: &str, payload: &[u8], headers: OwnedHeaders) -> Result<(), ProduceError> {
        self.circuit
            .try_acquire()
            .map_err(|open| ProduceError::CircuitOpen { retry_after: open.retry_after })?;
        let started = Instant::now();
        let record = FutureRecord::to(&self.settings.topic).key(key).payload(payload).headers(headers);
        // Zero queue timeout: a full local queue is back-pressure to answer with 503 now, not a
        // reason to hold the request.
        let delivery = self.producer.send(record, Duration::ZERO);
        let result = match tokio::time::timeout(self.settings.produce_timeout + Duration::from_millis(250), delivery).await {
            Err(_) => Err(ProduceError::Timeout),
            Ok(Ok(_delivered)) => Ok(()),
            Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _))) => Err(ProduceError::Timeout),
            Ok(Err((error, _))) => Err(ProduceError::Kafka(error.to_string())),
        };
        match &result {
            Ok(()) => {
                crate::metrics::KAFKA_PRODUCE_DURATION.observe(started.elapsed().as_secs_f64());
                self.circuit.on_success();
            }
            Err(error) => {
                tracing::warn!(%error, "Writing a raw webhook to Kafka failed.");
                self.circuit.on_failure();
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

    /// How long a refused vendor should wait before retrying.
    pub fn retry_after(&self) -> Duration {
        self.settings.produce_timeout.max(Duration::from_secs(1))
    }

    /// Waits for every queued record to be acknowledged (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}
