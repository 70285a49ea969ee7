//! WHOOP API v2: webhooks are notifications only; the data is fetched from the API afterwards
//! (vendors.md §3).
//!
//! - [`verify_signature`] / [`SIGNATURE_HEADERS`]: base64 HMAC over a millisecond timestamp +
//!   body (§3.3), in `signature.rs`.
//! - [`normalize`]: a `*.updated` notification becomes a [`PendingFetch`]; `*.deleted` a DELETED
//!   event.
//! - `api.rs`: the mappers of fetched API records to events ([`map_api_record`] and one per
//!   record type), used by the fetch step.
//!
//! # Facts this module relies on, and their sources
//!
//! Tags are those of vendors.md §12; `docs/vendor-contracts.md` lists where vendors.md was wrong.
//! - Signature `base64(HMAC-SHA256(client secret, X-WHOOP-Signature-Timestamp + raw body))`, the
//!   timestamp in milliseconds [W1].
//! - 5 retries over about an hour; no replay window is documented, so signatures up to 2 h old are
//!   accepted (`WHOOP_SIGNATURE_TOLERANCE_SECS`) and copies de-duplicated by `trace_id` [W1].
//! - v2 ids are UUIDs (v1's were integers); creations arrive as `*.updated`; a recovery's id is
//!   its sleep's UUID [W1].
//! - No webhook for cycles (day strain, kilojoules, daily heart rate): "retrieve by calling their
//!   respective APIs" [W1 FAQ]; reconciliation lists `/v2/cycle` for every connection.
//! - `score` exists only when `score_state == "SCORED"` [W2]; HRV `hrv_rmssd_milli` is RMSSD in ms [W2].
//! - Rate limits 100 requests per minute and 10 000 per day; responses carry `X-RateLimit-Reset`
//!   (seconds until the window resets), honoured like `Retry-After` on a 429 (WHOOP docs, "API
//!   Rate Limiting", developer.whoop.com/docs/developing/rate-limiting) [W4-doc].
//! - `DELETE /v2/user/access` revokes the user's authorization: "no webhooks will be sent" [W1][W2].

mod api;
mod signature;
#[cfg(test)]
mod tests;

use axum::http::HeaderMap;
use serde::Deserialize;

use super::{NormalizeError, Outcome, PendingFetch, RawInput, tombstone};
use crate::event::Vendor;

pub use api::{
    MAPPED_DATA_TYPES, event_kind, map_api_cycle, map_api_record, map_api_recovery, map_api_sleep, map_api_workout, recovery_api_path,
};
pub use signature::{SIGNATURE_HEADERS, check_headers, verify_signature};

/// The notification body (§3.1). `id` is a UUID in v2 (an integer in the retired v1).
#[derive(Deserialize)]
struct Notification {
    user_id: i64,
    id: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The body's `trace_id`: WHOOP's advice for spotting duplicate deliveries (§3.4).
pub fn delivery_id(_headers: &HeaderMap, body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Trace {
        trace_id: String,
    }
    serde_json::from_slice::<Trace>(body).ok().map(|trace| trace.trace_id)
}

/// WHOOP's integer `user_id`, as a string.
pub fn vendor_user_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct UserRef {
        user_id: i64,
    }
    serde_json::from_slice::<UserRef>(body).ok().map(|user| user.user_id.to_string())
}

/// A notification to what must be fetched, or a DELETED event. WHOOP sends creations as
/// `*.updated` too (§3.1).
pub fn normalize(input: &RawInput<'_>) -> Result<Outcome, NormalizeError> {
    let notification: Notification = serde_json::from_slice(input.body)?;
    let (data_type, collection) = match notification.kind.as_str() {
        "sleep.updated" => ("sleep", "sleep"),
        // Not a WHOOP webhook: WHOOP sends none for cycles. Reconciliation lists them and feeds
        // this notification so they take the fetch path (`GET /v2/cycle/{id}`).
        "cycle.updated" => ("cycle", "cycle"),
        "workout.updated" => ("workout", "workout"),
        // There is no `GET /v2/recovery/{id}`, and a recovery notification's `id` is the SLEEP's
        // id (§3.1). The fetch is therefore two steps: GET this sleep, read its `cycle_id`
        // ([`recovery_api_path`]), then GET `/v2/cycle/{cycle_id}/recovery` and map that with
        // `map_api_record("recovery", …)`.
        "recovery.updated" => ("recovery", "sleep"),
        // A recovery's natural key is its sleep id, which is what `recovery.deleted` carries.
        "sleep.deleted" | "workout.deleted" | "recovery.deleted" => {
            let data_type = notification.kind.trim_end_matches(".deleted");
            let user = notification.user_id.to_string();
            let event = tombstone(input, &user, data_type, &notification.id, event_kind(data_type), input.received_at_ms);
            return Ok(Outcome::Events(vec![event]));
        }
        other => return Err(NormalizeError::UnsupportedType(format!("whoop {other}"))),
    };
    if !is_path_segment(&notification.id) {
        return Err(NormalizeError::InvalidValue(format!("not a plain path segment: {:?}", notification.id)));
    }
    Ok(Outcome::PendingFetch(PendingFetch {
        vendor: Vendor::Whoop,
        vendor_user_id: notification.user_id.to_string(),
        data_type: data_type.to_owned(),
        api_path: match collection {
            "cycle" => format!("/v2/cycle/{}", notification.id),
            _ => format!("/v2/activity/{collection}/{}", notification.id),
        },
        expires_at_ms: None,
        object_id: notification.id,
    }))
}

/// Letters, digits, `-` and `_` only: the id goes into a URL fetched with the user's token, so no
/// `/`, `..`, `?` or `%` may steer the request elsewhere.
fn is_path_segment(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}
