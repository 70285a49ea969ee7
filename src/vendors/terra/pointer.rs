//! Terra's payload pointers: what its Kafka destination always sends, and what a webhook sends
//! in place of a large payload (vendors.md §1.1, [T6], [T1 webhooks.s3_upload]).
//!
//! A pointer is a small JSON message, `{"status":"success","type":"s3_payload","url":"<pre-signed
//! link>","expires_in":600}` (some versions of Terra's docs add `user_id`, `reference_id` and
//! `payload_reference`). The payload behind the URL is an ordinary Terra webhook event, and the URL
//! stops working `expires_in` seconds after Terra sent it (600 on Kafka, 300 for webhooks). A
//! pointer therefore becomes a [`PendingFetch`] whose "API path" is the URL and whose deadline is
//! its expiry; the fetch stage downloads it and writes the payload to the raw topic.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::event::Vendor;
use crate::vendors::{NormalizeError, Outcome, PendingFetch, RawInput};

/// The data type of a download request in the fetch stage.
pub const DATA_TYPE: &str = "s3_payload";

/// How long a pointer's URL is valid when it does not say: Terra's shorter, webhook value.
const DEFAULT_EXPIRES_IN_SECS: f64 = 300.0;

#[derive(Deserialize)]
struct Pointer {
    url: String,
    expires_in: Option<f64>,
    user_id: Option<String>,
    payload_reference: Option<String>,
    reference: Option<String>,
}

/// The download a pointer asks for; its deadline counts from when Terra sent it (the record's
/// receipt time).
pub(super) fn normalize(input: &RawInput<'_>) -> Result<Outcome, NormalizeError> {
    let pointer: Pointer = serde_json::from_slice(input.body)?;
    if pointer.url.trim().is_empty() {
        return Err(NormalizeError::InvalidShape("terra s3_payload without a url".to_owned()));
    }
    let expires_in = pointer.expires_in.filter(|secs| secs.is_finite() && *secs > 0.0).unwrap_or(DEFAULT_EXPIRES_IN_SECS);
    let expires_at_ms = input.received_at_ms.saturating_add((expires_in.min(86_400.0) * 1000.0) as i64);
    let object_id = pointer.payload_reference.or(pointer.reference).unwrap_or_else(|| url_id(&pointer.url));
    Ok(Outcome::PendingFetch(PendingFetch {
        vendor: Vendor::Terra,
        vendor_user_id: pointer.user_id.filter(|user| !user.is_empty()).unwrap_or_else(|| "unknown".to_owned()),
        data_type: DATA_TYPE.to_owned(),
        object_id,
        api_path: pointer.url,
        expires_at_ms: Some(expires_at_ms),
    }))
}

/// A stable short id of a URL (the pointer's identity when it carries no reference).
fn url_id(url: &str) -> String {
    hex::encode(&Sha256::digest(url.as_bytes())[..16])
}

/// The key a pointer without a user is re-keyed by: its URL's id, so pointers spread over the
/// partitions instead of piling onto one (the payload, once downloaded, is keyed by its user).
pub fn routing_key(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Pointer>(body).ok().map(|pointer| format!("terra-pointer:{}", url_id(&pointer.url)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendors::test_support::raw_input;

    #[test]
    fn a_kafka_pointer_is_a_download_due_within_its_expiry() {
        let body =
            br#"{"status":"success","type":"s3_payload","url":"https://bucket.s3.amazonaws.com/p?X-Amz-Signature=abc","expires_in":600}"#;
        let input = raw_input(Vendor::Terra, body);
        let Outcome::PendingFetch(fetch) = crate::vendors::terra::normalize(&input).unwrap() else { panic!("a download") };
        assert_eq!(fetch.data_type, "s3_payload");
        assert_eq!(fetch.api_path, "https://bucket.s3.amazonaws.com/p?X-Amz-Signature=abc");
        assert_eq!(fetch.expires_at_ms, Some(input.received_at_ms + 600_000));
        assert_eq!(fetch.object_id.len(), 32);
        assert_eq!(fetch.vendor_user_id, "unknown");
    }

    #[test]
    fn a_webhook_pointer_without_expiry_gets_five_minutes_and_keeps_its_reference() {
        let body = br#"{"type":"s3_payload","status":"success","url":"https://x/y","user_id":"u-1","payload_reference":"ref-7"}"#;
        let input = raw_input(Vendor::Terra, body);
        let Outcome::PendingFetch(fetch) = crate::vendors::terra::normalize(&input).unwrap() else { panic!("a download") };
        assert_eq!((fetch.object_id.as_str(), fetch.vendor_user_id.as_str()), ("ref-7", "u-1"));
        assert_eq!(fetch.expires_at_ms, Some(input.received_at_ms + 300_000));
    }

    #[test]
    fn a_pointer_without_a_url_is_not_a_download() {
        let input = raw_input(Vendor::Terra, br#"{"type":"s3_payload","url":" "}"#);
        assert_eq!(crate::vendors::terra::normalize(&input).unwrap_err().class(), "invalid_shape");
        assert!(routing_key(br#"{"type":"s3_payload","url":"u"}"#).unwrap().starts_with("terra-pointer:"));
    }
}
