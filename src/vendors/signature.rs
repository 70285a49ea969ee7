//! Shared pieces of the vendors' webhook signature schemes: HMAC-SHA256 over the raw bytes,
//! constant-time comparison, and the replay window.
//!
//! Each vendor module composes these into its own `verify_signature`; the schemes differ only in
//! which headers carry the MAC and timestamp, what is signed, and how the MAC is encoded.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a request's authenticity could not be established. Messages name headers, never values,
/// so nothing secret or attacker-controlled is echoed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header {0}")]
    Missing(&'static str),
    #[error("malformed signature header {0}")]
    Malformed(&'static str),
    #[error("signature does not match the body")]
    Mismatch,
    #[error("signature timestamp is outside the replay window")]
    Stale,
}

impl SignatureError {
    /// Stable code for the JSON error body and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing(_) => "missing_signature",
            SignatureError::Malformed(_) => "malformed_signature",
            SignatureError::Mismatch => "invalid_signature",
            SignatureError::Stale => "stale_signature",
        }
    }
}

/// What a signature check needs besides the headers and body: the secret, the clock and the
/// replay tolerance. The clock is a parameter so tests can check recorded vectors.
#[derive(Clone, Copy)]
pub struct VerifyContext<'a> {
    pub secret: &'a [u8],
    /// Now, in seconds since the epoch.
    pub now_unix_secs: i64,
    /// How far (either way) a signed timestamp may be from now.
    pub tolerance_secs: u64,
}

impl std::fmt::Debug for VerifyContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyContext")
            .field("secret", &"<redacted>")
            .field("now_unix_secs", &self.now_unix_secs)
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

/// HMAC-SHA256 of the concatenation of `parts` (so callers never copy the body to prepend a
/// timestamp).
pub fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Checks a MAC over `parts` against `expected` in constant time.
pub fn verify_mac(secret: &[u8], parts: &[&[u8]], expected: &[u8]) -> Result<(), SignatureError> {
    hmac_sha256(secret, parts).verify_slice(expected).map_err(|_| SignatureError::Mismatch)
}

/// Refuses a signed timestamp (seconds) too far from now: a captured request replayed later
/// fails here even though its MAC is valid.
pub fn check_freshness(signed_at_secs: i64, ctx: &VerifyContext<'_>) -> Result<(), SignatureError> {
    let skew = ctx.now_unix_secs.abs_diff(signed_at_secs);
    if skew > ctx.tolerance_secs { Err(SignatureError::Stale) } else { Ok(()) }
}

/// The first of `names` present in `headers` as valid UTF-8 (header names are case-insensitive).
pub fn header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| headers.get(*name)).and_then(|value| value.to_str().ok())
}

/// The value of header `name`, or of the first of `aliases` present (a vendor that renamed its
/// header). `Missing(name)` when none is there, `Malformed(name)` when the value is not visible
/// ASCII. Errors name the documented header, never the value.
pub fn required_header<'a>(headers: &'a HeaderMap, name: &'static str, aliases: &[&str]) -> Result<&'a str, SignatureError> {
    std::iter::once(name)
        .chain(aliases.iter().copied())
        .find_map(|candidate| headers.get(candidate))
        .ok_or(SignatureError::Missing(name))?
        .to_str()
        .map_err(|_| SignatureError::Malformed(name))
}

/// An integer timestamp as sent in header `name` (unit is the caller's business); anything else,
/// surrounding spaces included, is `Malformed(name)`.
pub fn parse_timestamp(value: &str, name: &'static str) -> Result<i64, SignatureError> {
    value.parse().map_err(|_| SignatureError::Malformed(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_is_symmetric_and_inclusive() {
        let ctx = VerifyContext { secret: b"k", now_unix_secs: 1_000, tolerance_secs: 300 };
        assert!(check_freshness(700, &ctx).is_ok());
        assert!(check_freshness(1_300, &ctx).is_ok());
        assert_eq!(check_freshness(699, &ctx), Err(SignatureError::Stale));
        assert_eq!(check_freshness(1_301, &ctx), Err(SignatureError::Stale));
    }

    #[test]
    fn mac_over_parts_equals_mac_over_concatenation() {
        let whole = hmac_sha256(b"secret", &[b"123.body"]).finalize().into_bytes();
        assert!(verify_mac(b"secret", &[b"123", b".", b"body"], &whole).is_ok());
        assert_eq!(verify_mac(b"other", &[b"123.body"], &whole), Err(SignatureError::Mismatch));
    }

    #[test]
    fn required_header_tries_aliases_and_names_the_documented_header() {
        use axum::http::HeaderValue;
        let mut headers = HeaderMap::new();
        assert_eq!(required_header(&headers, "a-sig", &["x-a-sig"]), Err(SignatureError::Missing("a-sig")));
        headers.insert("X-A-Sig", HeaderValue::from_static("v"));
        assert_eq!(required_header(&headers, "a-sig", &["x-a-sig"]), Ok("v"));
        headers.insert("a-sig", HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(required_header(&headers, "a-sig", &["x-a-sig"]), Err(SignatureError::Malformed("a-sig")));
    }

    #[test]
    fn timestamps_are_plain_integers() {
        assert_eq!(parse_timestamp("1795218931", "t"), Ok(1_795_218_931));
        assert_eq!(parse_timestamp(" 1795218931", "t"), Err(SignatureError::Malformed("t")));
        assert_eq!(parse_timestamp("1.7e9", "t"), Err(SignatureError::Malformed("t")));
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let ctx = VerifyContext { secret: b"hunter2", now_unix_secs: 0, tolerance_secs: 0 };
        assert!(!format!("{ctx:?}").contains("hunter2"));
    }
}
