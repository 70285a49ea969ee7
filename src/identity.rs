//! Identity mapping: which of our users a vendor's user id belongs to.
//!
//! The table `identity_links` (PostgreSQL) is written by Terra's auth / deauth / user_reauth
//! events and read for every event whose payload does not name our user. Reads go through an
//! in-process cache (known links for [`POSITIVE_TTL`], unknown ids for [`NEGATIVE_TTL`]) so
//! PostgreSQL is not on the per-record path. An unknown user keeps a vendor-scoped id
//! (`oura:<id>`) rather than being dropped; once a link exists, later events use it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::event::Vendor;
use crate::vendors::IdentityChange;

pub const POSITIVE_TTL: Duration = Duration::from_secs(300);
pub const NEGATIVE_TTL: Duration = Duration::from_secs(60);
const MAX_ENTRIES: usize = 200_000;

pub struct IdentityMap {
    pool: PgPool,
    cache: HashMap<(Vendor, String), (Option<String>, Instant)>,
}

impl IdentityMap {
    pub fn new(pool: PgPool) -> Self {
        IdentityMap { pool, cache: HashMap::new() }
    }

    /// The cached answer for a vendor user, while it is fresh: `Some(link)` (the link may be
    /// `None`: known to be unlinked), or `None` when PostgreSQL must be asked. Synchronous, so
    /// the transaction loop pays nothing async on the common path.
    pub fn cached(&self, vendor: Vendor, vendor_user_id: &str) -> Option<Option<String>> {
        // The map is keyed by owned strings; a lookup allocates one small key.
        let (user, at) = self.cache.get(&(vendor, vendor_user_id.to_owned()))?;
        let ttl = if user.is_some() { POSITIVE_TTL } else { NEGATIVE_TTL };
        (at.elapsed() < ttl).then(|| user.clone())
    }

    /// Our user id for a vendor user, if linked. Err only when PostgreSQL cannot be reached.
    pub async fn lookup(&mut self, vendor: Vendor, vendor_user_id: &str) -> sqlx::Result<Option<String>> {
        if let Some(answer) = self.cached(vendor, vendor_user_id) {
            return Ok(answer);
        }
        let key = (vendor, vendor_user_id.to_owned());
        let user: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM identity_links WHERE vendor = $1 AND vendor_user_id = $2 AND active")
                .bind(vendor.symbol())
                .bind(vendor_user_id)
                .fetch_optional(&self.pool)
                .await?;
        self.remember(key, user.clone());
        Ok(user)
    }

    fn remember(&mut self, key: (Vendor, String), user: Option<String>) {
        if self.cache.len() >= MAX_ENTRIES {
            self.cache.clear();
        }
        self.cache.insert(key, (user, Instant::now()));
    }

    /// Applies a link change (idempotent upserts: replaying the same change is harmless).
    pub async fn apply(&mut self, change: &IdentityChange) -> sqlx::Result<()> {
        match change {
            IdentityChange::Link { vendor, vendor_user_id, user_id, provider } => {
                upsert(&self.pool, *vendor, vendor_user_id, user_id, provider.as_deref(), true).await?;
                self.remember((*vendor, vendor_user_id.clone()), Some(user_id.clone()));
            }
            IdentityChange::Unlink { vendor, vendor_user_id } => {
                sqlx::query("UPDATE identity_links SET active = FALSE, updated_at = now() WHERE vendor = $1 AND vendor_user_id = $2")
                    .bind(vendor.symbol())
                    .bind(vendor_user_id)
                    .execute(&self.pool)
                    .await?;
                self.cache.remove(&(*vendor, vendor_user_id.clone()));
            }
            IdentityChange::Rekey { vendor, old_vendor_user_id, new_vendor_user_id, user_id, provider } => {
                let mut transaction = self.pool.begin().await?;
                sqlx::query("UPDATE identity_links SET active = FALSE, updated_at = now() WHERE vendor = $1 AND vendor_user_id = $2")
                    .bind(vendor.symbol())
                    .bind(old_vendor_user_id)
                    .execute(&mut *transaction)
                    .await?;
                upsert(&mut *transaction, *vendor, new_vendor_user_id, user_id, provider.as_deref(), true).await?;
                transaction.commit().await?;
                self.cache.remove(&(*vendor, old_vendor_user_id.clone()));
                self.remember((*vendor, new_vendor_user_id.clone()), Some(user_id.clone()));
            }
        }
        Ok(())
    }

    /// A cheap round trip, to learn when PostgreSQL is back after an outage.
    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }
}

async fn upsert<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    vendor: Vendor,
    vendor_user_id: &str,
    user_id: &str,
    provider: Option<&str>,
    active: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO identity_links (vendor, vendor_user_id, user_id, provider, active) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (vendor, vendor_user_id) DO UPDATE
         SET user_id = EXCLUDED.user_id, provider = COALESCE(EXCLUDED.provider, identity_links.provider),
             active = EXCLUDED.active, updated_at = now()",
    )
    .bind(vendor.symbol())
    .bind(vendor_user_id)
    .bind(user_id)
    .bind(provider)
    .bind(active)
    .execute(executor)
    .await
    .map(|_| ())
}
