//! The ingress's de-duplication fast path in Redis.
//!
//! Vendors retry and re-send. After a webhook is durably in Kafka, `SET <vendor>:<delivery id>
//! 1 NX EX <ttl>` marks it; a re-delivery finds the mark and gets 200 without a second write. The
//! mark is set only after the write succeeded, so a failed write stays retryable. Redis is an
//! optimisation, not a dependency: when it is down or slow, the ingress keeps accepting (a warning
//! and a metric) and the processor's de-duplication store removes the copies downstream.
//!
//! Latency while Redis is down is bounded: a request never waits for a connection attempt (those
//! run in the background, at most every [`RECONNECT_EVERY`]), each call has a [`CALL_TIMEOUT`],
//! and after a failed call Redis is skipped for [`SKIP_AFTER_ERROR`], so an outage costs at most
//! one timeout per that period instead of two per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

/// Time budget of one Redis call on the request path.
const CALL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often to retry connecting while Redis is unreachable.
const RECONNECT_EVERY: Duration = Duration::from_secs(5);
/// How long to leave Redis alone after a failed call.
const SKIP_AFTER_ERROR: Duration = Duration::from_secs(1);

pub struct Dedup {
    client: redis::Client,
    /// For redacting error texts (the URL may hold a password).
    url: String,
    /// The raw topic: a delivery is "already written" per topic, so pipelines sharing one
    /// Redis (tests, namespaced tenants) do not see each other's marks.
    topic: String,
    ttl_secs: u64,
    /// Shared with the background connect task.
    connection: Arc<Mutex<Option<ConnectionManager>>>,
    connecting: Arc<AtomicBool>,
    last_attempt: Mutex<Option<Instant>>,
    skip_until: Mutex<Option<Instant>>,
    /// Whether the last call failed: the warning is logged when Redis goes away and an info line
    /// when it is back, not once per request.
    degraded: AtomicBool,
}

impl Dedup {
    pub fn new(url: &str, topic: &str, ttl_secs: u64) -> anyhow::Result<Dedup> {
        let client = redis::Client::open(url)
            .map_err(|error| anyhow::anyhow!("invalid REDIS_URL: {}", crate::config::redact_url_error(&error.to_string(), url)))?;
        Ok(Dedup {
            client,
            url: url.to_owned(),
            topic: topic.to_owned(),
            ttl_secs,
            connection: Arc::default(),
            connecting: Arc::default(),
            last_attempt: Mutex::new(None),
            skip_until: Mutex::new(None),
            degraded: AtomicBool::new(false),
        })
    }

    /// Connects now, for at most `wait`, so a freshly started ingress de-duplicates from its
    /// first request; if Redis is not there the connection is retried in the background.
    pub async fn connect(&self, wait: Duration) {
        *lock(&self.last_attempt) = Some(Instant::now());
        match tokio::time::timeout(wait, ConnectionManager::new_with_config(self.client.clone(), manager_config())).await {
            Ok(Ok(connection)) => *lock(&self.connection) = Some(connection),
            Ok(Err(error)) => self.failed(&error.to_string()),
            Err(_) => self.failed("connect timed out"),
        }
    }

    fn key(&self, vendor: &str, delivery_id: &str) -> String {
        format!("biometric-bridge:delivered:{}:{vendor}:{delivery_id}", self.topic)
    }

    /// The connection, or None (and a background connect, if one is due) while there is none.
    fn connection(&self) -> Option<ConnectionManager> {
        if lock(&self.skip_until).is_some_and(|until| Instant::now() < until) {
            return None;
        }
        if let Some(connection) = lock(&self.connection).as_ref() {
            return Some(connection.clone());
        }
        {
            let mut last = lock(&self.last_attempt);
            if last.is_some_and(|at| at.elapsed() < RECONNECT_EVERY) || self.connecting.swap(true, Ordering::AcqRel) {
                return None;
            }
            *last = Some(Instant::now());
        }
        let (client, slot, connecting) = (self.client.clone(), self.connection.clone(), self.connecting.clone());
        tokio::spawn(async move {
            if let Ok(Ok(connection)) =
                tokio::time::timeout(Duration::from_secs(2), ConnectionManager::new_with_config(client, manager_config())).await
            {
                tracing::info!("Connected to Redis for the de-duplication fast path.");
                *lock(&slot) = Some(connection);
            }
            connecting.store(false, Ordering::Release);
        });
        None
    }

    /// Whether this delivery was already written. Errors count as "not seen": accepting a
    /// duplicate is safe, refusing new data is not.
    pub async fn seen(&self, vendor: &str, delivery_id: &str) -> bool {
        let Some(mut connection) = self.connection() else { return false };
        let mut command = redis::cmd("EXISTS");
        command.arg(self.key(vendor, delivery_id));
        match tokio::time::timeout(CALL_TIMEOUT, command.query_async::<i64>(&mut connection)).await {
            Ok(Ok(count)) => {
                self.succeeded();
                count > 0
            }
            Ok(Err(error)) => {
                self.failed(&error.to_string());
                false
            }
            Err(_) => {
                self.failed("EXISTS timed out");
                false
            }
        }
    }

    /// Marks a delivery as written (after the Kafka acknowledgement).
    pub async fn mark(&self, vendor: &str, delivery_id: &str) {
        let Some(mut connection) = self.connection() else { return };
        let mut command = redis::cmd("SET");
        command.arg(self.key(vendor, delivery_id)).arg(1).arg("NX").arg("EX").arg(self.ttl_secs);
        match tokio::time::timeout(CALL_TIMEOUT, command.query_async::<Option<String>>(&mut connection)).await {
            Ok(Ok(_)) => self.succeeded(),
            Ok(Err(error)) => self.failed(&error.to_string()),
            Err(_) => self.failed("SET timed out"),
        }
    }

    fn succeeded(&self) {
        if self.degraded.swap(false, Ordering::AcqRel) {
            tracing::info!("Redis de-duplication available again.");
        }
    }

    fn failed(&self, error: &str) {
        crate::metrics::REDIS_ERRORS.inc();
        *lock(&self.skip_until) = Some(Instant::now() + SKIP_AFTER_ERROR);
        if !self.degraded.swap(true, Ordering::AcqRel) {
            let error = crate::config::redact_url_error(error, &self.url);
            tracing::warn!(%error, "Redis de-duplication unavailable; accepting without it (the processor de-duplicates).");
        }
    }
}

fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(CALL_TIMEOUT))
        .set_number_of_retries(1)
}

/// These locks guard plain values that are valid whatever a panicking holder did.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
