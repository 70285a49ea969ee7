//! `biometric-bridge users erase --user <id>`: removes what the project keeps about one person,
//! place by place, and says which places it could not clean (then it exits non-zero). Idempotent:
//! re-running it finishes what a previous run left (a vendor revocation that was pending).
//!
//! The order is chosen so that nothing new arrives about the person while the rest is deleted:
//! 1. **connections**: marked revoked first (no fetch uses their tokens from then on), then
//!    renamed to the person's pseudonym, revoked at the vendor (no webhook is sent for them any
//!    more) and deleted. A revocation the vendor does not confirm leaves the renamed row for the
//!    retry (`connections revoke --retry-pending`, the processor's reconciliation) to delete
//!    once it is confirmed;
//! 2. **upload tokens**: deleted, so the phone's next upload is refused (within the ingress's
//!    token cache, `TOKEN_CACHE_TTL_SECS`);
//! 3. **identity links, poll watermarks, history rows**: deleted in one transaction;
//! 4. **processors told**: an erasure record on every partition of the ingress topic; each
//!    task deletes the person's state from its stores (tombstones in the changelogs);
//! 5. **consumers told**: a `USER_ERASED` event on every output topic, on the person's
//!    partition after their data, so each consumer (the PostgreSQL sink too) deletes its copies.
//!
//! Kafka cannot delete single records. What the ingress sealed (`at_rest`) is shredded in step 3:
//! the person's data keys are deleted with their rows, and their raw webhooks, dead letters,
//! pending fetches and retries are unreadable from then on. The output topics' events stay
//! readable Avro until retention by design; consumers delete their copies on `USER_ERASED`.
//! Not yet cleaned, and reported as such: what Terra's own Kafka destination writes in the clear,
//! and its pointers' repartition copies (a pointer names no user, so there is no key to seal it
//! under), which go when their retention passes (the report gives it). The processor seals what
//! it makes from them about a person: re-keyed records and downloaded payloads.

mod notify;
mod places;

use anyhow::Context as _;
use sqlx::PgPool;

use crate::audit::{self, Action, Actor, Entry, Pseudonymizer};
use crate::config::DatabaseArgs;
use crate::connections::revoke::{RevokeArgs, Revoker};
use crate::connections::{ConnectionStore, OAuthArgs, TokenCipher};
use crate::topology::TopologyArgs;

pub use places::{Place, Report};

#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    /// Our user id of the person to erase.
    #[arg(long)]
    pub user: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub oauth: OAuthArgs,
    #[command(flatten)]
    pub revoke: RevokeArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,
    #[command(flatten)]
    pub kafka: crate::config::KafkaArgs,
    #[command(flatten)]
    pub registry: crate::config::RegistryArgs,
}

/// What the erase can use: without the token key, connections are revoked here but cannot be
/// revoked at the vendor.
pub struct Eraser<'a> {
    pub pool: &'a PgPool,
    pub pseudonyms: Option<&'a Pseudonymizer>,
    pub vendor: Option<(&'a ConnectionStore, &'a Revoker)>,
}

