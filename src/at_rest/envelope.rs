//! The sealed form of a record value at rest (crypto-shredding).
//!
//! ```text
//! MAGIC (5 bytes, "\0bbs2") ‖ data key id (16 bytes) ‖ nonce (12 bytes) ‖ ChaCha20-Poly1305 ciphertext + tag
//! plaintext = vendor user id length (u16, big-endian) ‖ vendor user id ‖ codec (1 byte) ‖ body
//! body = the webhook byte for byte (codec 0), or its length (u32, big-endian) ‖ its LZ4 block (codec 1)
//! ```
//!
//! Why compress inside the seal: a sealed value is random bytes to the producer, whose snappy
//! used to shrink the JSON bodies (and batches of them) several times over before they reached
//! the broker and its disks; sealing alone then cost more in bytes written than in encryption.
//! LZ4 is the codec because it is the cheapest per byte in both directions. A body that does not
//! shrink is kept as it is. Values of the first format (`"\0bbs1"`, no codec byte, never
//! compressed) are still opened: they stay in the topics until retention.
//!
//! Compressing before encrypting makes the length of a value depend on its contents, not only
//! its size. Everything in a value is one person's data from their own vendor; nobody else's
//! input is mixed into it, so there is no chosen-plaintext oracle (the CRIME kind of attack) to
//! play against, and the size of a webhook was never hidden.
//!
//! The magic starts with a NUL byte, which no JSON body can (and the raw topics hold JSON
//! only), so a sealed value is told apart from a plaintext one written before encryption was
//! on. The associated data is the magic and the key id: a value re-labelled with another key id
//! does not open. The vendor user id travels inside the seal rather than in a header, so the
//! record's headers and key at rest never name the person.

use chacha20poly1305::aead::{Aead, AeadInOut, Generate, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

/// The format written.
pub const MAGIC: &[u8; 5] = b"\0bbs2";
/// The first format: still read.
const MAGIC_V1: &[u8; 5] = b"\0bbs1";
const KEY_ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
/// How much larger than the body a sealed value of the ingress can be (its user ids are at most
/// 256 bytes; a body that does not shrink is stored as it is): topic and producer size limits
/// allow for it.
pub const MAX_OVERHEAD: usize = HEADER_LEN + TAG_LEN + 2 + 256 + 1;
/// Bodies smaller than this are not worth compressing.
const COMPRESS_FROM: usize = 256;
/// The largest body a compressed value may claim to expand to: twice the largest record the
/// topics accept, so a value can never make a reader allocate without bound.
const MAX_BODY: usize = 128 * 1024 * 1024;
const CODEC_NONE: u8 = 0;
const CODEC_LZ4: u8 = 1;

/// What a sealed value says before it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed<'a> {
    pub key_id: uuid::Uuid,
    /// The first format has no codec byte.
    v1: bool,
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
    let v1 = value.starts_with(MAGIC_V1);
    if value.len() < HEADER_LEN + TAG_LEN || !(v1 || value.starts_with(MAGIC)) {
        return None;
    }
    let key_id = uuid::Uuid::from_slice(&value[MAGIC.len()..MAGIC.len() + KEY_ID_LEN]).ok()?;
    Some(Sealed {
        key_id,
        v1,
        nonce: &value[MAGIC.len() + KEY_ID_LEN..HEADER_LEN],
        ciphertext: &value[HEADER_LEN..],
        aad: &value[..MAGIC.len() + KEY_ID_LEN],
    })
}

/// Seals `body` (and the vendor user id it is about) under data key `key_id`, compressed when
/// that makes it smaller.
pub fn seal(aead: &ChaCha20Poly1305, key_id: uuid::Uuid, vendor_user_id: Option<&str>, body: &[u8]) -> Vec<u8> {
    // An id longer than u16 cannot come from the ingress (it bounds ids at 256 bytes).
    let user = vendor_user_id.unwrap_or_default().as_bytes();
    let user = &user[..user.len().min(u16::MAX as usize)];
    // One buffer, compressed into and sealed in place: the body is read once and not copied.
    let compress = body.len() >= COMPRESS_FROM && body.len() <= MAX_BODY;
    let room = if compress { 4 + lz4_flex::block::get_maximum_output_size(body.len()) } else { body.len() };
    let mut out = Vec::with_capacity(HEADER_LEN + 2 + user.len() + 1 + room + TAG_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key_id.as_bytes());
    let nonce = Nonce::generate();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&(user.len() as u16).to_be_bytes());
    out.extend_from_slice(user);
    let codec_at = out.len();
    out.push(CODEC_LZ4);
    let mut stored_raw = true;
    if compress {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let start = out.len();
        out.resize(start + room - 4, 0);
        match lz4_flex::block::compress_into(body, &mut out[start..]) {
            Ok(written) if 4 + written < body.len() => {
                out.truncate(start + written);
                stored_raw = false;
            }
            _ => out.truncate(codec_at + 1),
        }
    }
    if stored_raw {
        out[codec_at] = CODEC_NONE;
        out.extend_from_slice(body);
    }
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
        let (user, stored) = rest.split_at_checked(length).ok_or(OpenError::Malformed)?;
        let vendor_user_id = match user {
            [] => None,
            user => Some(String::from_utf8(user.to_vec()).map_err(|_| OpenError::Malformed)?),
        };
        let body = match (self.v1, stored) {
            (true, body) | (false, [CODEC_NONE, body @ ..]) => body.to_vec(),
            (false, [CODEC_LZ4, compressed @ ..]) => decompress(compressed)?,
            _ => return Err(OpenError::Malformed),
        };
        Ok(Opened { vendor_user_id, body })
    }
}

