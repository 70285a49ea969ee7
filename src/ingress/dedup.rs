//! The ingress's de-duplication fast path in Redis.
//!
//! Vendors retry and re-send. A delivery is known by its vendor, **the user it belongs to** (the
//! Apple Health token's user, else the user the payload names) and its delivery id: two users
//! uploading byte-identical batches (whose delivery id is the body's hash) are two deliveries,
//! never a duplicate of each other.
//!
//! Each delivery is **claimed** before it is written: `SET <key> pending:<nonce> NX PX <ttl>`.
//! - The claimer writes to Kafka, then marks the key delivered (`SET <key> 1 EX <ttl>`); a failed
//!   write releases the claim (deleted only if still its own), so the vendor's retry can claim it.
//! - A copy arriving while the delivery is claimed (the vendor retried before our answer reached
//!   it, or sent two copies at once) waits for the claimer's outcome: delivered -> 200 duplicate
//!   without a second write; released -> it claims and writes itself. The wait is bounded by the
//!   produce timeout; if the claimer still has not finished, the copy is written anyway (the
//!   processor de-duplicates it).
//! - A claim left by a crashed ingress expires after its TTL (the produce timeout plus margin).
//!
//! Redis is an optimisation, not a dependency: when it is down or slow, the ingress keeps
//! accepting (a warning and a metric) and the processor's de-duplication store removes the
//! copies downstream.
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
/// How often a copy waiting for another copy's write looks again.
const CLAIM_POLL: Duration = Duration::from_millis(20);
/// How long a claim outlives the write it guards (its TTL is the produce timeout plus this), so
/// a crashed ingress's claim expires soon after its write would have.
const CLAIM_MARGIN: Duration = Duration::from_secs(2);

/// Deletes a claim only while the key still holds it.
const RELEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// What [`Dedup::claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// Ours to write; mark it delivered or release it afterwards.
    Claimed(ClaimToken),
    /// Already written: answer 200 duplicate.
    Delivered,
    /// Redis cannot tell (down, slow, or another copy's write outlasted the wait): write it.
    Unavailable,
}

/// A claim on one delivery.
#[derive(Debug)]
pub struct ClaimToken {
    key: String,
    token: String,
}

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

    /// `biometric-bridge:delivered:<topic>:<vendor>:<user length>:<user>:<delivery id>`. The
    /// user's length makes the key unambiguous whatever the ids contain (`a:b` + `c` vs `a` +
    /// `b:c`); a delivery naming no user has the empty user.
    fn key(&self, vendor: &str, user: Option<&str>, delivery_id: &str) -> String {
        let user = user.unwrap_or_default();
        format!("biometric-bridge:delivered:{}:{vendor}:{}:{user}:{delivery_id}", self.topic, user.len())
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

    /// Claims the delivery for writing, or learns it was already written. Waits at most
    /// `wait` for another copy's write in progress (see the module docs).
    pub async fn claim(&self, vendor: &str, user: Option<&str>, delivery_id: &str, wait: Duration) -> Claim {
        let key = self.key(vendor, user, delivery_id);
        let token = format!("pending:{}", uuid::Uuid::new_v4().simple());
        let deadline = Instant::now() + wait;
        let mut waited = false;
        loop {
            let Some(mut connection) = self.connection() else { return Claim::Unavailable };
            let mut set = redis::cmd("SET");
            let ttl_ms = u64::try_from((wait + CLAIM_MARGIN).as_millis()).unwrap_or(u64::MAX);
            set.arg(&key).arg(&token).arg("NX").arg("PX").arg(ttl_ms);
            match tokio::time::timeout(CALL_TIMEOUT, set.query_async::<Option<String>>(&mut connection)).await {
                Ok(Ok(Some(_))) => {
                    self.succeeded();
                    if waited {
                        crate::metrics::DEDUP_CLAIM_WAITS.with_label_values(&["claimed_after_release"]).inc();
                    }
                    return Claim::Claimed(ClaimToken { key, token });
                }
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    self.failed(&error.to_string());
                    return Claim::Unavailable;
                }
                Err(_) => {
                    self.failed("SET timed out");
                    return Claim::Unavailable;
                }
            }
            // Taken: written already, or a write in progress?
            let mut get = redis::cmd("GET");
            get.arg(&key);
            match tokio::time::timeout(CALL_TIMEOUT, get.query_async::<Option<String>>(&mut connection)).await {
                Ok(Ok(Some(value))) if !value.starts_with("pending:") => {
                    if waited {
                        crate::metrics::DEDUP_CLAIM_WAITS.with_label_values(&["delivered_meanwhile"]).inc();
                    }
                    return Claim::Delivered;
                }
                // Still pending (wait), or released just now (claim again).
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    self.failed(&error.to_string());
                    return Claim::Unavailable;
                }
                Err(_) => {
                    self.failed("GET timed out");
                    return Claim::Unavailable;
                }
            }
            if Instant::now() >= deadline {
                crate::metrics::DEDUP_CLAIM_WAITS.with_label_values(&["gave_up"]).inc();
                tracing::warn!("Another copy of this delivery is still being written; writing this one too (the processor de-duplicates).");
                return Claim::Unavailable;
            }
            waited = true;
            tokio::time::sleep(CLAIM_POLL).await;
        }
    }

    /// Marks a claimed delivery as written (after the Kafka acknowledgement).
    pub async fn mark_delivered(&self, claim: &ClaimToken) {
        let Some(mut connection) = self.connection() else { return };
        let mut command = redis::cmd("SET");
        command.arg(&claim.key).arg(1).arg("EX").arg(self.ttl_secs);
        match tokio::time::timeout(CALL_TIMEOUT, command.query_async::<Option<String>>(&mut connection)).await {
            Ok(Ok(_)) => self.succeeded(),
            Ok(Err(error)) => self.failed(&error.to_string()),
            Err(_) => self.failed("SET timed out"),
        }
    }

    /// Gives a claim back after a failed write, so a retry (or a waiting copy) can write.
    pub async fn release(&self, claim: &ClaimToken) {
        let Some(mut connection) = self.connection() else { return };
        // Deletes the key only while it still holds our claim: never someone else's mark.
        // (EVAL rather than the crate's Script helper, which would add a SHA-1 crate for EVALSHA.)
        let mut eval = redis::cmd("EVAL");
        eval.arg(RELEASE_SCRIPT).arg(1).arg(&claim.key).arg(&claim.token);
        match tokio::time::timeout(CALL_TIMEOUT, eval.query_async::<i64>(&mut connection)).await {
            Ok(Ok(_)) => self.succeeded(),
            Ok(Err(error)) => self.failed(&error.to_string()),
            Err(_) => self.failed("release timed out"),
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
