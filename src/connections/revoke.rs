//! Revoking a user's authorization at the vendor.
//!
//! Marking a connection revoked here only stops *us* using its tokens; the vendor would go on
//! sending webhooks, and the user's authorization would stay granted. WHOOP documents
//! `DELETE /v2/user/access` with the user's bearer token ("once you revoke … no webhooks will be
//! sent"), Oura `https://api.ouraring.com/oauth/revoke?access_token=`. So a revocation:
//! 1. marks the connection revoked here at once, with the vendor revocation pending;
//! 2. calls the vendor (a few attempts; after a 401 the token is refreshed once and the call
//!    repeated, since an expired access token cannot revoke anything);
//! 3. clears the pending mark only when the vendor confirmed. A failure is reported (the command
//!    exits non-zero) and retried later by `connections revoke --retry-pending` and by the
//!    processor's scheduled reconciliation: never does anybody believe it worked when it did not.

use std::time::Duration;

use sqlx::PgPool;

use super::oauth::{OAuthClients, OAuthError};
use super::store::{ConnectionStatus, ConnectionStore};
use crate::event::Vendor;
use crate::secret::Secret;

/// Where each vendor's revocation is called.
#[derive(Debug, Clone, clap::Args)]
pub struct RevokeArgs {
    /// Oura's token revocation endpoint (`?access_token=` is appended).
    #[arg(long, env = "OURA_REVOKE_URL", default_value = "https://api.ouraring.com/oauth/revoke")]
    pub oura_revoke_url: String,
}

/// What a vendor revocation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// The vendor confirmed (or no longer knows the authorization: already gone).
    Confirmed,
    /// Not confirmed; retried later. The reason is a bounded class.
    Pending(String),
}

/// Calls the vendors' revocation endpoints.
pub struct Revoker {
    http: reqwest::Client,
    oura_revoke_url: String,
    whoop_api_base: String,
    clients: OAuthClients,
}

impl Revoker {
    pub fn new(args: &RevokeArgs, whoop_api_base: &str, clients: OAuthClients) -> anyhow::Result<Revoker> {
        Ok(Revoker {
            http: super::http::client(Duration::from_secs(10))?,
            oura_revoke_url: args.oura_revoke_url.clone(),
            whoop_api_base: whoop_api_base.trim_end_matches('/').to_owned(),
            clients,
        })
    }

    /// One call with `access_token`: `Ok(true)` confirmed, `Ok(false)` the token was refused
    /// (401), `Err` anything else.
    async fn call(&self, vendor: Vendor, access_token: &Secret) -> Result<bool, String> {
        let request = match vendor {
            Vendor::Oura => self.http.post(&self.oura_revoke_url).query(&[("access_token", access_token.expose())]),
            Vendor::Whoop => self.http.delete(format!("{}/v2/user/access", self.whoop_api_base)).bearer_auth(access_token.expose()),
            other => return Err(format!("{} has no revocation", other.slug())),
        };
        match request.send().await {
            // 404: the vendor no longer has this authorization: it is revoked all the same.
            Ok(response) if response.status().is_success() || response.status().as_u16() == 404 => Ok(true),
            Ok(response) if response.status().as_u16() == 401 => Ok(false),
            Ok(response) => Err(format!("http_{}", response.status().as_u16())),
            Err(error) if error.is_timeout() => Err("timeout".to_owned()),
            Err(_) => Err("network".to_owned()),
        }
    }

    /// Revokes the connection's authorization at the vendor (up to 3 attempts).
    pub async fn revoke(&self, store: &ConnectionStore, vendor: Vendor, vendor_user_id: &str) -> anyhow::Result<Revoked> {
        let Some(connection) = store.get(vendor, vendor_user_id).await? else {
            anyhow::bail!("no {} connection for vendor user {vendor_user_id}", vendor.slug());
        };
        let mut token = connection.access_token.clone();
        let mut refreshed = false;
        let mut last = String::new();
        for attempt in 0..3u32 {
            match self.call(vendor, &token).await {
                Ok(true) => return Ok(Revoked::Confirmed),
                Ok(false) if !refreshed => {
                    refreshed = true;
                    // An expired access token: one refresh (the refresh token may revoke as well).
                    match (self.clients.get(vendor), &connection.refresh_token) {
                        (Some(client), Some(refresh_token)) => match client.refresh(refresh_token).await {
                            Ok(tokens) => token = tokens.access_token,
                            // The grant is gone already: nothing left to revoke.
                            Err(OAuthError::InvalidGrant(_)) => return Ok(Revoked::Confirmed),
                            Err(error) => last = error.code().to_owned(),
                        },
                        _ => last = "unauthorized".to_owned(),
                    }
                }
                Ok(false) => last = "unauthorized".to_owned(),
                Err(reason) => last = reason,
            }
            if attempt < 2 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
        Ok(Revoked::Pending(last))
    }
}

/// Marks the connection revoked here with the vendor revocation pending; returns its user, or
/// `None` when there is no such connection.
pub async fn mark_revoked(pool: &PgPool, vendor: Vendor, vendor_user_id: &str, reason: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "UPDATE vendor_connections SET status = $3, status_reason = $4, vendor_revoke_pending = TRUE, updated_at = now()
         WHERE vendor = $1 AND vendor_user_id = $2 RETURNING user_id",
    )
    .bind(vendor.symbol())
    .bind(vendor_user_id)
    .bind(ConnectionStatus::Revoked.as_str())
    .bind(reason)
    .fetch_optional(pool)
    .await
}

