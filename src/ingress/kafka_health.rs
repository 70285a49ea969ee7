//! The ingress's own probe of Kafka: readiness follows the dependency, not the traffic.
//!
//! While the circuit is not closed, once a second, a metadata request asks whether the raw
//! topic can take acks=all writes (every partition led by a broker this client is connected
//! to, with enough in-sync replicas). When it can, the circuit closes: after a broker failover
//! the ingress takes webhooks again within about a second of Kafka, instead of after the
//! circuit's full recovery period, and `/ready` turns 200 with no webhook needed. When only the
//! connection to a leader is missing (librdkafka connects to a broker when it has something to
//! send there, and an open circuit sends nothing), the circuit half-opens instead, and the next
//! webhook's write is the probe.
//! While the circuit is closed the probe does nothing: requests are the signal then.

use std::sync::Arc;
use std::time::Duration;

use super::IngressState;
use super::circuit::CircuitState;
use super::producer::NotWritable;
use crate::config::KafkaArgs;
use crate::shutdown::CancellationToken;

/// How often the open circuit asks Kafka.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A metadata request's deadline.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// How often a failing probe is logged (the outage is logged once when it starts anyway).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Runs until shutdown. `kafka` is asked once for the raw topic's `min.insync.replicas` (1 when
/// unknown: the probe then only checks leaders).
pub async fn watch(state: Arc<IngressState>, kafka: KafkaArgs, topic: String, shutdown: CancellationToken) {
    let mut min_insync: Option<usize> = None;
    let mut last_log = tokio::time::Instant::now() - LOG_EVERY;
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if state.producer.circuit_state() == CircuitState::Closed {
            continue;
        }
        if min_insync.is_none() {
            min_insync = learn_min_insync(&kafka, &topic).await;
        }
        let needed = min_insync.unwrap_or(1);
        let probe_state = state.clone();
        let verdict = tokio::task::spawn_blocking(move || probe_state.producer.raw_topic_writable(needed, PROBE_TIMEOUT)).await;
        match verdict {
            Ok(Ok(())) => {
                if state.producer.circuit().close_on_healthy_probe() {
                    crate::metrics::CIRCUIT_PROBES.with_label_values(&["writable"]).inc();
                    tracing::info!(dependency = "kafka", topic = %topic, "Kafka takes writes again (metadata probe); circuit closed.");
                }
            }
            Ok(Err(NotWritable::NoConnection(reason))) => {
                crate::metrics::CIRCUIT_PROBES.with_label_values(&["no_connection"]).inc();
                if state.producer.circuit().half_open_for_a_request() {
                    tracing::info!(dependency = "kafka", topic = %topic, %reason, "Kafka's metadata says the raw topic takes writes; circuit half-open, the next webhook is the probe.");
                }
            }
            Ok(Err(reason)) => {
                crate::metrics::CIRCUIT_PROBES.with_label_values(&["not_writable"]).inc();
                if last_log.elapsed() >= LOG_EVERY {
                    last_log = tokio::time::Instant::now();
                    tracing::warn!(dependency = "kafka", address = %kafka.bootstrap_servers, %reason, "Kafka cannot take writes yet; the circuit stays open.");
                }
            }
            Err(error) => tracing::error!(%error, "The Kafka probe task failed."),
        }
    }
}

async fn learn_min_insync(kafka: &KafkaArgs, topic: &str) -> Option<usize> {
    let found = crate::kafka::admin::topic_config(kafka, &[topic], "min.insync.replicas").await.ok()?;
    found.get(topic).and_then(|value| value.parse().ok())
}
