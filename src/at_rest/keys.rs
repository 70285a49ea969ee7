//! Per-user data keys in PostgreSQL (`data_keys`), wrapped by the key-encryption key, with the
//! caches the ingress and the processors read them through.
//!
//! A subject is `<vendor>:<vendor user id>`: what the ingress knows about an upload before
//! anything is parsed past the user id. It has at most one key; erasing the subject deletes the
//! row, and every record sealed under it is then unreadable for good (crypto-shredding). A later
//! upload gets a new key with a new id.
//!
//! Cache invalidation: the erase deletes the rows and notifies `data_keys_erased` in the same
//! transaction; each ingress listens and forgets its subject cache, so no new record is sealed
//! under a deleted key (the listener's reconnects flush too, and a TTL bounds what a lost
//! notification could cost). Processors forget their key cache at the erasure record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Generate, KeyInit};
use sqlx::PgPool;

use super::kek::{Kek, KekError};

/// The channel an erase notifies on.
pub const ERASED_CHANNEL: &str = "data_keys_erased";
/// A cache grown past this is emptied (each entry is ~100 bytes; a user count far beyond it
/// costs a database round trip per cold user, nothing more).
const MAX_CACHED: usize = 200_000;

pub struct DataKey {
    pub id: uuid::Uuid,
    pub aead: ChaCha20Poly1305,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the data key store is unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Kek(#[from] KekError),
}

/// The subject a record about `vendor_user_id` at `vendor` is sealed for.
pub fn subject(vendor: crate::event::Vendor, vendor_user_id: Option<&str>) -> String {
    format!("{}:{}", vendor.slug(), vendor_user_id.unwrap_or_default())
}

pub struct DataKeys {
    pool: PgPool,
    kek: Kek,
    subject_ttl: Duration,
    /// The ingress's: subject -> its key, and when it was read.
    by_subject: Mutex<HashMap<String, (Arc<DataKey>, Instant)>>,
    /// The processors': key id -> key.
    by_id: Mutex<HashMap<uuid::Uuid, Arc<DataKey>>>,
}

impl DataKeys {
    pub fn new(pool: PgPool, kek: Kek, subject_ttl: Duration) -> DataKeys {
        DataKeys { pool, kek, subject_ttl, by_subject: Mutex::default(), by_id: Mutex::default() }
    }

    pub fn kek(&self) -> &Kek {
        &self.kek
    }

    fn key_of(&self, id: uuid::Uuid, wrapped: &[u8]) -> Result<Arc<DataKey>, KekError> {
        let (bytes, _) = self.kek.unwrap(id, wrapped)?;
        let aead = ChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| KekError::Unwrap)?;
        Ok(Arc::new(DataKey { id, aead }))
    }

    /// Fails when `DATA_ENCRYPTION_KEY` (or `_PREVIOUS`) does not unwrap the newest and the oldest
    /// stored data key: a wrong key would otherwise refuse every webhook of every known user, one
    /// 503 at a time, or stop every sealed partition. An unreachable database is not this
    /// check's to judge (the ingress starts without it and refuses uploads until it answers).
    pub async fn check_kek(&self) -> Result<(), KeyError> {
        let rows: Vec<(uuid::Uuid, Vec<u8>)> = sqlx::query_as(
            "(SELECT key_id, wrapped FROM data_keys ORDER BY created_at DESC LIMIT 1)
             UNION ALL (SELECT key_id, wrapped FROM data_keys ORDER BY created_at LIMIT 1)",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, wrapped) in rows {
            self.kek.unwrap(id, &wrapped)?;
        }
        Ok(())
    }