pub async fn run(args: EraseArgs) -> anyhow::Result<()> {
    let user = args.user.trim();
    anyhow::ensure!(!user.is_empty(), "--user is empty");
    let topology = args.topology.load()?;
    let pseudonyms = Pseudonymizer::from_env()?;
    let pool = args.database.migrated_pool().await?;
    let cipher = match TokenCipher::from_env() {
        Ok(cipher) => Some(cipher),
        Err(error) => {
            tracing::warn!(%error, "Without TOKEN_ENCRYPTION_KEY no connection can be revoked at its vendor.");
            None
        }
    };
    let store = cipher.map(|cipher| ConnectionStore::new(pool.clone(), cipher));
    let revoker = Revoker::new(&args.revoke, &args.oauth.whoop_api_base, args.oauth.clients()?)?;
    let eraser = Eraser { pool: &pool, pseudonyms: pseudonyms.as_ref(), vendor: store.as_ref().map(|store| (store, &revoker)) };

    // Before the rows that map them go: the stores are keyed by the vendors' ids too.
    let vendor_users = eraser.vendor_users(user).await.context("listing the person's vendor ids")?;
    let mut report = eraser.erase(user, &vendor_users).await?;
    let producer = notify::producer(&args.kafka)?;
    report.places.push(match notify::tell_processors(&producer, &topology, user, &vendor_users).await {
        Ok(place) => place,
        Err(error) => Place::unclean("stores", format!("the processors were not told: {error:#}; re-run users erase")),
    });
    // Last: consumers are told once nothing here can write about the person any more.
    report.places.push(match notify::tell_consumers(&producer, &args.registry, &topology, user).await {
        Ok(place) => place,
        Err(error) => Place::unclean("kafka.user_erased_events", format!("consumers were not told: {error:#}; re-run users erase")),
    });
    report.places.extend(places::kafka(&topology));
    print!("{}", report.render(user));

    let mut entry = Entry::new(Actor::operator(), Action::Erase).about(pseudonyms.as_ref(), user);
    for place in &report.places {
        entry = entry.detail(&place.name, if place.cleaned { place.count.into() } else { serde_json::Value::from("not cleaned") });
    }
    let unclean = report.unclean();
    let entry = if unclean.is_empty() { entry } else { entry.failed("incomplete") };
    audit::record_or_warn(&pool, &entry).await?;
    if !unclean.is_empty() {
        anyhow::bail!("{} place(s) still hold data about the person: {}", unclean.len(), unclean.join(", "));
    }
    Ok(())
}