/// Records what the vendor said.
pub async fn record(pool: &PgPool, vendor: Vendor, vendor_user_id: &str, outcome: &Revoked) -> sqlx::Result<()> {
    let (pending, error) = match outcome {
        Revoked::Confirmed => (false, None),
        Revoked::Pending(reason) => (true, Some(reason.as_str())),
    };
    crate::metrics::VENDOR_REVOCATIONS.with_label_values(&[vendor.slug(), if pending { "pending" } else { "confirmed" }]).inc();
    sqlx::query(
        "UPDATE vendor_connections SET vendor_revoke_pending = $3, vendor_revoke_error = $4,
             vendor_revoked_at = CASE WHEN $3 THEN vendor_revoked_at ELSE now() END, updated_at = now()
         WHERE vendor = $1 AND vendor_user_id = $2",
    )
    .bind(vendor.symbol())
    .bind(vendor_user_id)
    .bind(pending)
    .bind(error)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Deletes the connection if it belongs to an erased person (`users erase` kept it only until the
/// vendor confirmed); true if it did.
pub async fn forget_if_erased(pool: &PgPool, vendor: Vendor, vendor_user_id: &str) -> sqlx::Result<bool> {
    let deleted = sqlx::query("DELETE FROM vendor_connections WHERE vendor = $1 AND vendor_user_id = $2 AND erased_at IS NOT NULL")
        .bind(vendor.symbol())
        .bind(vendor_user_id)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Connections whose vendor revocation is still pending.
pub async fn pending(pool: &PgPool) -> sqlx::Result<Vec<(Vendor, String)>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT vendor, vendor_user_id FROM vendor_connections WHERE vendor_revoke_pending ORDER BY vendor, vendor_user_id")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().filter_map(|(vendor, user)| Some((super::store::vendor_of(&vendor).ok()?, user))).collect())
}

/// Retries every pending vendor revocation; returns (confirmed, still pending).
pub async fn retry_pending(
    revoker: &Revoker,
    store: &ConnectionStore,
    pool: &PgPool,
) -> anyhow::Result<(usize, Vec<(Vendor, String, String)>)> {
    let mut confirmed = 0;
    let mut still = Vec::new();
    for (vendor, user) in pending(pool).await? {
        // One connection's trouble (a token that no longer decrypts, a row gone meanwhile) is
        // that connection's: reported with it, never stopping the others' retries.
        let outcome = match revoker.revoke(store, vendor, &user).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(vendor = vendor.slug(), %error, "A pending vendor revocation cannot be retried.");
                Revoked::Pending("token_unreadable".to_owned())
            }
        };
        record(pool, vendor, &user, &outcome).await?;
        match outcome {
            Revoked::Confirmed => {
                forget_if_erased(pool, vendor, &user).await?;
                confirmed += 1;
            }
            Revoked::Pending(reason) => still.push((vendor, user, reason)),
        }
    }
    Ok((confirmed, still))
}

/// Retries pending vendor revocations every `every`, until shutdown (the processor's schedule).
pub async fn retry_scheduled(
    revoker: Revoker,
    store: ConnectionStore,
    pool: PgPool,
    every: Duration,
    shutdown: crate::shutdown::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        match retry_pending(&revoker, &store, &pool).await {
            Ok((confirmed, still)) if confirmed + still.len() > 0 => {
                tracing::info!(confirmed, pending = still.len(), "Retried pending vendor revocations.");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "Retrying pending vendor revocations failed; next run as scheduled."),
        }
    }
}