    /// The subject's key, created on its first upload.
    pub async fn for_subject(&self, subject: &str) -> Result<Arc<DataKey>, KeyError> {
        if let Some((key, read_at)) = self.by_subject.lock().expect("not poisoned").get(subject)
            && read_at.elapsed() < self.subject_ttl
        {
            return Ok(key.clone());
        }
        let id = uuid::Uuid::new_v4();
        let fresh: [u8; 32] = chacha20poly1305::Key::generate().into();
        let wrapped = self.kek.wrap(id, &fresh);
        // Inserted unless the subject has a key; either way the subject's key comes back. A
        // racing insert of the same subject is waited for by ON CONFLICT, then read.
        let row: Option<(uuid::Uuid, Vec<u8>)> = sqlx::query_as(
            "WITH inserted AS (
                 INSERT INTO data_keys (key_id, subject, wrapped) VALUES ($1, $2, $3)
                 ON CONFLICT (subject) DO NOTHING RETURNING key_id, wrapped)
             SELECT key_id, wrapped FROM inserted UNION ALL SELECT key_id, wrapped FROM data_keys WHERE subject = $2 LIMIT 1",
        )
        .bind(id)
        .bind(subject)
        .bind(&wrapped)
        .fetch_optional(&self.pool)
        .await?;
        let (id, wrapped) = match row {
            Some(row) => row,
            None => sqlx::query_as("SELECT key_id, wrapped FROM data_keys WHERE subject = $1").bind(subject).fetch_one(&self.pool).await?,
        };
        let key = self.key_of(id, &wrapped)?;
        let mut cache = self.by_subject.lock().expect("not poisoned");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(subject.to_owned(), (key.clone(), Instant::now()));
        Ok(key)
    }

    /// The key with id `id`; `None` once it was erased.
    pub async fn by_id(&self, id: uuid::Uuid) -> Result<Option<Arc<DataKey>>, KeyError> {
        if let Some(key) = self.by_id.lock().expect("not poisoned").get(&id) {
            return Ok(Some(key.clone()));
        }
        let wrapped: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT wrapped FROM data_keys WHERE key_id = $1").bind(id).fetch_optional(&self.pool).await?;
        let Some(wrapped) = wrapped else { return Ok(None) };
        let key = self.key_of(id, &wrapped)?;
        let mut cache = self.by_id.lock().expect("not poisoned");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(id, key.clone());
        Ok(Some(key))
    }

    /// Forgets every cached key (an erase happened somewhere).
    pub fn forget_cached(&self) {
        self.by_subject.lock().expect("not poisoned").clear();
        self.by_id.lock().expect("not poisoned").clear();
    }

    /// Until `stop`: forgets the cache on every erase notification, and whenever the listener had
    /// to reconnect (a notification may have been missed meanwhile).
    pub async fn follow_erasures(self: Arc<Self>, stop: crate::shutdown::CancellationToken) {
        loop {
            let listener = async {
                let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
                listener.listen(ERASED_CHANNEL).await?;
                self.forget_cached();
                loop {
                    listener.recv().await?;
                    tracing::info!("Data keys were erased: the cached keys are forgotten.");
                    self.forget_cached();
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                result = listener => if let Err(error) = result {
                    tracing::warn!(%error, "Lost the data-key erasure notifications; retrying in 5 s (keys are cached at most DATA_KEY_CACHE_TTL_SECS meanwhile).");
                    self.forget_cached();
                },
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }
}

/// Startup: a key-encryption key that does not unwrap the stored data keys is a fatal
/// misconfiguration; a database that does not answer yet is logged and left to the caller's
/// outage handling.
pub async fn refuse_a_wrong_kek(keys: &DataKeys) -> anyhow::Result<()> {
    match tokio::time::timeout(Duration::from_secs(10), keys.check_kek()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(KeyError::Kek(error))) => Err(anyhow::anyhow!(error).context("refusing to start")),
        Ok(Err(KeyError::Database(error))) => {
            tracing::warn!(%error, "Could not check DATA_ENCRYPTION_KEY against the stored data keys: the database does not answer.");
            Ok(())
        }
        Err(_) => {
            tracing::warn!("Could not check DATA_ENCRYPTION_KEY against the stored data keys within 10 s.");
            Ok(())
        }
    }
}

/// Deletes the subjects' data keys (in `tx`, which also notifies the ingresses on commit); how
/// many there were.
pub async fn erase(tx: &mut sqlx::PgConnection, subjects: &[String]) -> sqlx::Result<u64> {
    let deleted = sqlx::query("DELETE FROM data_keys WHERE subject = ANY($1)").bind(subjects).execute(&mut *tx).await?.rows_affected();
    sqlx::query("SELECT pg_notify($1, '')").bind(ERASED_CHANNEL).execute(&mut *tx).await?;
    Ok(deleted)
}
