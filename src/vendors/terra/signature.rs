//! Terra's webhook signature (vendors.md §1.4): header `terra-signature: t=<unix s>,v1=<hex>`,
//! HMAC-SHA256 over `t + "." + raw body`.

use axum::http::HeaderMap;

use crate::vendors::signature::{SignatureError, VerifyContext, check_freshness, parse_timestamp, required_header, verify_mac};

/// The documented name. Terra currently sends the same value as `X-Terra-Signature` too (plus the
/// deprecated `Terra-Signature`); header names are case-insensitive.
const HEADER: &str = "terra-signature";
const ALIASES: &[&str] = &["x-terra-signature"];

/// Copied onto the Kafka record for audit.
pub const SIGNATURE_HEADERS: &[&str] = &["terra-signature", "x-terra-signature"];

/// Checks the `v1` MAC and the timestamp's freshness. Only `v1` entries count: other schemes
/// (`v0=…`) are ignored, so an attacker cannot force a downgrade by stripping `v1`. Several `v1`
/// entries (secret rotation) pass if any matches.
pub fn verify_signature(headers: &HeaderMap, body: &[u8], ctx: &VerifyContext<'_>) -> Result<(), SignatureError> {
    let signed = signed_value(headers, ctx)?;
    let parts: [&[u8]; 3] = [signed.timestamp.as_bytes(), b".", body];
    if signed.macs.iter().any(|mac| verify_mac(ctx.secret, &parts, mac).is_ok()) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// Everything [`verify_signature`] checks before the body is needed: the header is there and
/// well-formed, and its timestamp is fresh. The ingress runs it before reading a body, so an
/// unsigned or replayed request costs no body read and no in-flight slot.
pub fn check_headers(headers: &HeaderMap, ctx: &VerifyContext<'_>) -> Result<(), SignatureError> {
    signed_value(headers, ctx).map(|_| ())
}

fn signed_value<'h>(headers: &'h HeaderMap, ctx: &VerifyContext<'_>) -> Result<SignedValue<'h>, SignatureError> {
    let signed = SignedValue::parse(required_header(headers, HEADER, ALIASES)?)?;
    check_freshness(parse_timestamp(signed.timestamp, HEADER)?, ctx)?;
    Ok(signed)
}

/// The parsed header value: the timestamp exactly as sent (it is part of the signed message) and
/// the decoded `v1` MACs.
struct SignedValue<'a> {
    timestamp: &'a str,
    macs: Vec<Vec<u8>>,
}

impl<'a> SignedValue<'a> {
    fn parse(value: &'a str) -> Result<Self, SignatureError> {
        let malformed = SignatureError::Malformed(HEADER);
        let mut timestamp = None;
        let mut macs = Vec::new();
        for item in value.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let (key, entry) = item.split_once('=').ok_or(malformed.clone())?;
            match key {
                // Two timestamps would make "the" signed message ambiguous.
                "t" if timestamp.is_some() => return Err(malformed),
                "t" => timestamp = Some(entry),
                // `hex` accepts either case.
                "v1" => macs.push(hex::decode(entry).map_err(|_| malformed.clone())?),
                _ => {}
            }
        }
        match timestamp {
            Some(timestamp) if !macs.is_empty() => Ok(SignedValue { timestamp, macs }),
            _ => Err(malformed),
        }
    }
}