/// `length (u32) ‖ LZ4 block` back to the body, refusing a claimed length beyond [`MAX_BODY`] or
/// one the block does not fill exactly.
fn decompress(stored: &[u8]) -> Result<Vec<u8>, OpenError> {
    let (length, block) = stored.split_at_checked(4).ok_or(OpenError::Malformed)?;
    let length = u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
    if length > MAX_BODY {
        return Err(OpenError::Malformed);
    }
    let mut body = vec![0; length];
    match lz4_flex::block::decompress_into(block, &mut body) {
        Ok(written) if written == length => Ok(body),
        _ => Err(OpenError::Malformed),
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

    /// A value of either format around a plaintext written by hand.
    fn seal_plaintext(aead: &ChaCha20Poly1305, magic: &[u8; 5], key_id: uuid::Uuid, plaintext: &[u8]) -> Vec<u8> {
        let mut aad = magic.to_vec();
        aad.extend_from_slice(key_id.as_bytes());
        let nonce = Nonce::generate();
        let mut value = aad.clone();
        value.extend_from_slice(&nonce);
        value.extend_from_slice(&aead.encrypt(&nonce, Payload { msg: plaintext, aad: &aad }).unwrap());
        value
    }

    #[test]
    fn a_json_body_is_compressed_inside_the_seal_and_a_random_one_is_kept_as_it_is() {
        let body = std::fs::read("tests/fixtures/terra/sleep.json").unwrap();
        let id = uuid::Uuid::new_v4();
        let sealed = seal(&key(1), id, Some("terra-user-1"), &body);
        assert!(sealed.len() < body.len() / 2, "{} bytes sealed from {}", sealed.len(), body.len());
        assert_eq!(parse(&sealed).unwrap().open(&key(1)).unwrap().body, body);

        // Random bytes do not shrink: stored raw, at most MAX_OVERHEAD larger.
        let random: Vec<u8> = (0..4096).map(|_| rand_byte()).collect();
        let sealed = seal(&key(1), id, Some("terra-user-1"), &random);
        assert!(sealed.len() <= random.len() + MAX_OVERHEAD);
        assert_eq!(parse(&sealed).unwrap().open(&key(1)).unwrap().body, random);
    }

    fn rand_byte() -> u8 {
        let bytes: [u8; 1] = chacha20poly1305::Key::generate()[..1].try_into().unwrap();
        bytes[0]
    }

    #[test]
    fn values_of_the_first_format_still_open() {
        let id = uuid::Uuid::new_v4();
        let mut plaintext = vec![0, 1, b'u'];
        plaintext.extend_from_slice(br#"{"a":1}"#);
        let value = seal_plaintext(&key(1), MAGIC_V1, id, &plaintext);
        let opened = parse(&value).unwrap().open(&key(1)).unwrap();
        assert_eq!(opened, Opened { vendor_user_id: Some("u".into()), body: br#"{"a":1}"#.to_vec() });
    }

    #[test]
    fn a_compressed_value_that_lies_about_its_length_is_malformed() {
        let id = uuid::Uuid::new_v4();
        let block = lz4_flex::block::compress(&[b'x'; 1000]);
        for claimed in [999_u32, 1001, MAX_BODY as u32 + 1] {
            let mut plaintext = vec![0, 0, CODEC_LZ4];
            plaintext.extend_from_slice(&claimed.to_be_bytes());
            plaintext.extend_from_slice(&block);
            let value = seal_plaintext(&key(1), MAGIC, id, &plaintext);
            assert_eq!(parse(&value).unwrap().open(&key(1)), Err(OpenError::Malformed), "claimed {claimed}");
        }
        let unknown_codec = seal_plaintext(&key(1), MAGIC, id, &[0, 0, 7, b'{', b'}']);
        assert_eq!(parse(&unknown_codec).unwrap().open(&key(1)), Err(OpenError::Malformed));
    }
}
