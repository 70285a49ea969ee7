//! Oura API v2: webhooks are notifications only; the data is fetched from the API afterwards
//! (vendors.md §2).
//!
//! - [`verify_signature`] / [`SIGNATURE_HEADERS`]: upper-case hex HMAC over timestamp + body
//!   (§2.3), in `signature.rs`.
//! - [`normalize`]: a `create`/`update` notification becomes a [`PendingFetch`] of
//!   `/v2/usercollection/{data_type}/{object_id}`; a `delete` becomes a DELETED event.
//! - `api.rs`: the mappers of fetched API documents to events ([`map_api_record`] and one per
//!   data type), used by the fetch step.
//!
//! # Facts this module relies on, and their sources
//!
//! Tags are those of vendors.md §12; `docs/vendor-contracts.md` lists where vendors.md was wrong.
//! - Signature `UPPER(hex(HMAC-SHA256(client secret, x-oura-timestamp + raw body)))`, timestamp in
//!   seconds (unit unconfirmed; the example is `1234567890`) [O1][O4-verification][O5].
//! - Failed deliveries are retried 10 times over about an hour; no replay window is documented, so
//!   signatures up to 2 h old are accepted (`OURA_SIGNATURE_TOLERANCE_SECS`) [O1]. Answering 410
//!   cancels the subscription, so no route of ours ever answers 410 [O1].
//! - Notifications carry no delivery id; the fetched document's `id` is the upsert key [O1].
//! - `GET /v2/usercollection/{data_type}/{id}`; data type `vo2_max` has path `vO2_max` [O1][O5].
//! - `heartrate` cannot be subscribed to (not in `ExtApiV2DataType` of spec v1.27); it is polled
//!   with `start_datetime`/`end_datetime` ([`heartrate_window_id`]) [O1].
//! - Collections' date bounds: the OpenAPI does not say whether they are inclusive; receivers report
//!   a date-only `end_date` read as midnight (the-momentum/open-wearables#1161) and `sleep`'s
//!   `start_date` as exclusive (open-wearables PR #1007): reconciliation pads a day each side.
//! - `average_hrv` is RMSSD in ms [O2]; `average_breath` is breaths per minute (the OpenAPI says
//!   "breaths/second", but documented and recorded values are 14–16) [O1];
//!   `equivalent_walking_distance` is "equivalent walking distance (in meters) of energy
//!   expenditure", not a distance travelled, so it is not mapped [O1 DailyActivityModel].
//! - Refresh tokens are single-use [O3]; rate limit 5 000 requests per 5 minutes [O1].
//! - Revocation: `https://api.ouraring.com/oauth/revoke?access_token=` [O1 securitySchemes].

mod api;
mod signature;
#[cfg(test)]
mod tests;

use axum::http::HeaderMap;
use serde::Deserialize;

use super::{NormalizeError, Outcome, PendingFetch, RawInput, tombstone};
use crate::event::Vendor;
use crate::vendors::time::rfc3339_to_millis;

pub use api::{
    MAPPED_DATA_TYPES, event_kind, map_api_daily_activity, map_api_daily_readiness, map_api_daily_sleep, map_api_heartrate, map_api_record,
    map_api_sleep,
};
pub use signature::{SIGNATURE_HEADERS, check_headers, verify_signature};

/// The notification body (§2.1). All strings; `event_time` only dates deletions (for data, the
/// fetched record is the truth, and dedup happens on the record's `id`).
#[derive(Deserialize)]
struct Notification {
    event_type: String,
    data_type: String,
    object_id: String,
    user_id: String,
    event_time: Option<String>,
}

/// Oura sends no delivery id (§2.4); the ingress falls back to the body hash.
pub fn delivery_id(_headers: &HeaderMap, _body: &[u8]) -> Option<String> {
    None
}

/// Oura's opaque `user_id` of the notification.
pub fn vendor_user_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct UserRef {
        user_id: String,
    }
    serde_json::from_slice::<UserRef>(body).ok().map(|user| user.user_id)
}

/// A notification to what must be fetched (`create`, `update`), or a DELETED event (`delete`:
/// there is nothing to fetch any more, but downstream must retract what the record produced).
pub fn normalize(input: &RawInput<'_>) -> Result<Outcome, NormalizeError> {
    let notification: Notification = serde_json::from_slice(input.body)?;
    match notification.event_type.as_str() {
        "create" | "update" => {
            let api_path = match notification.data_type.as_str() {
                // Polled, never notified by Oura: see `fetch::reconcile`.
                "heartrate" => heartrate_path(&notification.object_id)?,
                _ => api_path(&notification.data_type, &notification.object_id)?,
            };
            Ok(Outcome::PendingFetch(PendingFetch {
                vendor: Vendor::Oura,
                vendor_user_id: notification.user_id,
                data_type: notification.data_type,
                object_id: notification.object_id,
                api_path,
                expires_at_ms: None,
            }))
        }
        "delete" => {
            let deleted_at = notification.event_time.as_deref().map(rfc3339_to_millis).transpose()?.unwrap_or(input.received_at_ms);
            let retracts = event_kind(&notification.data_type);
            let event = tombstone(input, &notification.user_id, &notification.data_type, &notification.object_id, retracts, deleted_at);
            Ok(Outcome::Events(vec![event]))
        }
        other => Err(NormalizeError::UnsupportedType(format!("oura event_type {other}"))),
    }
}

/// The object id of a polled heartrate window (the series has no records of its own):
/// `hr-<start unix s>-<end unix s>`.
pub fn heartrate_window_id(from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) -> String {
    format!("hr-{}-{}", from.timestamp(), to.timestamp())
}

/// `/v2/usercollection/heartrate?start_datetime=...&end_datetime=...` for a window id.
fn heartrate_path(object_id: &str) -> Result<String, NormalizeError> {
    let invalid = || NormalizeError::InvalidValue(format!("not a heartrate window: {object_id:?}"));
    let (from, to) = object_id.strip_prefix("hr-").and_then(|rest| rest.split_once('-')).ok_or_else(invalid)?;
    let instant = |secs: &str| secs.parse::<i64>().ok().and_then(|secs| chrono::DateTime::from_timestamp(secs, 0)).ok_or_else(invalid);
    let format = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(format!("/v2/usercollection/heartrate?start_datetime={}&end_datetime={}", format(instant(from)?), format(instant(to)?)))
}

/// `/v2/usercollection/{data_type}/{object_id}`. The collection path is the data type except for
/// `vo2_max`, served at `vO2_max` (§2.1). Both parts go into a URL fetched with the user's token,
/// so they must be plain path segments.
fn api_path(data_type: &str, object_id: &str) -> Result<String, NormalizeError> {
    for segment in [data_type, object_id] {
        if !is_path_segment(segment) {
            return Err(NormalizeError::InvalidValue(format!("not a plain path segment: {segment:?}")));
        }
    }
    let collection = if data_type == "vo2_max" { "vO2_max" } else { data_type };
    Ok(format!("/v2/usercollection/{collection}/{object_id}"))
}

/// Letters, digits, `-` and `_` only: no `/`, `..`, `?` or `%` to steer the request elsewhere.
fn is_path_segment(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}
