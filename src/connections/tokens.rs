//! Usable access tokens for the fetch stage, refreshed without ever spending a refresh token twice.
//!
//! Oura refresh tokens are single-use (§2.1): if two processor instances refreshed one connection
//! at once, the second would be refused with `invalid_grant` and the user would have to authorize
//! again for nothing. So a refresh is serialised twice:
//!
//! 1. in the process, by a per-connection `tokio::sync::Mutex` (single flight: concurrent tasks
//!    wait for one refresh instead of each taking the Redis lock in turn);
//! 2. across processes, by the Redis lock `SET bb:oauth-refresh:<VENDOR>:<vendor_user_id> <uuid>
//!    NX PX <lock_ttl>`. A process that does not get it polls until the key is gone, then re-reads
//!    the connection from PostgreSQL: a newer `token_version` means someone else refreshed. The
//!    holder also re-reads first (someone may have refreshed between our read and the lock), calls
//!    the token endpoint only if still stale, stores the result and releases the lock with a
//!    compare-and-delete (only its own uuid), so a lock that expired and was taken by another
//!    process is left alone.
//!
//! When Redis or PostgreSQL is down, or the token endpoint fails transiently, the answer is
//! [`TokenError::Unavailable`]: never a refresh without the lock. A refused refresh token
//! (`invalid_grant`) marks the connection `needs_reauth`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use redis::aio::ConnectionManager;

use super::oauth::{OAuthClients, OAuthError};
use super::store::{Connection, ConnectionStatus, ConnectionStore, StoreError};
use crate::event::Vendor;
use crate::secret::Secret;

/// A token is refreshed when it expires within this margin (a fetch started now must not
/// outlive it).
pub const REFRESH_MARGIN: chrono::Duration = chrono::Duration::seconds(60);
/// How often a waiter checks whether the refresh lock is gone.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Time limit of one Redis call.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Releases the lock only if it still holds our uuid.
const UNLOCK_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// An access token and what the caller needs with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: Secret,
    /// Our user the vendor account belongs to.
    pub user_id: String,
    /// The connection's `token_version` this token is from; pass the token back to
    /// [`AccessTokens::after_unauthorized`] when the API refuses it.
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no connection for this vendor account")]
    NoConnection,
    /// The connection was already revoked or waiting for re-authorization when read.
    #[error("the connection is {0}")]
    Inactive(ConnectionStatus),
    /// The vendor refused the refresh just now; the connection is now `needs_reauth`.
    #[error("the user must authorize again ({0})")]
    NeedsReauth(String),
    /// Redis, PostgreSQL or the token endpoint is unavailable: retry later.
    #[error("no usable token for now: {0}")]
    Unavailable(String),
    /// PostgreSQL refused the lookup because of the values asked for (a vendor user id it cannot
    /// hold, `db::is_record_fault`): retrying cannot help, the notification is dead-lettered.
    #[error("the connection lookup was refused: {0}")]
    Rejected(String),
}

/// Hands out access tokens, refreshing them under the locks described above. Cheap to clone;
/// clones share the single-flight table.
#[derive(Clone)]
pub struct AccessTokens {
    inner: Arc<Inner>,
}

/// One mutex per connection being refreshed in this process; removed when unused.
type Flights = Mutex<HashMap<(Vendor, String), Arc<tokio::sync::Mutex<()>>>>;

struct Inner {
    store: ConnectionStore,
    clients: OAuthClients,
    redis: ConnectionManager,
    lock_ttl: Duration,
    flights: Flights,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens").field("lock_ttl", &self.inner.lock_ttl).finish_non_exhaustive()
    }
}

fn lock_key(vendor: Vendor, vendor_user_id: &str) -> String {
    format!("bb:oauth-refresh:{}:{vendor_user_id}", vendor.symbol())
}

fn expiring(connection: &Connection) -> bool {
    connection.expires_at.is_some_and(|at| at <= Utc::now() + REFRESH_MARGIN)
}

/// Whether the connection holds a usable token newer than version `seen`.
fn refreshed_since(connection: &Connection, seen: i64) -> bool {
    connection.token_version != seen && !expiring(connection)
}

fn token_of(connection: Connection) -> AccessToken {
    AccessToken { token: connection.access_token, user_id: connection.user_id, version: connection.token_version }
}

