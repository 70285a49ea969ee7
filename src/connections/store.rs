//! The `vendor_connections` table: one row per connected vendor account, tokens encrypted.
//!
//! Connecting an account also links it in `identity_links` (same transaction), so the vendor's
//! webhooks for that account map to our user from the first one. Every token change increments
//! `token_version`: a process that waited for another one's refresh sees by it that the token is
//! new (see `tokens.rs`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::cipher::{CipherError, TokenCipher, row_aad};
use super::oauth::TokenSet;
use crate::event::Vendor;
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionStatus {
    /// Tokens usable (or refreshable).
    Active,
    /// Disconnected by an operator or the user; never used again until re-connected.
    Revoked,
    /// The vendor refused the refresh token (used, revoked, expired): the user must authorize again.
    NeedsReauth,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::Revoked => "revoked",
            ConnectionStatus::NeedsReauth => "needs_reauth",
        }
    }

    /// The status of its `as_str` text (also `needs-reauth`, as typed on a command line).
    pub fn parse(text: &str) -> Option<ConnectionStatus> {
        match text.trim() {
            "active" => Some(ConnectionStatus::Active),
            "revoked" => Some(ConnectionStatus::Revoked),
            "needs_reauth" | "needs-reauth" => Some(ConnectionStatus::NeedsReauth),
            _ => None,
        }
    }
}

impl std::fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection with its decrypted tokens.
#[derive(Debug, Clone)]
pub struct Connection {
    pub vendor: Vendor,
    pub vendor_user_id: String,
    pub user_id: String,
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Option<String>,
    pub status: ConnectionStatus,
    pub status_reason: Option<String>,
    pub token_version: i64,
}

/// A connection without its tokens (`connections list`).
#[derive(Debug, Clone)]
pub struct ConnectionSummary {
    pub vendor: Vendor,
    pub vendor_user_id: String,
    pub user_id: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Option<String>,
    pub status: ConnectionStatus,
    pub status_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    /// Names the row, never the token.
    #[error("the tokens of {row} cannot be read: {source}")]
    Decrypt { row: String, source: CipherError },
    #[error("vendor_connections holds an unknown {0}")]
    Corrupt(String),
}

type Row = (String, String, String, Vec<u8>, Option<Vec<u8>>, Option<DateTime<Utc>>, Option<String>, String, Option<String>, i64);
/// The columns of a [`Row`], as a literal so queries stay `&'static str` (no dynamic SQL).
macro_rules! columns {
    () => {
        "vendor, vendor_user_id, user_id, access_token, refresh_token, expires_at, scopes, status, status_reason, token_version"
    };
}

pub(crate) fn vendor_of(symbol: &str) -> Result<Vendor, StoreError> {
    Vendor::ALL.into_iter().find(|vendor| vendor.symbol() == symbol).ok_or_else(|| StoreError::Corrupt(format!("vendor {symbol:?}")))
}

fn status_of(text: &str) -> Result<ConnectionStatus, StoreError> {
    ConnectionStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("status {text:?}")))
}

/// Connections, with tokens encrypted on the way in and decrypted on the way out.
#[derive(Debug, Clone)]
pub struct ConnectionStore {
    pool: PgPool,
    cipher: Arc<TokenCipher>,
}

impl ConnectionStore {
    pub fn new(pool: PgPool, cipher: TokenCipher) -> Self {
        ConnectionStore { pool, cipher: Arc::new(cipher) }
    }

    /// Records the use of an OAuth state's nonce: true the first time, false when it was used
    /// before (the state is single use). Also forgets uses older than a day (states live 15 min).
    pub async fn use_state_nonce(&self, nonce: &str) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM oauth_state_uses WHERE used_at < now() - interval '1 day'").execute(&mut *tx).await?;
        let inserted =
            sqlx::query("INSERT INTO oauth_state_uses (nonce) VALUES ($1) ON CONFLICT DO NOTHING").bind(nonce).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(inserted.rows_affected() == 1)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn seal(&self, vendor: Vendor, vendor_user_id: &str, tokens: &TokenSet) -> (Vec<u8>, Option<Vec<u8>>) {
        let aad = row_aad(vendor, vendor_user_id);
        let access = self.cipher.encrypt(&aad, tokens.access_token.expose());
        let refresh = tokens.refresh_token.as_ref().map(|token| self.cipher.encrypt(&aad, token.expose()));
        (access, refresh)
    }

