//! Encryption of OAuth tokens at rest.
//!
//! A leaked `vendor_connections` table (a backup, a replica, a support dump) must not be a set of
//! live tokens, so each token is sealed with ChaCha20-Poly1305 under `TOKEN_ENCRYPTION_KEY`.
//! Stored form: `0x01` (format version, so the scheme can change without guessing) ‖ 12-byte
//! random nonce ‖ ciphertext and 16-byte tag. The associated data is the row's
//! `"<VENDOR>:<vendor_user_id>"` ([`row_aad`]): a ciphertext copied onto another row fails to
//! decrypt instead of handing one user's token to another user's fetches.
//!
//! Rotation: set the new key as `TOKEN_ENCRYPTION_KEY` and the old one as
//! `TOKEN_ENCRYPTION_KEY_PREVIOUS`; tokens are then read under either and written under the new
//! one, and `connections rotate-key` re-encrypts every stored token, after which the previous key
//! can go.

use crate::event::Vendor;
pub use crate::keyring::OpenedWith;
use crate::keyring::{Keyring, OpenError, aead_from_secret};
use crate::secret::Secret;

/// The secret holding the key (or `TOKEN_ENCRYPTION_KEY_FILE`).
pub const KEY_SECRET: &str = "TOKEN_ENCRYPTION_KEY";
/// The key being rotated away from (or `TOKEN_ENCRYPTION_KEY_PREVIOUS_FILE`): read, never written.
pub const PREVIOUS_KEY_SECRET: &str = "TOKEN_ENCRYPTION_KEY_PREVIOUS";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    /// The key never appears in the message, only what was wrong with its shape.
    #[error(
        "TOKEN_ENCRYPTION_KEY must be 32 bytes, written as standard base64 (44 characters) or 64 hex characters; \
         the value set ({length} characters) is neither"
    )]
    InvalidKey { length: usize },
    #[error("TOKEN_ENCRYPTION_KEY (or TOKEN_ENCRYPTION_KEY_FILE) is not set")]
    MissingKey,
    #[error("stored token has unknown format version {0}")]
    UnknownVersion(u8),
    #[error("stored token is truncated")]
    Truncated,
    /// Wrong key, tampered bytes, or a ciphertext that belongs to another row.
    #[error("stored token does not decrypt (wrong TOKEN_ENCRYPTION_KEY, tampered, or copied from another row)")]
    Authentication,
    #[error("decrypted token is not UTF-8")]
    NotUtf8,
}

impl From<OpenError> for CipherError {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::UnknownVersion(version) => CipherError::UnknownVersion(version),
            OpenError::Truncated => CipherError::Truncated,
            OpenError::Authentication => CipherError::Authentication,
        }
    }
}

/// Encrypts and decrypts tokens; cheap to share (`Arc`) between tasks.
pub struct TokenCipher {
    /// The key, and during a rotation the old one, tried when the current one does not open a token.
    keys: Keyring,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher(<key redacted>)")
    }
}

/// The associated data binding a ciphertext to its row.
pub fn row_aad(vendor: Vendor, vendor_user_id: &str) -> String {
    format!("{}:{vendor_user_id}", vendor.symbol())
}

impl TokenCipher {
    /// The key from its secret: 32 bytes as 64 hex characters or standard base64.
    pub fn from_secret(secret: &Secret) -> Result<Self, CipherError> {
        let aead = aead_from_secret(secret).ok_or(CipherError::InvalidKey { length: secret.expose().trim().chars().count() })?;
        Ok(TokenCipher { keys: Keyring::new(aead) })
    }

    /// Also reads tokens sealed under `previous` (a rotation in progress).
    pub fn with_previous(self, previous: &Secret) -> Result<Self, CipherError> {
        let previous = aead_from_secret(previous).ok_or(CipherError::InvalidKey { length: previous.expose().trim().chars().count() })?;
        Ok(TokenCipher { keys: self.keys.with_previous(previous) })
    }

    /// The cipher from `TOKEN_ENCRYPTION_KEY` / `TOKEN_ENCRYPTION_KEY_FILE`; an error when unset.
    pub fn from_env() -> anyhow::Result<Self> {
        let secret = crate::secret::load_secret(KEY_SECRET)?.ok_or(CipherError::MissingKey)?;
        Self::with_env_previous(Self::from_secret(&secret)?)
    }

    /// `cipher`, also reading under `TOKEN_ENCRYPTION_KEY_PREVIOUS` when that is set.
    pub fn with_env_previous(cipher: TokenCipher) -> anyhow::Result<Self> {
        match crate::secret::load_secret(PREVIOUS_KEY_SECRET)? {
            Some(previous) => Ok(cipher
                .with_previous(&previous)
                .map_err(|_| anyhow::anyhow!("TOKEN_ENCRYPTION_KEY_PREVIOUS must be 32 bytes, as standard base64 or 64 hex characters"))?),
            None => Ok(cipher),
        }
    }

    /// Seals `plaintext` for the row named by `aad` (see [`row_aad`]).
    pub fn encrypt(&self, aad: &str, plaintext: &str) -> Vec<u8> {
        self.keys.seal(aad.as_bytes(), plaintext.as_bytes())
    }

    /// Opens a stored token of the row named by `aad`.
    pub fn decrypt(&self, aad: &str, stored: &[u8]) -> Result<Secret, CipherError> {
        self.open(aad, stored).map(|(token, _)| token)
    }