fn count(vendor: Vendor, outcome: &str) {
    crate::metrics::OAUTH_REFRESHES.with_label_values(&[vendor.slug(), outcome]).inc();
}

fn redis_error(error: impl std::fmt::Display) -> TokenError {
    TokenError::Unavailable(format!("Redis: {error}"))
}

impl AccessTokens {
    /// `lock_ttl` bounds how long a crashed holder blocks the others (e.g. 15 s); the token
    /// endpoint call is cut off before it, so a lock never expires under a live refresh.
    pub fn new(store: ConnectionStore, clients: OAuthClients, redis: ConnectionManager, lock_ttl: Duration) -> Self {
        let lock_ttl = lock_ttl.max(Duration::from_secs(2));
        AccessTokens { inner: Arc::new(Inner { store, clients, redis, lock_ttl, flights: Mutex::default() }) }
    }

    /// A usable token: refreshed first when it expires within [`REFRESH_MARGIN`].
    pub async fn access_token(&self, vendor: Vendor, vendor_user_id: &str) -> Result<AccessToken, TokenError> {
        let connection = self.load(vendor, vendor_user_id).await?;
        if !expiring(&connection) {
            return Ok(token_of(connection));
        }
        self.refresh(vendor, vendor_user_id, connection.token_version).await
    }

    /// The API answered 401 to `rejected`: refresh unless someone already did (the version moved
    /// on), and return the new token.
    pub async fn after_unauthorized(
        &self,
        vendor: Vendor,
        vendor_user_id: &str,
        rejected: &AccessToken,
    ) -> Result<AccessToken, TokenError> {
        let connection = self.load(vendor, vendor_user_id).await?;
        if refreshed_since(&connection, rejected.version) {
            return Ok(token_of(connection));
        }
        self.refresh(vendor, vendor_user_id, rejected.version).await
    }