    fn open(&self, row: Row) -> Result<Connection, StoreError> {
        let (vendor, vendor_user_id, user_id, access, refresh, expires_at, scopes, status, status_reason, token_version) = row;
        let vendor = vendor_of(&vendor)?;
        let aad = row_aad(vendor, &vendor_user_id);
        let decrypt = |sealed: &[u8]| self.cipher.decrypt(&aad, sealed).map_err(|source| StoreError::Decrypt { row: aad.clone(), source });
        let access_token = decrypt(&access)?;
        let refresh_token = refresh.as_deref().map(decrypt).transpose()?;
        Ok(Connection {
            vendor,
            vendor_user_id,
            user_id,
            access_token,
            refresh_token,
            expires_at,
            scopes,
            status: status_of(&status)?,
            status_reason,
            token_version,
        })
    }

    /// Connects (or re-connects) a vendor account to our user: status active, new tokens, and
    /// the identity link (vendor, vendor_user_id) -> user_id, in one transaction.
    pub async fn upsert(&self, vendor: Vendor, vendor_user_id: &str, user_id: &str, tokens: &TokenSet) -> sqlx::Result<()> {
        let (access, refresh) = self.seal(vendor, vendor_user_id, tokens);
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO vendor_connections
                 (vendor, vendor_user_id, user_id, access_token, refresh_token, expires_at, scopes, status, status_reason, token_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', NULL, 1)
             ON CONFLICT (vendor, vendor_user_id) DO UPDATE
             SET user_id = EXCLUDED.user_id, access_token = EXCLUDED.access_token, refresh_token = EXCLUDED.refresh_token,
                 expires_at = EXCLUDED.expires_at, scopes = EXCLUDED.scopes, status = 'active', status_reason = NULL,
                 token_version = vendor_connections.token_version + 1, updated_at = now()",
        )
        .bind(vendor.symbol())
        .bind(vendor_user_id)
        .bind(user_id)
        .bind(&access)
        .bind(&refresh)
        .bind(tokens.expires_at)
        .bind(&tokens.scopes)
        .execute(&mut *transaction)
        .await?;
        // Same statement as `identity.rs` (Terra auth events); the provider is kept as it was.
        sqlx::query(
            "INSERT INTO identity_links (vendor, vendor_user_id, user_id, provider, active) VALUES ($1, $2, $3, NULL, TRUE)
             ON CONFLICT (vendor, vendor_user_id) DO UPDATE
             SET user_id = EXCLUDED.user_id, active = TRUE, updated_at = now()",
        )
        .bind(vendor.symbol())
        .bind(vendor_user_id)
        .bind(user_id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await
    }

    /// The connection with decrypted tokens, whatever its status.
    pub async fn get(&self, vendor: Vendor, vendor_user_id: &str) -> Result<Option<Connection>, StoreError> {
        let row: Option<Row> =
            sqlx::query_as(concat!("SELECT ", columns!(), " FROM vendor_connections WHERE vendor = $1 AND vendor_user_id = $2"))
                .bind(vendor.symbol())
                .bind(vendor_user_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| self.open(row)).transpose()
    }

    /// Stores the result of a refresh and increments `token_version`. A refresh answer without a
    /// refresh token (or scopes) keeps the stored one. The status is left as it is: a connection
    /// revoked meanwhile stays revoked.
    pub async fn store_refreshed(&self, vendor: Vendor, vendor_user_id: &str, tokens: &TokenSet) -> sqlx::Result<()> {
        self.store_refreshed_version(vendor, vendor_user_id, tokens).await.map(|_| ())
    }

    /// [`ConnectionStore::store_refreshed`], returning the new version (None: no such row).
    pub(crate) async fn store_refreshed_version(
        &self,
        vendor: Vendor,
        vendor_user_id: &str,
        tokens: &TokenSet,
    ) -> sqlx::Result<Option<i64>> {
        let (access, refresh) = self.seal(vendor, vendor_user_id, tokens);
        sqlx::query_scalar(
            "UPDATE vendor_connections
             SET access_token = $3, refresh_token = COALESCE($4, refresh_token), expires_at = $5,
                 scopes = COALESCE($6, scopes), token_version = token_version + 1, updated_at = now()
             WHERE vendor = $1 AND vendor_user_id = $2
             RETURNING token_version",
        )
        .bind(vendor.symbol())
        .bind(vendor_user_id)
        .bind(&access)
        .bind(&refresh)
        .bind(tokens.expires_at)
        .bind(&tokens.scopes)
        .fetch_optional(&self.pool)
        .await
    }

    /// Sets the status; false when there is no such connection.
    pub async fn set_status(
        &self,
        vendor: Vendor,
        vendor_user_id: &str,
        status: ConnectionStatus,
        reason: Option<&str>,
    ) -> sqlx::Result<bool> {
        set_status(&self.pool, vendor, vendor_user_id, status, reason).await
    }

    /// Marks the connection `needs_reauth` only if its tokens are still those of `version`: when
    /// the user re-connected meanwhile, the refusal concerned the old tokens. True if marked.
    pub(crate) async fn mark_needs_reauth_at(
        &self,
        vendor: Vendor,
        vendor_user_id: &str,
        reason: &str,
        version: i64,
    ) -> sqlx::Result<bool> {
        let result = sqlx::query(
            "UPDATE vendor_connections SET status = 'needs_reauth', status_reason = $3, updated_at = now()
             WHERE vendor = $1 AND vendor_user_id = $2 AND token_version = $4",
        )
        .bind(vendor.symbol())
        .bind(vendor_user_id)
        .bind(reason)
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    pub async fn list(&self, vendor: Option<Vendor>, status: Option<ConnectionStatus>) -> sqlx::Result<Vec<ConnectionSummary>> {
        list(&self.pool, vendor, status).await
    }

    /// Every active connection of `vendor`, with tokens (the reconciliation job's worklist). A
    /// row whose tokens do not decrypt is left out and logged (its name, never a token), so one
    /// bad row does not stop the others.
    pub async fn active(&self, vendor: Vendor) -> Result<Vec<Connection>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM vendor_connections WHERE vendor = $1 AND status = 'active' ORDER BY vendor_user_id"
        ))
        .bind(vendor.symbol())
        .fetch_all(&self.pool)
        .await?;
        let mut connections = Vec::with_capacity(rows.len());
        for row in rows {
            match self.open(row) {
                Ok(connection) => connections.push(connection),
                Err(error @ StoreError::Decrypt { .. }) => {
                    crate::metrics::ERRORS.with_label_values(&["connections", "token_decrypt_failed"]).inc();
                    tracing::error!(%error, "Skipping a connection whose tokens do not decrypt.");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(connections)
    }
}

/// Connections without tokens, filtered; needs no encryption key (`connections list`).
pub async fn list(pool: &PgPool, vendor: Option<Vendor>, status: Option<ConnectionStatus>) -> sqlx::Result<Vec<ConnectionSummary>> {
    type SummaryRow = (String, String, String, Option<DateTime<Utc>>, Option<String>, String, Option<String>, DateTime<Utc>);
    let rows: Vec<SummaryRow> = sqlx::query_as(
        "SELECT vendor, vendor_user_id, user_id, expires_at, scopes, status, status_reason, updated_at
         FROM vendor_connections
         WHERE ($1::text IS NULL OR vendor = $1) AND ($2::text IS NULL OR status = $2)
         ORDER BY vendor, user_id, vendor_user_id",
    )
    .bind(vendor.map(Vendor::symbol))
    .bind(status.map(ConnectionStatus::as_str))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(vendor, vendor_user_id, user_id, expires_at, scopes, status, status_reason, updated_at)| {
            let vendor = vendor_of(&vendor).map_err(|error| sqlx::Error::Decode(error.into()))?;
            let status = status_of(&status).map_err(|error| sqlx::Error::Decode(error.into()))?;
            Ok(ConnectionSummary { vendor, vendor_user_id, user_id, expires_at, scopes, status, status_reason, updated_at })
        })
        .collect()
}

/// Sets a connection's status; needs no encryption key (`connections revoke`). False when there
/// is no such connection.
pub async fn set_status(
    pool: &PgPool,
    vendor: Vendor,
    vendor_user_id: &str,
    status: ConnectionStatus,
    reason: Option<&str>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE vendor_connections SET status = $3, status_reason = $4, updated_at = now() WHERE vendor = $1 AND vendor_user_id = $2",
    )
    .bind(vendor.symbol())
    .bind(vendor_user_id)
    .bind(status.as_str())
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_with_the_database_spelling() {
        for status in [ConnectionStatus::Active, ConnectionStatus::Revoked, ConnectionStatus::NeedsReauth] {
            assert_eq!(ConnectionStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ConnectionStatus::NeedsReauth.as_str(), "needs_reauth");
        assert_eq!(ConnectionStatus::parse("needs-reauth"), Some(ConnectionStatus::NeedsReauth));
        assert_eq!(ConnectionStatus::parse("paused"), None);
    }
}
