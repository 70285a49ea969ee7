//! Apple Health bearer tokens.
//!
//! Apple has no webhook signature: each user's phone (Health Auto Export or our companion app)
//! sends `Authorization: Bearer <token>`. Tokens are issued and revoked with
//! `biometric-bridge tokens issue|revoke|list --user <id>`. Only SHA-256 hashes are stored, so
//! the table cannot be replayed as tokens, and a token is printed exactly once, at issue.
//!
//! The ingress looks tokens up through an in-process cache (known tokens for
//! `TOKEN_CACHE_TTL_SECS`, default [`POSITIVE_TTL`]; unknown ones for at most [`NEGATIVE_TTL`]) so
//! the hot path does not wait on PostgreSQL for every upload. A revocation therefore takes effect
//! within the positive TTL: the price of not querying the database per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// Default lifetime of a cached known token (`TOKEN_CACHE_TTL_SECS`).
pub const POSITIVE_TTL: Duration = Duration::from_secs(30);
/// Longest lifetime of a cached unknown token: short, so a token issued just after a failed
/// attempt works soon; never longer than the positive TTL.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Bound on cached entries, so a flood of random tokens cannot grow memory without limit.
const MAX_ENTRIES: usize = 100_000;

/// A newly issued token; `token` is shown once and never stored.
#[derive(Debug)]
pub struct IssuedToken {
    pub token_id: uuid::Uuid,
    pub token: crate::secret::Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub token_id: uuid::Uuid,
    pub user_id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Issues a token for `user_id`: 32 random bytes, URL-safe base64.
pub async fn issue(pool: &PgPool, user_id: &str) -> sqlx::Result<IssuedToken> {
    let mut raw = [0u8; 32];
    raw[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    raw[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let token = format!("bbt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
    let token_id = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO ingest_tokens (token_id, user_id, token_hash) VALUES ($1, $2, $3)")
        .bind(token_id)
        .bind(user_id)
        .bind(&hash(&token)[..])
        .execute(pool)
        .await?;
    Ok(IssuedToken { token_id, token: crate::secret::Secret::new(token) })
}

/// Revokes the user's tokens (all of them, or only `token_id`); returns how many.
pub async fn revoke(pool: &PgPool, user_id: &str, token_id: Option<uuid::Uuid>) -> sqlx::Result<u64> {
    let result = sqlx::query(
        "UPDATE ingest_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR token_id = $2)",
    )
    .bind(user_id)
    .bind(token_id)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

pub async fn list(pool: &PgPool, user_id: &str) -> sqlx::Result<Vec<TokenInfo>> {
    type Row = (uuid::Uuid, String, chrono::DateTime<chrono::Utc>, Option<chrono::DateTime<chrono::Utc>>);
    let rows: Vec<Row> =
        sqlx::query_as("SELECT token_id, user_id, created_at, revoked_at FROM ingest_tokens WHERE user_id = $1 ORDER BY created_at")
            .bind(user_id)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(token_id, user_id, created_at, revoked_at)| TokenInfo { token_id, user_id, created_at, revoked_at })
        .collect())
}

/// The ingress's cached view of the token table.
pub struct TokenCache {
    pool: PgPool,
    positive_ttl: Duration,
    negative_ttl: Duration,
    entries: Mutex<HashMap<TokenHash, CachedLookup>>,
}

type TokenHash = [u8; 32];
/// The user of a token (None: unknown or revoked) and when PostgreSQL said so.
type CachedLookup = (Option<String>, Instant);

impl TokenCache {
    /// `positive_ttl`: how long a known token is trusted without asking PostgreSQL, i.e. the
    /// longest a revoked token keeps working.
    pub fn new(pool: PgPool, positive_ttl: Duration) -> Self {
        TokenCache { pool, positive_ttl, negative_ttl: NEGATIVE_TTL.min(positive_ttl), entries: Mutex::new(HashMap::new()) }
    }

    /// The user a token belongs to (`None`: unknown or revoked). Err only when PostgreSQL is
    /// unreachable and the cache cannot answer.
    pub async fn user_for(&self, token: &str) -> sqlx::Result<Option<String>> {
        let key = hash(token);
        if let Some((user, at)) = self.entries.lock().expect("token cache lock").get(&key) {
            let ttl = if user.is_some() { self.positive_ttl } else { self.negative_ttl };
            if at.elapsed() < ttl {
                return Ok(user.clone());
            }
        }
        let user: Option<String> = sqlx::query_scalar("SELECT user_id FROM ingest_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(&key[..])
            .fetch_optional(&self.pool)
            .await?;
        let mut entries = self.entries.lock().expect("token cache lock");
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, at)| at.elapsed() < self.positive_ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (user.clone(), Instant::now()));
        Ok(user)
    }
}

/// The token in an `Authorization: Bearer <token>` header value.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn hashes_are_stable_and_distinct() {
        assert_eq!(hash("a"), hash("a"));
        assert_ne!(hash("a"), hash("b"));
    }
}
