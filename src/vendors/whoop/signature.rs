//! WHOOP's webhook signature (vendors.md §3.3): `x-whoop-signature` is the base64 HMAC-SHA256 of
//! `x-whoop-signature-timestamp` (Unix **milliseconds**) directly followed by the raw body.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::vendors::signature::{SignatureError, VerifyContext, check_freshness, parse_timestamp, required_header, verify_mac};

const SIGNATURE: &str = "x-whoop-signature";
const TIMESTAMP: &str = "x-whoop-signature-timestamp";

/// Copied onto the Kafka record for audit.
pub const SIGNATURE_HEADERS: &[&str] = &[SIGNATURE, TIMESTAMP];

/// Checks the MAC and the timestamp's freshness (converted from ms to s). WHOOP documents no
/// replay window; the context's tolerance applies.
pub fn verify_signature(headers: &HeaderMap, body: &[u8], ctx: &VerifyContext<'_>) -> Result<(), SignatureError> {
    let (timestamp, mac) = signed(headers, ctx)?;
    verify_mac(ctx.secret, &[timestamp.as_bytes(), body], &mac)
}

/// What [`verify_signature`] checks before the body is needed (headers present, well-formed,
/// fresh): run by the ingress before reading a body.
pub fn check_headers(headers: &HeaderMap, ctx: &VerifyContext<'_>) -> Result<(), SignatureError> {
    signed(headers, ctx).map(|_| ())
}

/// The timestamp as sent (it is part of the signed message) and the decoded MAC.
fn signed<'h>(headers: &'h HeaderMap, ctx: &VerifyContext<'_>) -> Result<(&'h str, Vec<u8>), SignatureError> {
    let signature = required_header(headers, SIGNATURE, &[])?;
    let timestamp = required_header(headers, TIMESTAMP, &[])?;
    let mac = STANDARD.decode(signature).map_err(|_| SignatureError::Malformed(SIGNATURE))?;
    check_freshness(parse_timestamp(timestamp, TIMESTAMP)?.div_euclid(1000), ctx)?;
    Ok((timestamp, mac))
}
