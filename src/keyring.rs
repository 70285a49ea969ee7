//! A ChaCha20-Poly1305 key and, while a rotation is under way, the key it replaces: what
//! `TOKEN_ENCRYPTION_KEY` (OAuth tokens) and `DATA_ENCRYPTION_KEY` (the per-user data keys) each
//! are, with their `_PREVIOUS`.
//!
//! Stored form: `0x01` (format version, so the scheme can change without guessing) ‖ 12-byte
//! random nonce ‖ ciphertext and 16-byte tag. Sealing always uses the current key; opening tries
//! the current key, then the previous one, and says which opened it, so a rotation command can
//! rewrite exactly what is still under the old key.

use base64::Engine;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

use crate::secret::Secret;

const VERSION: u8 = 0x01;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Which key opened a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenedWith {
    Current,
    Previous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    UnknownVersion(u8),
    Truncated,
    /// Neither key opens it: a wrong key, tampered bytes, or another associated data.
    Authentication,
}

/// A ChaCha20-Poly1305 key from its secret: 32 bytes as 64 hex characters or standard base64;
/// `None` when it is neither.
pub fn aead_from_secret(secret: &Secret) -> Option<ChaCha20Poly1305> {
    let text = secret.expose().trim();
    let bytes = if text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        hex::decode(text).ok()?
    } else {
        base64::engine::general_purpose::STANDARD.decode(text).ok()?
    };
    ChaCha20Poly1305::new_from_slice(&bytes).ok()
}

pub struct Keyring {
    current: ChaCha20Poly1305,
    previous: Option<ChaCha20Poly1305>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(<keys redacted>)")
    }
}

impl Keyring {
    pub fn new(current: ChaCha20Poly1305) -> Keyring {
        Keyring { current, previous: None }
    }

    /// Also opens what was sealed under `previous` (a rotation in progress).
    pub fn with_previous(mut self, previous: ChaCha20Poly1305) -> Keyring {
        self.previous = Some(previous);
        self
    }

    /// Seals `msg`, bound to `aad`, under the current key.
    pub fn seal(&self, aad: &[u8], msg: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let sealed =
            self.current.encrypt(&nonce, Payload { msg, aad }).expect("ChaCha20-Poly1305 encryption only fails for inputs beyond 256 GiB");
        let mut stored = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        stored.push(VERSION);
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&sealed);
        stored
    }

    /// Opens a value [`Keyring::seal`] stored with the same `aad`, under either key.
    pub fn open(&self, aad: &[u8], stored: &[u8]) -> Result<(Vec<u8>, OpenedWith), OpenError> {
        let (&version, rest) = stored.split_first().ok_or(OpenError::Truncated)?;
        if version != VERSION {
            return Err(OpenError::UnknownVersion(version));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Truncated);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| OpenError::Truncated)?;
        let payload = || Payload { msg: sealed, aad };
        if let Ok(plain) = self.current.decrypt(&nonce, payload()) {
            return Ok((plain, OpenedWith::Current));
        }
        match &self.previous {
            Some(previous) => {
                previous.decrypt(&nonce, payload()).map(|plain| (plain, OpenedWith::Previous)).map_err(|_| OpenError::Authentication)
            }
            None => Err(OpenError::Authentication),
        }
    }
}
