//! The ingress's de-duplication fast path in Redis.
//!
//! Vendors retry and re-send. After a webhook is durably in Kafka, `SET <vendor>:<delivery id>
//! 1 NX EX <ttl>` marks it; a re-delivery finds the mark and gets 200 without a second write. The
//! mark is set only after the write succeeded, so a failed write stays retryable. Redis is an
//! optimisation, not a dependency: when it is down or slow, the ingress keeps accepting (a warning
//! and a metric) and the processor's de-duplication store removes the copies downstream.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

/// Time budget of one Redis call on the request path.
const CALL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often to retry connecting while Redis is unreachable.
const RECONNECT_EVERY: Duration = Duration::from_secs(5);

pub struct Dedup {
    client: Option<redis::Client>,
    /// The raw topic: a delivery is "already written" per topic, so pipelines sharing one
    /// Redis (tests, namespaced tenants) do not see each other's marks.
    topic: String,
    ttl_secs: u64,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    last_attempt: Mutex<Option<Instant>>,
}

impl Dedup {
    /// `url` None disables the fast path.
    pub fn new(url: Option<&str>, topic: &str, ttl_secs: u64) -> anyhow::Result<Dedup> {
        let client = url.map(redis::Client::open).transpose()?;
        Ok(Dedup { client, topic: topic.to_owned(), ttl_secs, connection: tokio::sync::Mutex::new(None), last_attempt: Mutex::new(None) })
    }

    fn key(&self, vendor: &str, delivery_id: &str) -> String {
        format!("biometric-bridge:delivered:{}:{vendor}:{delivery_id}", self.topic)
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        let client = self.client.as_ref()?;
        let mut guard = self.connection.lock().await;
        if let Some(connection) = guard.as_ref() {
            return Some(connection.clone());
        }
        {
            let mut last = self.last_attempt.lock().expect("dedup lock");
            if last.is_some_and(|at| at.elapsed() < RECONNECT_EVERY) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1);
        match tokio::time::timeout(Duration::from_secs(2), ConnectionManager::new_with_config(client.clone(), config)).await {
            Ok(Ok(connection)) => {
                tracing::info!("Connected to Redis for the de-duplication fast path.");
                *guard = Some(connection.clone());
                Some(connection)
            }
            Ok(Err(error)) => {
                report(&error.to_string());
                None
            }
            Err(_) => {
                report("connect timed out");
                None
            }
        }
    }

    /// Whether this delivery was already written. Errors count as "not seen": accepting a
    /// duplicate is safe, refusing new data is not.
    pub async fn seen(&self, vendor: &str, delivery_id: &str) -> bool {
        let Some(mut connection) = self.connection().await else { return false };
        let mut command = redis::cmd("EXISTS");
        command.arg(self.key(vendor, delivery_id));
        match tokio::time::timeout(CALL_TIMEOUT, command.query_async::<i64>(&mut connection)).await {
            Ok(Ok(count)) => count > 0,
            Ok(Err(error)) => {
                report(&error.to_string());
                false
            }
            Err(_) => {
                report("EXISTS timed out");
                false
            }
        }
    }

    /// Marks a delivery as written (after the Kafka acknowledgement).
    pub async fn mark(&self, vendor: &str, delivery_id: &str) {
        let Some(mut connection) = self.connection().await else { return };
        let mut command = redis::cmd("SET");
        command.arg(self.key(vendor, delivery_id)).arg(1).arg("NX").arg("EX").arg(self.ttl_secs);
        match tokio::time::timeout(CALL_TIMEOUT, command.query_async::<Option<String>>(&mut connection)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => report(&error.to_string()),
            Err(_) => report("SET timed out"),
        }
    }
}

fn report(error: &str) {
    crate::metrics::REDIS_ERRORS.inc();
    tracing::warn!(%error, "Redis de-duplication unavailable; accepting without it (the processor de-duplicates).");
}
