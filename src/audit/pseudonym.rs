//! Keyed pseudonyms: a stable, unlinkable stand-in for a user id where the id itself must not be
//! stored (the audit log now; record keys at rest later). HMAC-SHA-256 under `PSEUDONYM_KEY`, so
//! nobody without the key can test a guessed id against a pseudonym, as they could an unkeyed hash.

use hmac::Mac;

use crate::secret::{Secret, load_secret};

/// Where the key comes from: `PSEUDONYM_KEY` or `PSEUDONYM_KEY_FILE`, 64 hex characters.
pub const KEY_SECRET: &str = "PSEUDONYM_KEY";

#[derive(Debug, thiserror::Error)]
pub enum PseudonymKeyError {
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error("PSEUDONYM_KEY must be 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`")]
    Malformed,
}

/// The pseudonym function, holding its key.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Secret,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<redacted>)")
    }
}

impl Pseudonymizer {
    pub fn from_secret(secret: &Secret) -> Result<Self, PseudonymKeyError> {
        match hex::decode(secret.expose()) {
            Ok(bytes) if bytes.len() == 32 => Ok(Pseudonymizer { key: secret.clone() }),
            _ => Err(PseudonymKeyError::Malformed),
        }
    }

    /// The key from the environment; `None` when it is not set.
    pub fn from_env() -> Result<Option<Self>, PseudonymKeyError> {
        load_secret(KEY_SECRET)?.map(|secret| Self::from_secret(&secret)).transpose()
    }

    /// `p_` and 32 hex characters (128 bits: collisions are out of reach for any user count).
    /// The domain string keeps this key's pseudonyms of users apart from any other use of it.
    pub fn user(&self, user_id: &str) -> String {
        let key = hex::decode(self.key.expose()).expect("checked when built");
        let mac = crate::vendors::signature::hmac_sha256(&key, &[b"user\0", user_id.as_bytes()]);
        format!("p_{}", hex::encode(&mac.finalize().into_bytes()[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_key(hex_key: &str) -> Pseudonymizer {
        Pseudonymizer::from_secret(&Secret::new(hex_key)).unwrap()
    }

    #[test]
    fn a_pseudonym_is_stable_per_key_and_never_the_id() {
        let a = with_key(&"11".repeat(32));
        let b = with_key(&"22".repeat(32));
        assert_eq!(a.user("user-42"), a.user("user-42"));
        assert_ne!(a.user("user-42"), a.user("user-43"));
        assert_ne!(a.user("user-42"), b.user("user-42"), "another key, another pseudonym");
        let pseudonym = a.user("user-42");
        assert!(pseudonym.starts_with("p_") && pseudonym.len() == 34 && !pseudonym.contains("42"), "{pseudonym}");
    }

    #[test]
    fn a_malformed_key_is_refused_without_echoing_it() {
        for bad in ["abc", &"zz".repeat(32), &"11".repeat(16)] {
            let error = Pseudonymizer::from_secret(&Secret::new(bad)).unwrap_err().to_string();
            assert!(!error.contains(bad), "{error}");
        }
        assert!(format!("{:?}", with_key(&"11".repeat(32))).contains("redacted"));
    }
}
