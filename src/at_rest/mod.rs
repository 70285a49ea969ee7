//! Health data at rest in Kafka, sealed per person so an erase can shred it.
//!
//! Kafka cannot delete single records, so the ingress seals each raw webhook under a data key of
//! its subject (the vendor's user) before writing it ([`envelope`]); the keys live in PostgreSQL
//! wrapped by `DATA_ENCRYPTION_KEY` ([`kek`], [`keys`]). Wherever the processors copy a raw
//! record on (dead letters, pending fetches, fetch retries) they copy the sealed bytes. The
//! record's key names the data key's random id instead of the user, so one person's records still
//! share a partition, and nothing at rest links them to the person once the key row is gone.
//! `users erase` deletes the person's keys: their records stay in the topics until retention
//! removes them, unreadable.

pub mod cli;
pub mod envelope;
pub mod kek;
pub mod keys;

use std::sync::Arc;

pub use envelope::{Opened, Sealed};
pub use kek::Kek;
pub use keys::{DataKey, DataKeys, KeyError};

use crate::event::Vendor;

/// What reading a value at rest gave.
pub enum Reading {
    /// Not sealed (written before encryption was on, or by someone else: Terra's destination).
    Plain,
    Opened(Opened),
    /// Sealed under a key that was erased: the person asked to be forgotten.
    Erased {
        key_id: uuid::Uuid,
    },
}

/// Why a sealed value could not be read, other than an erased key.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("a sealed record, and DATA_ENCRYPTION_KEY is not set here")]
    NoKey,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("sealed record {key_id}: {source}")]
    Open { key_id: uuid::Uuid, source: envelope::OpenError },
}

/// Opens `value` if it is sealed.
pub async fn read(keys: Option<&DataKeys>, value: &[u8]) -> Result<Reading, ReadError> {
    let Some(sealed) = envelope::parse(value) else { return Ok(Reading::Plain) };
    let keys = keys.ok_or(ReadError::NoKey)?;
    match keys.by_id(sealed.key_id).await? {
        Some(key) => sealed.open(&key.aead).map(Reading::Opened).map_err(|source| ReadError::Open { key_id: sealed.key_id, source }),
        None => Ok(Reading::Erased { key_id: sealed.key_id }),
    }
}

/// A raw record as the ingress writes it when sealing.
pub struct SealedRecord {
    /// `<vendor>:k_<data key id>`: per person, naming nobody.
    pub key: String,
    pub value: Vec<u8>,
}

/// Seals `body` for the vendor's user.
pub async fn seal(keys: &DataKeys, vendor: Vendor, vendor_user_id: Option<&str>, body: &[u8]) -> Result<SealedRecord, KeyError> {
    let key = keys.for_subject(&keys::subject(vendor, vendor_user_id)).await?;
    Ok(SealedRecord {
        key: format!("{}:k_{}", vendor.slug(), key.id.simple()),
        value: envelope::seal(&key.aead, key.id, vendor_user_id, body),
    })
}

/// Opens sealed values from a blocking thread (the processor's loop, the DLQ commands): each
/// lookup is bounded, a hung database is an outage, not a hang.
pub struct BlockingReader {
    pub keys: Option<Arc<DataKeys>>,
    pub handle: tokio::runtime::Handle,
}

impl BlockingReader {
    pub fn read(&self, value: &[u8]) -> Result<Reading, ReadError> {
        // Plaintext values cost nothing: no runtime round trip.
        if envelope::parse(value).is_none() {
            return Ok(Reading::Plain);
        }
        self.bounded(read(self.keys.as_deref(), value))
    }

    /// Seals `body` for the vendor's user, as the ingress does; `None` when this process has no
    /// key-encryption key (it then writes in the clear, as it warned at start).
    pub fn seal(&self, vendor: Vendor, vendor_user_id: &str, body: &[u8]) -> Result<Option<SealedRecord>, KeyError> {
        let Some(keys) = self.keys.as_deref() else { return Ok(None) };
        self.bounded(seal(keys, vendor, Some(vendor_user_id), body)).map(Some)
    }

    /// Runs a key-store call to its end or for 5 s, whichever is first (then: the store is down).
    fn bounded<T, E: From<KeyError>>(&self, call: impl std::future::Future<Output = Result<T, E>>) -> Result<T, E> {
        self.handle
            .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(5), call).await })
            .unwrap_or_else(|_| Err(KeyError::Database(sqlx::Error::PoolTimedOut).into()))
    }

    pub fn forget_cached(&self) {
        if let Some(keys) = &self.keys {
            keys.forget_cached();
        }
    }
}