    /// Marks the connection as needing re-authorization (e.g. the API keeps refusing fresh tokens).
    pub async fn mark_needs_reauth(&self, vendor: Vendor, vendor_user_id: &str, reason: &str) -> Result<(), TokenError> {
        match self.inner.store.set_status(vendor, vendor_user_id, ConnectionStatus::NeedsReauth, Some(reason)).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(TokenError::NoConnection),
            Err(error) => Err(TokenError::Unavailable(format!("PostgreSQL: {error}"))),
        }
    }

    /// The connection, if it exists and is active.
    async fn load(&self, vendor: Vendor, vendor_user_id: &str) -> Result<Connection, TokenError> {
        let connection = match self.inner.store.get(vendor, vendor_user_id).await {
            Ok(Some(connection)) => connection,
            Ok(None) => return Err(TokenError::NoConnection),
            Err(StoreError::Database(error)) if crate::db::is_record_fault(&error) => return Err(TokenError::Rejected(error.to_string())),
            Err(error @ StoreError::Database(_)) => return Err(TokenError::Unavailable(error.to_string())),
            Err(error) => {
                // A wrong TOKEN_ENCRYPTION_KEY: an operator must act; retrying cannot help.
                tracing::error!(%error, vendor = vendor.slug(), "Stored tokens cannot be read.");
                return Err(TokenError::Unavailable(error.to_string()));
            }
        };
        match connection.status {
            ConnectionStatus::Active => Ok(connection),
            status => Err(TokenError::Inactive(status)),
        }
    }

    /// Refreshes the tokens of version `seen` (or returns the newer ones someone else stored).
    async fn refresh(&self, vendor: Vendor, vendor_user_id: &str, seen: i64) -> Result<AccessToken, TokenError> {
        let flight = Flight::join(&self.inner.flights, (vendor, vendor_user_id.to_owned()));
        let _single_flight = flight.mutex.lock().await;
        self.refresh_in_flight(vendor, vendor_user_id, seen).await
    }

    async fn refresh_in_flight(&self, vendor: Vendor, vendor_user_id: &str, seen: i64) -> Result<AccessToken, TokenError> {
        // Another task of this process may have refreshed while we queued.
        let connection = self.load(vendor, vendor_user_id).await?;
        if refreshed_since(&connection, seen) {
            count(vendor, "shared");
            return Ok(token_of(connection));
        }
        let key = lock_key(vendor, vendor_user_id);
        // Two rounds: if the holder gave up (the token endpoint was down), try once ourselves.
        for _ in 0..2 {
            let owner = uuid::Uuid::new_v4().to_string();
            if self.try_lock(&key, &owner).await? {
                let result = self.refresh_locked(vendor, vendor_user_id, seen).await;
                self.unlock(&key, &owner).await;
                return result;
            }
            self.wait_for_unlock(&key).await?;
            let connection = self.load(vendor, vendor_user_id).await?;
            if refreshed_since(&connection, seen) {
                count(vendor, "shared");
                return Ok(token_of(connection));
            }
        }
        count(vendor, "lock_busy");
        Err(TokenError::Unavailable("another process holds this connection's refresh lock; retry later".into()))
    }

    /// Holding the Redis lock: re-read, and refresh only if still stale.
    async fn refresh_locked(&self, vendor: Vendor, vendor_user_id: &str, seen: i64) -> Result<AccessToken, TokenError> {
        let connection = self.load(vendor, vendor_user_id).await?;
        if refreshed_since(&connection, seen) {
            count(vendor, "shared");
            return Ok(token_of(connection));
        }
        let client = self
            .inner
            .clients
            .get(vendor)
            .ok_or_else(|| TokenError::Unavailable(format!("no OAuth client is configured for {}", vendor.slug())))?;
        let Some(refresh_token) = &connection.refresh_token else {
            return self.refused(&connection, "no refresh token stored").await;
        };
        // Cut off well before the lock expires, so no other process can start a refresh while
        // ours may still be spending the refresh token.
        let budget = self.inner.lock_ttl.saturating_sub(Duration::from_secs(1));
        let answer = tokio::time::timeout(budget, client.refresh(refresh_token))
            .await
            .unwrap_or_else(|_| Err(OAuthError::Unavailable("token endpoint: timed out".into())));
        match answer {
            Ok(tokens) => {
                let version = self.store_refreshed(&connection, &tokens).await?;
                count(vendor, "refreshed");
                tracing::info!(vendor = vendor.slug(), version, "OAuth tokens refreshed.");
                Ok(AccessToken { token: tokens.access_token, user_id: connection.user_id, version })
            }
            Err(OAuthError::InvalidGrant(code)) => self.refused(&connection, &format!("refresh refused: {code}")).await,
            Err(error) => {
                count(vendor, error.code());
                if let OAuthError::InvalidClient(_) = error {
                    tracing::error!(%error, vendor = vendor.slug(), "The token endpoint refused our client credentials.");
                }
                Err(TokenError::Unavailable(error.to_string()))
            }
        }
    }

    /// Stores refreshed tokens, retrying briefly: a single-use refresh token is spent, so the new
    /// pair is the only one left and losing it means the user must authorize again.
    async fn store_refreshed(&self, connection: &Connection, tokens: &super::oauth::TokenSet) -> Result<i64, TokenError> {
        let (vendor, vendor_user_id) = (connection.vendor, connection.vendor_user_id.as_str());
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.inner.store.store_refreshed_version(vendor, vendor_user_id, tokens).await {
                Ok(Some(version)) => return Ok(version),
                Ok(None) => return Err(TokenError::NoConnection),
                Err(error) if attempt >= 3 => {
                    count(vendor, "store_failed");
                    tracing::error!(%error, vendor = vendor.slug(), "Refreshed tokens could not be stored; the connection may need re-authorization.");
                    return Err(TokenError::Unavailable(format!("PostgreSQL: {error}")));
                }
                Err(error) => {
                    tracing::warn!(%error, attempt, "Storing refreshed tokens failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// The vendor refused the refresh token: mark the connection, unless the user re-connected
    /// meanwhile (then the new tokens are returned).
    async fn refused(&self, connection: &Connection, reason: &str) -> Result<AccessToken, TokenError> {
        let (vendor, vendor_user_id) = (connection.vendor, connection.vendor_user_id.as_str());
        count(vendor, "needs_reauth");
        let store = &self.inner.store;
        match store.mark_needs_reauth_at(vendor, vendor_user_id, reason, connection.token_version).await {
            Ok(true) => {
                tracing::warn!(vendor = vendor.slug(), reason, "OAuth connection needs re-authorization.");
                Err(TokenError::NeedsReauth(reason.to_owned()))
            }
            Ok(false) => {
                let current = self.load(vendor, vendor_user_id).await?;
                if refreshed_since(&current, connection.token_version) {
                    Ok(token_of(current))
                } else {
                    Err(TokenError::NeedsReauth(reason.to_owned()))
                }
            }
            Err(error) => Err(TokenError::Unavailable(format!("PostgreSQL: {error}"))),
        }
    }

    async fn try_lock(&self, key: &str, owner: &str) -> Result<bool, TokenError> {
        let mut redis = self.inner.redis.clone();
        let ttl_ms = u64::try_from(self.inner.lock_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut command = redis::cmd("SET");
        command.arg(key).arg(owner).arg("NX").arg("PX").arg(ttl_ms);
        let answer = tokio::time::timeout(REDIS_TIMEOUT, command.query_async::<Option<String>>(&mut redis))
            .await
            .map_err(|_| redis_error("SET timed out"))?
            .map_err(redis_error)?;
        Ok(answer.is_some())
    }

    /// Best effort: if this fails the lock expires by itself after its TTL.
    async fn unlock(&self, key: &str, owner: &str) {
        let mut redis = self.inner.redis.clone();
        let mut command = redis::cmd("EVAL");
        command.arg(UNLOCK_SCRIPT).arg(1).arg(key).arg(owner);
        match tokio::time::timeout(REDIS_TIMEOUT, command.query_async::<i64>(&mut redis)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "Releasing the refresh lock failed; it expires by itself."),
            Err(_) => tracing::warn!("Releasing the refresh lock timed out; it expires by itself."),
        }
    }

    /// Waits until the lock key is gone (released, or expired after at most its TTL).
    async fn wait_for_unlock(&self, key: &str) -> Result<(), TokenError> {
        let deadline = Instant::now() + self.inner.lock_ttl + Duration::from_secs(1);
        let mut redis = self.inner.redis.clone();
        while Instant::now() < deadline {
            tokio::time::sleep(POLL_EVERY).await;
            let mut command = redis::cmd("EXISTS");
            command.arg(key);
            let exists = tokio::time::timeout(REDIS_TIMEOUT, command.query_async::<i64>(&mut redis))
                .await
                .map_err(|_| redis_error("EXISTS timed out"))?
                .map_err(redis_error)?;
            if exists == 0 {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// A place in a connection's single-flight queue; the last one out removes the entry, also when
/// the caller's future is dropped midway.
struct Flight<'a> {
    flights: &'a Flights,
    key: (Vendor, String),
    mutex: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> Flight<'a> {
    fn join(flights: &'a Flights, key: (Vendor, String)) -> Flight<'a> {
        let mutex = lock(flights).entry(key.clone()).or_default().clone();
        Flight { flights, key, mutex }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut flights = lock(self.flights);
        // The table and we hold the only references: nobody else waits for this connection.
        if Arc::strong_count(&self.mutex) == 2 {
            flights.remove(&self.key);
        }
    }
}

/// The table guards plain values that stay valid whatever a panicking holder did.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(version: i64, expires_in: Option<chrono::Duration>) -> Connection {
        Connection {
            vendor: Vendor::Oura,
            vendor_user_id: "u".into(),
            user_id: "ours".into(),
            access_token: Secret::new("t"),
            refresh_token: None,
            expires_at: expires_in.map(|delta| Utc::now() + delta),
            scopes: None,
            status: ConnectionStatus::Active,
            status_reason: None,
            token_version: version,
        }
    }

    #[test]
    fn tokens_expiring_within_the_margin_are_stale() {
        assert!(expiring(&connection(1, Some(chrono::Duration::seconds(30)))));
        assert!(expiring(&connection(1, Some(chrono::Duration::seconds(-5)))));
        assert!(!expiring(&connection(1, Some(chrono::Duration::minutes(10)))));
        assert!(!expiring(&connection(1, None)), "no expiry known: used until the API refuses it");
    }

    #[test]
    fn only_a_newer_fresh_version_counts_as_refreshed() {
        let fresh = Some(chrono::Duration::hours(1));
        assert!(refreshed_since(&connection(2, fresh), 1));
        assert!(!refreshed_since(&connection(1, fresh), 1), "the same tokens the API refused");
        assert!(!refreshed_since(&connection(2, Some(chrono::Duration::seconds(10))), 1), "newer but expiring");
    }

    #[test]
    fn lock_keys_name_the_connection() {
        assert_eq!(lock_key(Vendor::Whoop, "123"), "bb:oauth-refresh:WHOOP:123");
    }
}
