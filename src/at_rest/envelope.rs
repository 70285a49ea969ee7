//! The sealed form of a record value at rest (crypto-shredding).
//!
//! ```text
//! MAGIC (5 bytes, "\0bbs1") ‖ data key id (16 bytes) ‖ nonce (12 bytes) ‖ ChaCha20-Poly1305 ciphertext + tag
//! plaintext = vendor user id length (u16, big-endian) ‖ vendor user id ‖ body, byte for byte
//! ```
//!
//! The magic starts with a NUL byte, which no JSON body can (and the raw topics hold JSON
//! only), so a sealed value is told apart from a plaintext one written before encryption was
//! on. The associated data is the magic and the key id: a value re-labelled with another key id
//! does not open. The vendor user id travels inside the seal rather than in a header, so the
//! record's headers and key at rest never name the person.

use chacha20poly1305::aead::{Aead, AeadInOut, Generate, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

pub const MAGIC: &[u8; 5] = b"\0bbs1";
const KEY_ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
/// How much larger than the body a sealed value of the ingress can be (its user ids are at most
/// 256 bytes): topic and producer size limits allow for it.
pub const MAX_OVERHEAD: usize = HEADER_LEN + TAG_LEN + 2 + 256;

/// What a sealed value says before it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed<'a> {
    pub key_id: uuid::Uuid,
    nonce: &'a [u8],
    ciphertext: &'a [u8],
    aad: &'a [u8],
}

/// An opened value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub vendor_user_id: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Tampered bytes, or a key that is not the one named (never expected: the id selects it).
    #[error("the sealed value does not authenticate under its data key")]
    Authentication,
    #[error("the sealed value's plaintext is malformed")]
    Malformed,
}

/// Whether `value` is sealed; `None` for a plaintext value (or one too short to be sealed).
pub fn parse(value: &[u8]) -> Option<Sealed<'_>> {
    if value.len() < HEADER_LEN + TAG_LEN || !value.starts_with(MAGIC) {
        return None;
    }
    let key_id = uuid::Uuid::from_slice(&value[MAGIC.len()..MAGIC.len() + KEY_ID_LEN]).ok()?;
    Some(Sealed {
        key_id,
        nonce: &value[MAGIC.len() + KEY_ID_LEN..HEADER_LEN],
        ciphertext: &value[HEADER_LEN..],
        aad: &value[..MAGIC.len() + KEY_ID_LEN],
    })
}

/// Seals `body` (and the vendor user id it is about) under data key `key_id`.
pub fn seal(aead: &ChaCha20Poly1305, key_id: uuid::Uuid, vendor_user_id: Option<&str>, body: &[u8]) -> Vec<u8> {
    // An id longer than u16 cannot come from the ingress (it bounds ids at 256 bytes).
    let user = vendor_user_id.unwrap_or_default().as_bytes();
    let user = &user[..user.len().min(u16::MAX as usize)];
    // One buffer, sealed in place: the body is copied once, not three times.
    let mut out = Vec::with_capacity(HEADER_LEN + 2 + user.len() + body.len() + TAG_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key_id.as_bytes());
    let nonce = Nonce::generate();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&(user.len() as u16).to_be_bytes());
    out.extend_from_slice(user);
    out.extend_from_slice(body);
    let (header, plaintext) = out.split_at_mut(HEADER_LEN);
    let tag = aead
        .encrypt_inout_detached(&nonce, &header[..MAGIC.len() + KEY_ID_LEN], plaintext.into())
        .expect("ChaCha20-Poly1305 encryption only fails for inputs beyond 256 GiB");
    out.extend_from_slice(&tag);
    out
}

impl Sealed<'_> {
    pub fn open(&self, aead: &ChaCha20Poly1305) -> Result<Opened, OpenError> {
        let nonce = Nonce::try_from(self.nonce).map_err(|_| OpenError::Malformed)?;
        let plaintext = aead.decrypt(&nonce, Payload { msg: self.ciphertext, aad: self.aad }).map_err(|_| OpenError::Authentication)?;
        let (length, rest) = plaintext.split_at_checked(2).ok_or(OpenError::Malformed)?;
        let length = u16::from_be_bytes([length[0], length[1]]) as usize;
        let (user, body) = rest.split_at_checked(length).ok_or(OpenError::Malformed)?;
        let vendor_user_id = match user {
            [] => None,
            user => Some(String::from_utf8(user.to_vec()).map_err(|_| OpenError::Malformed)?),
        };
        Ok(Opened { vendor_user_id, body: body.to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use chacha20poly1305::KeyInit;

    use super::*;

    fn key(byte: u8) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new_from_slice(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_sealed_body_opens_byte_for_byte_and_hides_its_contents() {
        let body = br#"{"user":{"user_id":"terra-user-1"},"data":[{"hrv_rmssd":41.5}]}"#;
        let id = uuid::Uuid::new_v4();
        let sealed = seal(&key(1), id, Some("terra-user-1"), body);
        assert!(!sealed.windows(10).any(|w| w == b"terra-user"), "neither the user nor the body in the clear");
        assert!(!sealed.windows(8).any(|w| w == b"hrv_rmss"));
        let parsed = parse(&sealed).expect("recognised as sealed");
        assert_eq!(parsed.key_id, id);
        let opened = parsed.open(&key(1)).unwrap();
        assert_eq!(opened, Opened { vendor_user_id: Some("terra-user-1".into()), body: body.to_vec() });
        assert_ne!(seal(&key(1), id, None, body), seal(&key(1), id, None, body), "a fresh nonce per record");
        assert_eq!(parse(&seal(&key(1), id, None, b"")).unwrap().open(&key(1)).unwrap().vendor_user_id, None);
    }

    #[test]
    fn plaintext_values_are_not_taken_for_sealed_ones() {
        assert_eq!(parse(br#"{"type":"sleep","user":{"user_id":"u"},"data":[]}"#), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(MAGIC), None, "too short to hold a key id, a nonce and a tag");
    }

    #[test]
    fn another_key_or_a_changed_key_id_does_not_open() {
        let sealed = seal(&key(1), uuid::Uuid::new_v4(), Some("u"), b"{}");
        assert_eq!(parse(&sealed).unwrap().open(&key(2)), Err(OpenError::Authentication));
        let mut relabelled = sealed.clone();
        relabelled[MAGIC.len()] ^= 1;
        assert_eq!(parse(&relabelled).unwrap().open(&key(1)), Err(OpenError::Authentication));
        let mut tampered = sealed;
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(parse(&tampered).unwrap().open(&key(1)), Err(OpenError::Authentication));
    }
}