impl Eraser<'_> {
    /// Steps 1 to 3 of the module's order; the report of each place.
    pub async fn erase(&self, user: &str, vendor_users: &[(crate::event::Vendor, String)]) -> anyhow::Result<Report> {
        let mut report = Report::default();
        report.places.extend(self.connections(user).await?);
        report.places.extend(self.rows(user, vendor_users).await.context("deleting the person's rows")?);
        Ok(report)
    }

    /// The person's ids at each vendor: identity links, connections (also those a previous erase
    /// kept for a pending revocation, under the pseudonym) and the history. A vendor id found in
    /// none of them (no link, no history yet) leaves its de-duplication marks to expire with the
    /// de-duplication window.
    pub async fn vendor_users(&self, user: &str) -> anyhow::Result<Vec<(crate::event::Vendor, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT vendor, vendor_user_id FROM identity_links WHERE user_id = $1
             UNION SELECT vendor, vendor_user_id FROM vendor_connections WHERE user_id = $1 OR (user_id = $2 AND erased_at IS NOT NULL)
             UNION SELECT DISTINCT vendor, vendor_user_id FROM biometric_events WHERE user_id = $1 AND vendor_user_id <> ''
             ORDER BY 1, 2",
        )
        .bind(user)
        .bind(self.kept_as(user))
        .fetch_all(self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(|(vendor, id)| Some((crate::connections::store::vendor_of(&vendor).ok()?, id))).collect())
    }

    /// The name a connection kept for its vendor revocation goes by.
    fn kept_as(&self, user: &str) -> String {
        self.pseudonyms.map_or_else(|| "erased".to_owned(), |pseudonyms| pseudonyms.user(user))
    }

    async fn connections(&self, user: &str) -> anyhow::Result<Vec<Place>> {
        use crate::connections::revoke::{self, Revoked};
        let kept_as = self.kept_as(user);
        // This person's connections, and those a previous erase kept for a pending revocation.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT vendor, vendor_user_id FROM vendor_connections
             WHERE (user_id = $1 AND erased_at IS NULL) OR (user_id = $2 AND erased_at IS NOT NULL) ORDER BY vendor",
        )
        .bind(user)
        .bind(&kept_as)
        .fetch_all(self.pool)
        .await?;
        let (mut deleted, mut pending) = (0u64, Vec::new());
        for (symbol, vendor_user) in rows {
            let vendor = crate::connections::store::vendor_of(&symbol)?;
            revoke::mark_revoked(self.pool, vendor, &vendor_user, "erased").await?;
            // Marked erased before the vendor is called: whatever happens next, the row no longer
            // names the person, and the one path that deletes erased rows once the vendor
            // confirmed (`forget_if_erased`, the pending-revocation retry's) deletes it.
            sqlx::query(
                "UPDATE vendor_connections SET user_id = $3, erased_at = COALESCE(erased_at, now()) WHERE vendor = $1 AND vendor_user_id = $2",
            )
            .bind(&symbol)
            .bind(&vendor_user)
            .bind(&kept_as)
            .execute(self.pool)
            .await?;
            let outcome = match self.vendor {
                Some((store, revoker)) => revoker.revoke(store, vendor, &vendor_user).await.unwrap_or_else(|error| {
                    tracing::warn!(vendor = vendor.slug(), %error, "A connection of the erased person cannot be revoked at the vendor.");
                    Revoked::Pending("token_unreadable".to_owned())
                }),
                None => Revoked::Pending("no TOKEN_ENCRYPTION_KEY".to_owned()),
            };
            revoke::record(self.pool, vendor, &vendor_user, &outcome).await?;
            match outcome {
                Revoked::Confirmed => deleted += u64::from(revoke::forget_if_erased(self.pool, vendor, &vendor_user).await?),
                Revoked::Pending(reason) => pending.push(format!("{} ({reason})", vendor.slug())),
            }
        }
        let mut places = vec![Place::cleaned("postgres.vendor_connections", deleted)];
        if !pending.is_empty() {
            places.push(Place::unclean(
                "vendor.revocation",
                format!(
                    "not confirmed by {}: the authorization is still granted there. The connection is kept, under the \
                     person's pseudonym, only to retry (connections revoke --retry-pending, the processor's reconciliation), \
                     and deleted once confirmed; or re-run users erase",
                    pending.join(", ")
                ),
            ));
        }
        Ok(places)
    }

    async fn rows(&self, user: &str, vendor_users: &[(crate::event::Vendor, String)]) -> sqlx::Result<Vec<Place>> {
        // Their data keys: every record sealed for them in Kafka is unreadable once this commits
        // (and every ingress forgets its cached keys, notified in the same transaction).
        let mut subjects: Vec<String> =
            vendor_users.iter().map(|(vendor, id)| crate::at_rest::keys::subject(*vendor, Some(id.as_str()))).collect();
        subjects.push(crate::at_rest::keys::subject(crate::event::Vendor::AppleHealth, Some(user)));
        let mut tx = self.pool.begin().await?;
        let keys = crate::at_rest::keys::erase(&mut tx, &subjects).await?;
        let tokens = sqlx::query("DELETE FROM ingest_tokens WHERE user_id = $1").bind(user).execute(&mut *tx).await?.rows_affected();
        let watermarks = sqlx::query(
            "DELETE FROM poll_watermarks w USING identity_links l
             WHERE l.user_id = $1 AND w.vendor = l.vendor AND w.vendor_user_id = l.vendor_user_id",
        )
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let links = sqlx::query("DELETE FROM identity_links WHERE user_id = $1").bind(user).execute(&mut *tx).await?.rows_affected();
        let history = sqlx::query("DELETE FROM biometric_events WHERE user_id = $1").bind(user).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(vec![
            Place::written(
                "kafka.at_rest",
                keys,
                format!(
                    "{keys} data key(s) deleted: the person's sealed webhooks, dead letters, pending fetches and retries \
                     are unreadable (crypto-shredded) until retention removes them"
                ),
            ),
            Place::cleaned("postgres.ingest_tokens", tokens),
            Place::cleaned("postgres.poll_watermarks", watermarks),
            Place::cleaned("postgres.identity_links", links),
            Place::cleaned("postgres.biometric_events", history),
        ])
    }
}