    /// [`decrypt`](Self::decrypt), saying which key opened the token.
    pub fn open(&self, aad: &str, stored: &[u8]) -> Result<(Secret, OpenedWith), CipherError> {
        let (plain, with) = self.keys.open(aad.as_bytes(), stored)?;
        String::from_utf8(plain).map(|token| (Secret::new(token), with)).map_err(|_| CipherError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn cipher(key: &str) -> TokenCipher {
        TokenCipher::from_secret(&Secret::new(key)).unwrap()
    }

    #[test]
    fn round_trip_in_the_documented_format() {
        let cipher = cipher(HEX_KEY);
        let aad = row_aad(Vendor::Oura, "oura-user-1");
        assert_eq!(aad, "OURA:oura-user-1");
        let stored = cipher.encrypt(&aad, "access-token-value");
        assert_eq!(stored[0], 0x01);
        assert_eq!(stored.len(), 1 + 12 + "access-token-value".len() + 16);
        assert!(!stored.windows(6).any(|window| window == b"access"), "ciphertext holds no plaintext");
        assert_eq!(cipher.decrypt(&aad, &stored).unwrap().expose(), "access-token-value");
        assert_ne!(cipher.encrypt(&aad, "x"), cipher.encrypt(&aad, "x"), "a fresh nonce per token");
    }

    #[test]
    fn during_a_rotation_tokens_under_either_key_open_and_say_which() {
        let (old_key, new_key) = (HEX_KEY, "1f".repeat(32));
        let under_old = cipher(old_key).encrypt("OURA:u", "token-1");
        let rotating = cipher(&new_key).with_previous(&Secret::new(old_key)).unwrap();
        let under_new = rotating.encrypt("OURA:u", "token-2");
        assert_eq!(
            rotating.open("OURA:u", &under_old).map(|(t, w)| (t.expose().to_owned(), w)),
            Ok(("token-1".into(), OpenedWith::Previous))
        );
        assert_eq!(
            rotating.open("OURA:u", &under_new).map(|(t, w)| (t.expose().to_owned(), w)),
            Ok(("token-2".into(), OpenedWith::Current))
        );
        assert_eq!(cipher(&new_key).decrypt("OURA:u", &under_old).unwrap_err(), CipherError::Authentication, "without the previous key");
        assert_eq!(rotating.decrypt("OURA:v", &under_old).unwrap_err(), CipherError::Authentication, "still bound to its row");
    }

    #[test]
    fn base64_and_hex_keys_are_the_same_key() {
        let bytes = hex::decode(HEX_KEY).unwrap();
        let base64_key = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let stored = cipher(HEX_KEY).encrypt("OURA:u", "t");
        assert_eq!(cipher(&base64_key).decrypt("OURA:u", &stored).unwrap().expose(), "t");
    }

    #[test]
    fn wrong_key_fails() {
        let stored = cipher(HEX_KEY).encrypt("OURA:u", "t");
        let other = cipher(&"ab".repeat(32));
        assert_eq!(other.decrypt("OURA:u", &stored).unwrap_err(), CipherError::Authentication);
    }

    #[test]
    fn a_ciphertext_copied_onto_another_row_fails() {
        let cipher = cipher(HEX_KEY);
        let stored = cipher.encrypt(&row_aad(Vendor::Oura, "alice"), "t");
        assert_eq!(cipher.decrypt(&row_aad(Vendor::Oura, "mallory"), &stored).unwrap_err(), CipherError::Authentication);
        assert_eq!(cipher.decrypt(&row_aad(Vendor::Whoop, "alice"), &stored).unwrap_err(), CipherError::Authentication);
    }

    #[test]
    fn tampered_bytes_fail() {
        let cipher = cipher(HEX_KEY);
        let stored = cipher.encrypt("OURA:u", "token");
        for index in 1..stored.len() {
            let mut tampered = stored.clone();
            tampered[index] ^= 0x01;
            assert_eq!(cipher.decrypt("OURA:u", &tampered).unwrap_err(), CipherError::Authentication, "byte {index}");
        }
        let mut version = stored.clone();
        version[0] = 0x02;
        assert_eq!(cipher.decrypt("OURA:u", &version).unwrap_err(), CipherError::UnknownVersion(2));
        assert_eq!(cipher.decrypt("OURA:u", &stored[..20]).unwrap_err(), CipherError::Truncated);
        assert_eq!(cipher.decrypt("OURA:u", &[]).unwrap_err(), CipherError::Truncated);
    }

    #[test]
    fn key_errors_never_contain_the_key() {
        for bad in [
            "0123456789abcdef0123456789abcdef",                                 // 16 bytes of hex
            "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", // 64 chars, not hex
            "c2hvcnQta2V5LXZhbHVl",                                             // base64, 15 bytes
            "not a key at all: SUPERSECRETKEYMATERIAL",
        ] {
            let error = TokenCipher::from_secret(&Secret::new(bad)).unwrap_err();
            let text = format!("{error} {error:?}");
            assert!(matches!(error, CipherError::InvalidKey { .. }), "{bad}: {text}");
            assert!(!text.contains(bad) && !text.contains("SUPERSECRET"), "leaks the key: {text}");
        }
        assert!(!format!("{:?}", cipher(HEX_KEY)).contains("0001"), "Debug hides the key");
    }
}
