//! Terra, the aggregator: its webhooks carry the full normalised data in the body (vendors.md §1).
//!
//! - [`verify_signature`] / [`SIGNATURE_HEADERS`]: the `t=…,v1=…` HMAC scheme (§1.4), in
//!   `signature.rs`.
//! - [`delivery_id`] / [`vendor_user_id`]: the smallest parses the ingress needs for dedup and the
//!   Kafka key.
//! - [`normalize`]: dispatch on the envelope's `type`: data events become events (`data.rs`), the
//!   connection lifecycle becomes identity changes (`identity.rs`), payload pointers become
//!   downloads for the fetch stage (`pointer.rs`), everything else recognised is a notice.
//!
//! # Facts this module relies on, and their sources
//!
//! Tags are those of vendors.md §12; `docs/vendor-contracts.md` lists where vendors.md was wrong.
//! - Signature `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + raw body)>`, header
//!   `terra-signature` / `X-Terra-Signature` (any case); only `v1` counts [T2][T5][T6].
//! - Retries back off over "a little over 24 h" and may keep the original `t` (nobody documents
//!   whether Terra re-signs), so the ingress accepts signatures up to 26 h old
//!   (`TERRA_SIGNATURE_TOLERANCE_SECS`) and de-duplicates by delivery id [T4-retry].
//! - Delivery id `X-Terra-Trace-Id`, stable across retries; chunks of a large request
//!   `<id>:chunk:<n>`; never de-duplicate on `terra-reference` [T3-dedupe].
//! - `X-Terra-Ordering-Timestamp` (ms, set when Terra emitted the payload): a stored record is
//!   overwritten only by an equal or newer one; missing means newest [T3-superset][T1].
//! - No fixed size limit on a webhook; long activities are tens of MB, backfill chunks ≤ 10 MB
//!   (Terra docs, "large payload chunking 413"): `TERRA_MAX_BODY_BYTES` 64 MiB.
//! - Pointers `{"type":"s3_payload","url":…,"expires_in":600}` on Kafka (300 in webhooks), the
//!   payload behind the URL an ordinary webhook event [T6][T1 webhooks.s3_upload].
//! - Large requests: `large_request_processing`, `large_request_sending` (`expected_payloads`),
//!   then the chunks, all with one `terra-reference` [T1].
//! - Times carry an offset "whenever possible; if absent, the time corresponds to the user's local
//!   time" (`SleepMetadata`, `DailyMetadata`, `ActivityMetadata`) [T1]; day-level records take the
//!   date part of the string [T3-datepart].
//! - `SleepMetadata.summary_id` is optional [T1]; the natural key then is user + start + end.
//! - Event types beyond the data ones (`hormone`, `planned_workout`, `lab_report.*`, …) are
//!   informational: acknowledged and logged, never dead-lettered [T1][T3]; `health_observation`
//!   carries device events (irregular rhythm) and is mapped (`observation.rs`).
//! - `user.reference_id` is our user id, `user.user_id` Terra's id of the connection [T1 TerraUser].
//! - HRV: `avg_hrv_rmssd` / `avg_hrv_sdnn`, read as ms (the unit is unstated; examples read as ms) [T1].
//! - REST re-send: `GET /v2/{activity,body,daily,sleep}?user_id&start_date&end_date&to_webhook=true`
//!   with `dev-id` and `x-api-key` [T5][T1] (`fetch/terra_api.rs`).

mod data;
mod identity;
mod observation;
pub mod pointer;
mod signature;
#[cfg(test)]
mod tests;

use axum::http::HeaderMap;
use serde::Deserialize;

use super::{NormalizeError, Outcome, RawInput};

pub use signature::{SIGNATURE_HEADERS, check_headers, verify_signature};

/// Request headers the ingress keeps on the raw record besides the signature: the large request
/// a chunk belongs to, and when Terra emitted the payload (for last-write-wins, §1.5).
pub const CONTEXT_HEADERS: &[&str] = &["terra-reference", "x-terra-ordering-timestamp"];

/// Terra's per-delivery id, stable across retries (§1.5). Chunks of a large request carry
/// `<id>:chunk:<n>`, so they stay distinct.
const TRACE_ID_HEADER: &str = "x-terra-trace-id";

/// Types Terra documents that carry no biometric data for us, with why they are skipped.
fn notice_reason(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "athlete" | "nutrition" | "menstruation" | "hormone" | "planned_workout" => "data type not used by this pipeline",
        "lab_report.completed" | "lab_report.failed" => "lab report lifecycle; lab results are not in this pipeline's events",
        "large_request_processing" | "large_request_sending" | "processing" => "progress notice; the data follows in later events",
        "connection_error" | "permission_change" | "google_no_datasource" | "rate_limit_hit" => "connection status notice without data",
        "healthcheck" => "destination health check",
        _ => return None,
    })
}

/// The TerraUser fields we use (§1.2). `user_id` names the *connection*, not the person:
/// `reference_id` is our id, passed at auth time.
#[derive(Debug, Deserialize)]
struct TerraUser {
    user_id: String,
    provider: Option<String>,
    reference_id: Option<String>,
}

impl TerraUser {
    /// Our user id when Terra knows it (an empty string counts as unknown).
    fn reference_id(&self) -> Option<&str> {
        self.reference_id.as_deref().filter(|id| !id.is_empty())
    }
}

/// The delivery id: the `x-terra-trace-id` header.
pub fn delivery_id(headers: &HeaderMap, _body: &[u8]) -> Option<String> {
    super::signature::header(headers, &[TRACE_ID_HEADER]).map(str::to_owned)
}

