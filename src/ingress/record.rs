//! The Kafka record of an accepted webhook: its key and headers (the contract is in
//! `kafka::headers`). The value is the body, byte for byte, and is not touched here.

use axum::http::{HeaderMap, header};
use rdkafka::message::OwnedHeaders;
use sha2::{Digest, Sha256};

use super::auth::Authenticator;
use crate::event::Vendor;
use crate::kafka::headers;
use crate::vendors;

/// Longest vendor id (delivery id, user id) used as is. Both come from the request, and a
/// multi-megabyte id would blow up the key, the headers and the Redis key; real ones are UUIDs
/// or short integers.
const MAX_ID_BYTES: usize = 256;

/// What the ingress knows about an accepted request, written as Kafka headers.
pub struct Accepted {
    pub vendor: Vendor,
    pub delivery_id: String,
    pub trace_id: String,
    pub vendor_user_id: Option<String>,
    /// When the request arrived, ms since the epoch.
    pub received_at_ms: i64,
}

impl Accepted {
    /// `<vendor>:<vendor user id>`, so one user's records keep their order on one partition;
    /// the vendor alone when the body names no (usable) user.
    pub fn key(&self) -> String {
        match self.vendor_user_id.as_deref().filter(|user| user.len() <= MAX_ID_BYTES) {
            Some(user) => format!("{}:{user}", self.vendor.slug()),
            None => self.vendor.slug().to_owned(),
        }
    }

    /// The record headers: ours, plus the vendor's signature headers for audit. The bearer
    /// token of Apple Health is deliberately not among them.
    pub fn headers(&self, request_headers: &HeaderMap) -> OwnedHeaders {
        self.headers_naming_user(request_headers, true)
    }

    /// [`Accepted::headers`] of a sealed record: the user id travels inside the seal.
    pub fn sealed_headers(&self, request_headers: &HeaderMap) -> OwnedHeaders {
        self.headers_naming_user(request_headers, false)
    }

    fn headers_naming_user(&self, request_headers: &HeaderMap, name_user: bool) -> OwnedHeaders {
        let content_type = request_headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("application/json");
        let mut out = OwnedHeaders::new();
        out = headers::with(out, headers::VENDOR, self.vendor.slug());
        out = headers::with(out, headers::RECEIVED_AT, &self.received_at_ms.to_string());
        out = headers::with(out, headers::DELIVERY_ID, &self.delivery_id);
        out = headers::with(out, headers::CONTENT_TYPE, content_type);
        out = headers::with(out, headers::TRACE_ID, &self.trace_id);
        if self.vendor == Vendor::AppleHealth
            && name_user
            && let Some(user) = &self.vendor_user_id
        {
            out = headers::with(out, headers::VENDOR_USER_ID, user);
        }
        let context: &[&str] = if self.vendor == Vendor::Terra { vendors::terra::CONTEXT_HEADERS } else { &[] };
        for name in Authenticator::signature_headers(self.vendor).iter().chain(context) {
            if let Some(value) = request_headers.get(*name).and_then(|value| value.to_str().ok()) {
                out = headers::with(out, name, value);
            }
        }
        out
    }
}

/// The vendor's own delivery id, else the sha256 of the body (a re-sent identical body is then
/// recognised too). An over-long vendor id is replaced by its own sha256: still stable across
/// retries, but bounded.
pub fn delivery_id(vendor: Vendor, headers: &HeaderMap, body: &[u8]) -> String {
    let vendor_id = match vendor {
        Vendor::Terra => vendors::terra::delivery_id(headers, body),
        Vendor::Oura => vendors::oura::delivery_id(headers, body),
        Vendor::Whoop => vendors::whoop::delivery_id(headers, body),
        Vendor::AppleHealth => None,
    };
    match vendor_id {
        Some(id) if id.len() <= MAX_ID_BYTES => id,
        Some(id) => sha256_id(id.as_bytes()),
        None => sha256_id(body),
    }
}

fn sha256_id(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_id_falls_back_to_the_body_hash() {
        let id = delivery_id(Vendor::AppleHealth, &HeaderMap::new(), b"{}");
        assert_eq!(id, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    }

    #[test]
    fn over_long_ids_are_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert("x-terra-trace-id", "t".repeat(MAX_ID_BYTES + 1).parse().unwrap());
        let id = delivery_id(Vendor::Terra, &headers, b"{}");
        assert!(id.starts_with("sha256:") && id.len() < MAX_ID_BYTES);

        let accepted = |user: String| Accepted {
            vendor: Vendor::Oura,
            delivery_id: id.clone(),
            trace_id: String::new(),
            vendor_user_id: Some(user),
            received_at_ms: 0,
        };
        assert_eq!(accepted("u1".into()).key(), "oura:u1");
        assert_eq!(accepted("u".repeat(MAX_ID_BYTES + 1)).key(), "oura");
    }
}
