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
    let mac = hex::decode(signature).map_err(|_| SignatureError::Malformed(SIGNATURE))?;
    check_freshness(parse_timestamp(timestamp, TIMESTAMP)?, ctx)?;
    Ok((timestamp, mac))
}
