//! Property tests of what the ingress parses before it trusts anything: every vendor's signature
//! verifier and its header pre-check, the bearer-token and `traceparent` parsers, the body JSON
//! checks and the ingress's smallest parses (delivery id, vendor user id). Arbitrary header
//! values and bodies never panic, and never verify without the secret's MAC.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::signature::{SignatureError, VerifyContext};
use super::{oura, terra, test_support, whoop};
use crate::event::Vendor;

const SECRET: &[u8] = b"property-test-secret";
const NOW: i64 = 1_795_218_931;

/// Header values as a client may send them: around the real formats, and anything.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("t={NOW},v1=00")),
        Just(format!("t={NOW},v1=,v1=zz,v0=ab")),
        Just("t=,v1=".to_owned()),
        Just(NOW.to_string()),
        Just((NOW * 1000).to_string()),
        Just("-9223372036854775808".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("Bearer ".to_owned()),
        "[ -~]{0,80}",
    ]
}

fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    pairs.iter().filter_map(|(name, value)| Some((HeaderName::from_static(name), HeaderValue::from_str(value).ok()?))).collect()
}

fn context() -> VerifyContext<'static> {
    VerifyContext { secret: SECRET, now_unix_secs: NOW, tolerance_secs: 300 }
}

/// Every verifier and pre-check on the same headers and body; returns whether any verified.
fn verify_all(headers: &HeaderMap, body: &[u8]) -> bool {
    let ctx = context();
    let results: [Result<(), SignatureError>; 6] = [
        terra::verify_signature(headers, body, &ctx),
        oura::verify_signature(headers, body, &ctx),
        whoop::verify_signature(headers, body, &ctx),
        terra::check_headers(headers, &ctx),
        oura::check_headers(headers, &ctx),
        whoop::check_headers(headers, &ctx),
    ];
    results[..3].iter().any(Result::is_ok)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn forged_headers_never_verify(
        terra_value in header_value(),
        oura_signature in header_value(),
        timestamp in header_value(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let headers = headers(&[
            ("terra-signature", terra_value),
            ("x-oura-signature", oura_signature.clone()),
            ("x-oura-timestamp", timestamp.clone()),
            ("x-whoop-signature", oura_signature),
            ("x-whoop-signature-timestamp", timestamp),
        ]);
        prop_assert!(!verify_all(&headers, &body), "verified without the secret's MAC");
    }

    #[test]
    fn a_real_signature_over_other_bytes_never_verifies(body in prop::collection::vec(any::<u8>(), 1..256), flip in any::<usize>()) {
        let mac = hex::encode(test_support::mac(SECRET, &[NOW.to_string().as_bytes(), b".", &body]));
        let signed = headers(&[("terra-signature", format!("t={NOW},v1={mac}"))]);
        prop_assert!(terra::verify_signature(&signed, &body, &context()).is_ok());
        let mut other = body.clone();
        let index = flip % other.len();
        other[index] ^= 0x20;
        prop_assert!(terra::verify_signature(&signed, &other, &context()).is_err());
    }

    #[test]
    fn small_parsers_never_panic(value in "\\PC{0,120}", body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = crate::ingress::tokens::bearer_token(&value);
        let _ = crate::telemetry::trace_id_from_traceparent(&value);
        let _ = crate::ingress::body::check_json(&body);
        let _ = crate::ingress::body::check_json(value.as_bytes());
        for vendor in Vendor::ALL {
            let _ = super::vendor_user_id(vendor, &body);
        }
        let _ = whoop::delivery_id(&HeaderMap::new(), &body);
        prop_assert!(super::is_identifier(&value) == (!value.is_empty() && value.len() <= super::MAX_IDENTIFIER_BYTES && !value.chars().any(char::is_control)));
    }
}
