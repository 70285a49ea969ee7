//! Test helpers shared by the vendor modules' tests: fixtures, header maps, MACs, raw inputs.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::signature::VerifyContext;
use crate::event::{BiometricEvent, Vendor};
use crate::vendors::{NormalizeError, RawInput};

/// A raw record of `vendor` as the processor would see it; tests override fields with
/// struct-update syntax.
pub fn raw_input(vendor: Vendor, body: &[u8]) -> RawInput<'_> {
    RawInput {
        vendor,
        body,
        received_at_ms: 1_795_218_931_500,
        vendor_user_id: None,
        delivery_id: None,
        trace_id: None,
        source_topic: "raw",
        source_partition: 3,
        source_offset: 1_042,
    }
}

/// `body` with `from` replaced by `to`; fails if the fixture no longer contains `from`, so a
/// fixture change cannot silently turn a test into a no-op.
pub fn replaced(body: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.contains(from), "fixture lacks {from:?}");
    text.replace(from, to).into_bytes()
}

/// The single event a mapper must produce.
pub fn one(result: Result<Vec<BiometricEvent>, NormalizeError>) -> BiometricEvent {
    let mut events = result.expect("mapped");
    assert_eq!(events.len(), 1, "one event per record");
    events.remove(0)
}

/// The replay tolerance the tests use (the production default): ±5 minutes.
pub const TOLERANCE_SECS: u64 = 300;

/// A header map from `(name, value)` pairs.
pub fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs.iter().map(|(name, value)| (HeaderName::try_from(*name).unwrap(), HeaderValue::try_from(*value).unwrap())).collect()
}

/// A context with `secret` whose clock reads `now_unix_secs`.
pub fn context(secret: &[u8], now_unix_secs: i64) -> VerifyContext<'_> {
    VerifyContext { secret, now_unix_secs, tolerance_secs: TOLERANCE_SECS }
}

/// The secret and the headers recorded for fixture `file` in a vendor's `signatures.json`.
pub fn vector(signatures_json: &[u8], file: &str) -> (Vec<u8>, HeaderMap) {
    let doc: serde_json::Value = serde_json::from_slice(signatures_json).unwrap();
    let secret = ["signing_secret", "client_secret"].iter().find_map(|key| doc[*key].as_str()).unwrap().as_bytes().to_vec();
    let vector = doc["vectors"].as_array().unwrap().iter().find(|vector| vector["file"] == file).unwrap();
    let pairs: Vec<(&str, &str)> =
        vector["headers"].as_object().unwrap().iter().map(|(name, value)| (name.as_str(), value.as_str().unwrap())).collect();
    (secret, header_map(&pairs))
}

/// The raw HMAC-SHA256 bytes over `parts`, to sign test requests the way a vendor would.
pub fn mac(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    use hmac::Mac;
    super::signature::hmac_sha256(secret, parts).finalize().into_bytes().to_vec()
}

/// `body` with one byte changed.
pub fn tampered(body: &[u8]) -> Vec<u8> {
    let mut copy = body.to_vec();
    let middle = copy.len() / 2;
    copy[middle] ^= 0x01;
    copy
}