/// The Terra user id of a webhook: `user.user_id`, or `new_user.user_id` for `user_reauth` (whose
/// later data arrives under the new id, so its records belong with the new key).
pub fn vendor_user_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct UserRef {
        user_id: String,
    }
    #[derive(Deserialize)]
    struct Keys {
        user: Option<UserRef>,
        new_user: Option<UserRef>,
    }
    let keys: Keys = serde_json::from_slice(body).ok()?;
    keys.user.or(keys.new_user).map(|user| user.user_id)
}

/// A progress notice of a large historical request (§1.1): `large_request_processing`, then
/// `large_request_sending` with the number of chunks to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeRequest {
    pub terra_user: String,
    pub reference: String,
    /// `expected_payloads` (on `large_request_sending` only).
    pub expected: Option<u32>,
}

/// The large-request notice in `body`, if it is one with a user and a reference.
pub fn large_request(body: &[u8]) -> Option<LargeRequest> {
    #[derive(Deserialize)]
    struct Notice {
        #[serde(rename = "type")]
        kind: String,
        reference: Option<String>,
        expected_payloads: Option<u32>,
        user: Option<TerraUser>,
    }
    let notice: Notice = serde_json::from_slice(body).ok()?;
    if !notice.kind.starts_with("large_request_") {
        return None;
    }
    Some(LargeRequest { terra_user: notice.user?.user_id, reference: notice.reference?, expected: notice.expected_payloads })
}

/// Whether `body` is a payload pointer (`s3_payload`, or `s3_upload` in older docs).
pub fn is_pointer(body: &[u8]) -> bool {
    matches!(kind(body).as_deref(), Some("s3_payload" | "s3_upload"))
}

/// The webhook's `type`, if the body has one (cheap: the leading key when Terra wrote it first).
pub fn kind(body: &[u8]) -> Option<String> {
    event_type(body).ok()
}

/// Normalizes one Terra webhook body (see the module docs for the dispatch).
pub fn normalize(input: &RawInput<'_>) -> Result<Outcome, NormalizeError> {
    let kind = event_type(input.body)?;
    match kind.as_str() {
        "sleep" | "daily" | "body" | "activity" => data::normalize(&kind, input).map(Outcome::Events),
        "health_observation" => observation::normalize(input).map(Outcome::Events),
        "auth" | "auth_cancelled" | "deauth" | "access_revoked" | "user_reauth" => identity::normalize(&kind, input.body),
        // Terra's Kafka destination, ping mode and large payloads: a link to the data.
        "s3_payload" | "s3_upload" => pointer::normalize(input),
        other => {
            // Nothing else parses the body of a notice: make sure it is JSON all the same.
            serde_json::from_slice::<serde::de::IgnoredAny>(input.body)?;
            // Terra adds event types over time and asks receivers to acknowledge the ones they do
            // not know: a notice (counted under `unknown`, the type is the sender's text), never a
            // dead letter.
            match notice_reason(other) {
                Some(reason) => Ok(Outcome::Notice { kind, detail: reason.to_owned() }),
                None => Ok(Outcome::Notice {
                    kind: "unknown".to_owned(),
                    detail: format!("type {other:?} is not known to this pipeline; acknowledged"),
                }),
            }
        }
    }
}

/// The webhook's `type`. Terra writes it as the first key, so it is read from there without
/// parsing the whole body (profiling showed the full extra parse at ~7 % of the processor's
/// time); any other layout falls back to a full parse. Every branch of [`normalize`] still parses
/// (and so validates) the whole body afterwards.
fn event_type(body: &[u8]) -> Result<String, NormalizeError> {
    if let Some(kind) = leading_type(body) {
        return Ok(kind);
    }
    #[derive(Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: String,
    }
    Ok(serde_json::from_slice::<Head>(body)?.kind)
}

/// `kind` when `body` starts with `{"type": "<kind>"` (whitespace allowed), for plain ASCII kinds.
fn leading_type(body: &[u8]) -> Option<String> {
    let rest = body.trim_ascii_start().strip_prefix(b"{")?.trim_ascii_start();
    let rest = rest.strip_prefix(b"\"type\"")?.trim_ascii_start().strip_prefix(b":")?.trim_ascii_start();
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|b| *b == b'"')?;
    let kind = &rest[..end];
    kind.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_').then(|| String::from_utf8_lossy(kind).into_owned())
}

#[cfg(test)]
mod type_tests {
    use super::*;

    #[test]
    fn the_leading_type_is_read_without_a_full_parse() {
        assert_eq!(leading_type(b" {\n  \"type\" : \"sleep\", \"data\": [").as_deref(), Some("sleep"));
        assert_eq!(leading_type(b"{\"data\": [], \"type\": \"sleep\"}"), None, "not first: full parse");
        assert_eq!(leading_type(b"{\"type\": \"sl\\\"eep\"}"), None, "escapes: full parse");
        assert_eq!(event_type(b"{\"data\": [], \"type\": \"daily\"}").unwrap(), "daily");
        assert!(event_type(b"{\"data\": [").is_err());
    }

    #[test]
    fn a_notice_with_a_broken_body_is_still_invalid_json() {
        let input = crate::vendors::test_support::raw_input(crate::event::Vendor::Terra, b"{\"type\": \"healthcheck\", \"x\": [");
        assert_eq!(normalize(&input).unwrap_err().class(), "invalid_json");
    }
}
