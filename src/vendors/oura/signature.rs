//! Oura's webhook signature (vendors.md §2.3): `x-oura-signature` is the upper-case hex
//! HMAC-SHA256 of `x-oura-timestamp` (Unix seconds) directly followed by the raw body.

use axum::http::HeaderMap;

use crate::vendors::signature::{SignatureError, VerifyContext, check_freshness, parse_timestamp, required_header, verify_mac};

const SIGNATURE: &str = "x-oura-signature";
const TIMESTAMP: &str = "x-oura-timestamp";

/// Copied onto the Kafka record for audit.
pub const SIGNATURE_HEADERS: &[&str] = &[SIGNATURE, TIMESTAMP];

/// Checks the MAC (hex of either case: compared as bytes) and the timestamp's freshness. Oura
/// documents no replay window; the context's tolerance applies.
pub fn verify_signature(headers: &HeaderMap, body: &[u8], ctx: &VerifyContext<'_>) -> Result<(), SignatureError> {
    let signature = required_header(headers, SIGNATURE, &[])?;
    let timestamp = required_header(headers, TIMESTAMP, &[])?;
    let mac = hex::decode(signature).map_err(|_| SignatureError::Malformed(SIGNATURE))?;
    let signed_at = parse_timestamp(timestamp, TIMESTAMP)?;
    verify_mac(ctx.secret, &[timestamp.as_bytes(), body], &mac)?;
    check_freshness(signed_at, ctx)
}
