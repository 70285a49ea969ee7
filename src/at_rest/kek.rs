//! The key-encryption key: `DATA_ENCRYPTION_KEY` wraps every per-user data key stored in
//! PostgreSQL, so a copy of the `data_keys` table (a backup, a replica) opens nothing on its own.
//!
//! Wrapped form: the [`Keyring`]'s (`0x01` ‖ 12-byte nonce ‖ ChaCha20-Poly1305(data key)), with
//! the data key's id as associated data (a wrapped key copied onto another row does not unwrap). During a rotation the
//! old key is `DATA_ENCRYPTION_KEY_PREVIOUS`: keys are unwrapped under either and wrapped under
//! the new one, and `keys rotate` rewraps every row, after which the old key can go. Kafka data
//! is never re-encrypted: only the wrapping changes.

use crate::keyring::{Keyring, OpenedWith, aead_from_secret};
use crate::secret::{Secret, load_secret};

/// The secret holding the key-encryption key (or `DATA_ENCRYPTION_KEY_FILE`).
pub const KEY_SECRET: &str = "DATA_ENCRYPTION_KEY";
/// The key being rotated away from (or `DATA_ENCRYPTION_KEY_PREVIOUS_FILE`): read, never written.
pub const PREVIOUS_KEY_SECRET: &str = "DATA_ENCRYPTION_KEY_PREVIOUS";
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KekError {
    /// Only the shape is described, never the value.
    #[error("{0} must be 32 bytes, written as 64 hex characters or standard base64 (e.g. `openssl rand -hex 32`)")]
    Malformed(&'static str),
    #[error("a stored data key does not unwrap under DATA_ENCRYPTION_KEY (nor DATA_ENCRYPTION_KEY_PREVIOUS): wrong key, or a tampered row")]
    Unwrap,
}

pub struct Kek {
    keys: Keyring,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    pub fn from_secrets(current: &Secret, previous: Option<&Secret>) -> Result<Kek, KekError> {
        let keys = Keyring::new(aead_from_secret(current).ok_or(KekError::Malformed(KEY_SECRET))?);
        Ok(Kek {
            keys: match previous {
                Some(previous) => keys.with_previous(aead_from_secret(previous).ok_or(KekError::Malformed(PREVIOUS_KEY_SECRET))?),
                None => keys,
            },
        })
    }

    /// From `DATA_ENCRYPTION_KEY` (and `_PREVIOUS`); `None` when the key is not set.
    pub fn from_env() -> anyhow::Result<Option<Kek>> {
        let Some(current) = load_secret(KEY_SECRET)? else {
            anyhow::ensure!(load_secret(PREVIOUS_KEY_SECRET)?.is_none(), "DATA_ENCRYPTION_KEY_PREVIOUS is set without DATA_ENCRYPTION_KEY");
            return Ok(None);
        };
        Ok(Some(Kek::from_secrets(&current, load_secret(PREVIOUS_KEY_SECRET)?.as_ref())?))
    }

    pub fn wrap(&self, key_id: uuid::Uuid, key: &[u8]) -> Vec<u8> {
        self.keys.seal(key_id.as_bytes(), key)
    }

    /// The data key's bytes, and which key-encryption key unwrapped them.
    pub fn unwrap(&self, key_id: uuid::Uuid, wrapped: &[u8]) -> Result<(Vec<u8>, OpenedWith), KekError> {
        self.keys.open(key_id.as_bytes(), wrapped).map_err(|_| KekError::Unwrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(current: &str, previous: Option<&str>) -> Kek {
        Kek::from_secrets(&Secret::new(current), previous.map(Secret::new).as_ref()).unwrap()
    }

    #[test]
    fn a_wrapped_key_unwraps_under_the_current_or_the_previous_key_only() {
        let (old, new) = ("11".repeat(32), "22".repeat(32));
        let id = uuid::Uuid::new_v4();
        let wrapped = kek(&old, None).wrap(id, &[7; 32]);
        assert_eq!(kek(&old, None).unwrap(id, &wrapped), Ok((vec![7; 32], OpenedWith::Current)));
        assert_eq!(kek(&new, Some(&old)).unwrap(id, &wrapped), Ok((vec![7; 32], OpenedWith::Previous)));
        assert_eq!(kek(&new, None).unwrap(id, &wrapped), Err(KekError::Unwrap));
        assert_eq!(kek(&old, None).unwrap(uuid::Uuid::new_v4(), &wrapped), Err(KekError::Unwrap), "bound to its key id");
    }

    #[test]
    fn a_malformed_key_is_refused_without_echoing_it() {
        let error = Kek::from_secrets(&Secret::new("not-a-key-at-all"), None).unwrap_err().to_string();
        assert!(error.contains("DATA_ENCRYPTION_KEY") && !error.contains("not-a-key"), "{error}");
        assert!(format!("{:?}", kek(&"11".repeat(32), None)).contains("redacted"));
    }
}
