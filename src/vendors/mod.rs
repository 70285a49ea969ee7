//! Vendors: one module per wearable integration, holding everything that is about that vendor.
//!
//! Each vendor module (`terra`, `oura`, `whoop`, `apple_health`) owns, side by side:
//! - its **signature check** over the raw request bytes (used by the ingress),
//! - the **routing key / delivery id** extraction (the smallest parse that finds them),
//! - its **normalization** of a raw record into canonical [`BiometricEvent`]s (used by the
//!   processor) — plain functions, no I/O, unit-tested against `tests/fixtures/<vendor>/`.
//!
//! This module defines the types they share and dispatches on [`Vendor`].

pub mod apple_health;
pub mod oura;
#[cfg(test)]
mod properties;
pub mod signature;
pub mod terra;
#[cfg(test)]
pub(crate) mod test_support;
pub mod time;
pub mod whoop;

use crate::event::{BiometricEvent, EventKind, Lineage, Vendor};

/// A raw webhook record as the processor sees it: the exact body bytes the vendor sent plus the
/// context the ingress recorded in Kafka headers.
#[derive(Debug, Clone, Copy)]
pub struct RawInput<'a> {
    pub vendor: Vendor,
    /// The body, byte for byte as received.
    pub body: &'a [u8],
    /// When the ingress received it (ms since the epoch, UTC).
    pub received_at_ms: i64,
    /// The vendor's user id when the ingress already knows it (Apple Health: the bearer
    /// token's user). `None` means: read it from the body.
    pub vendor_user_id: Option<&'a str>,
    pub delivery_id: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub source_topic: &'a str,
    pub source_partition: i32,
    pub source_offset: i64,
}

impl RawInput<'_> {
    /// Lineage to stamp on every event produced from this record.
    pub fn lineage(&self) -> Lineage {
        Lineage {
            source_topic: self.source_topic.to_owned(),
            source_partition: self.source_partition,
            source_offset: self.source_offset,
            delivery_id: self.delivery_id.map(str::to_owned),
        }
    }
}

/// What one raw record turns into.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Biometric data. `user_id` is filled with the best id the payload itself gives (Terra's
    /// `reference_id`) or the vendor-scoped fallback (`terra:<id>`); the processor replaces it
    /// with the identity mapping when one exists. Triggers are not yet evaluated.
    Events(Vec<BiometricEvent>),
    /// A change to the identity mapping (Terra auth / deauth / user_reauth).
    Identity(IdentityChange),
    /// A notification-only vendor (Oura, WHOOP) told us data exists; it must be fetched from the
    /// vendor API. The raw record goes unchanged to the `pending-fetch` topic.
    PendingFetch(PendingFetch),
    /// A record recognised as carrying no data for us (Terra `large_request_processing`,
    /// `s3_payload`, `healthcheck`, a `*.deleted` notice, ...): logged and skipped, not an error.
    Notice { kind: String, detail: String },
}

/// An update to the (vendor, vendor user id) -> user id mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityChange {
    /// Link a vendor user to our user id.
    Link { vendor: Vendor, vendor_user_id: String, user_id: String, provider: Option<String> },
    /// The vendor user disconnected.
    Unlink { vendor: Vendor, vendor_user_id: String },
    /// The vendor replaced a user id (Terra `user_reauth`): later data uses the new id.
    Rekey { vendor: Vendor, old_vendor_user_id: String, new_vendor_user_id: String, user_id: String, provider: Option<String> },
}

/// What must be fetched from a notification-only vendor's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFetch {
    pub vendor: Vendor,
    pub vendor_user_id: String,
    /// The vendor's data type (`sleep`, `daily_readiness`, `recovery`, ...).
    pub data_type: String,
    /// The vendor's record id to fetch.
    pub object_id: String,
    /// The API path to GET (relative to the vendor's API base), e.g. `/v2/usercollection/sleep/<id>`;
    /// for a Terra payload pointer, the pre-signed URL itself.
    pub api_path: String,
    /// When the request stops being possible (a Terra pointer's URL expires), ms since the epoch.
    pub expires_at_ms: Option<i64>,
}

/// The kind of event a notification-only vendor's record of `data_type` is mapped to, keyed by
/// the record id its notifications carry (see each vendor's `event_kind`).
pub fn record_kind(vendor: Vendor, data_type: &str) -> Option<EventKind> {
    match vendor {
        Vendor::Oura => oura::event_kind(data_type),
        Vendor::Whoop => whoop::event_kind(data_type),
        _ => None,
    }
}

/// Whether fetched records of `data_type` can be mapped to events: the fetch stage skips the
/// others (an Oura `daily_stress` or `tag` subscription) instead of spending an API call on them.
pub fn fetch_is_mapped(vendor: Vendor, data_type: &str) -> bool {
    match vendor {
        Vendor::Oura => oura::MAPPED_DATA_TYPES.contains(&data_type),
        Vendor::Whoop => whoop::MAPPED_DATA_TYPES.contains(&data_type),
        Vendor::Terra => data_type == terra::pointer::DATA_TYPE,
        Vendor::AppleHealth => false,
    }
}

/// Why a record could not be normalized. The class is stable (it becomes the `error-class`
/// header of the dead-letter record); the message is for humans and never holds secrets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormalizeError {
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload shape not understood: {0}")]
    InvalidShape(String),
    #[error("unsupported record type: {0}")]
    UnsupportedType(String),
    #[error("invalid value: {0}")]
    InvalidValue(String),
}

impl NormalizeError {
    /// Stable, bounded class name for headers and metric labels.
    pub fn class(&self) -> &'static str {
        match self {
            NormalizeError::InvalidJson(_) => "invalid_json",
            NormalizeError::InvalidShape(_) => "invalid_shape",
            NormalizeError::UnsupportedType(_) => "unsupported_type",
            NormalizeError::InvalidValue(_) => "invalid_value",
        }
    }
}

impl From<serde_json::Error> for NormalizeError {
    fn from(error: serde_json::Error) -> Self {
        match error.classify() {
            serde_json::error::Category::Data => NormalizeError::InvalidShape(error.to_string()),
            _ => NormalizeError::InvalidJson(error.to_string()),
        }
    }
}

/// Longest identifier (user, record, device, delivery id) a record may carry. Real ones are UUIDs,
/// integers or short names; a multi-megabyte one (a 2.5 MB Terra `reference_id` was tried) would
/// make every output larger than the topic allows and every lookup a poison pill.
pub const MAX_IDENTIFIER_BYTES: usize = 256;

/// Normalize one raw record of any vendor. Every identifier of the outcome is bounded and free of
/// control characters (PostgreSQL cannot even store a NUL): a record that breaks this is
/// `invalid_shape`, whatever the vendor module said.
pub fn normalize(input: &RawInput<'_>) -> Result<Outcome, NormalizeError> {
    let outcome = match input.vendor {
        Vendor::Terra => terra::normalize(input),
        Vendor::Oura => oura::normalize(input),
        Vendor::Whoop => whoop::normalize(input),
        Vendor::AppleHealth => apple_health::normalize(input),
    }?;
    match &outcome {
        Outcome::Events(events) => check_events(events)?,
        Outcome::Identity(change) => check_identity(change)?,
        Outcome::PendingFetch(fetch) => {
            check_identifier("vendor_user_id", &fetch.vendor_user_id)?;
            check_identifier("data_type", &fetch.data_type)?;
            check_identifier("object_id", &fetch.object_id)?;
        }
        Outcome::Notice { .. } => {}
    }
    Ok(outcome)
}

/// Whether `value` may be used as an identifier: non-empty, at most [`MAX_IDENTIFIER_BYTES`], no
/// control characters.
pub fn is_identifier(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_IDENTIFIER_BYTES && !value.chars().any(char::is_control)
}

/// `invalid_shape` unless `value` [`is_identifier`]. The message names the field and the length,
/// never the value (it may be megabytes, or someone's id).
fn check_identifier(field: &str, value: &str) -> Result<(), NormalizeError> {
    if value.len() > MAX_IDENTIFIER_BYTES {
        return Err(NormalizeError::InvalidShape(format!("{field} is {} bytes, more than {MAX_IDENTIFIER_BYTES}", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err(NormalizeError::InvalidShape(format!("{field} contains a control character")));
    }
    if value.is_empty() {
        return Err(NormalizeError::InvalidShape(format!("{field} is empty")));
    }
    Ok(())
}

/// The identifier bounds of [`normalize`], for events mapped from fetched API records too.
pub fn check_events(events: &[BiometricEvent]) -> Result<(), NormalizeError> {
    for event in events {
        check_identifier("user_id", &event.user_id)?;
        check_identifier("vendor_user_id", &event.vendor_user_id)?;
        for (field, value) in [
            ("vendor_record_id", &event.vendor_record_id),
            ("source_device", &event.source_device),
            ("local_date", &event.local_date),
            ("retracts_event_id", &event.retracts_event_id),
        ] {
            if let Some(value) = value {
                check_identifier(field, value)?;
            }
        }
    }
    Ok(())
}

fn check_identity(change: &IdentityChange) -> Result<(), NormalizeError> {
    let (ids, provider): (Vec<(&str, &str)>, &Option<String>) = match change {
        IdentityChange::Link { vendor_user_id, user_id, provider, .. } => {
            (vec![("vendor_user_id", vendor_user_id), ("user_id", user_id)], provider)
        }
        IdentityChange::Unlink { vendor_user_id, .. } => (vec![("vendor_user_id", vendor_user_id)], &None),
        IdentityChange::Rekey { old_vendor_user_id, new_vendor_user_id, user_id, provider, .. } => {
            (vec![("old_vendor_user_id", old_vendor_user_id), ("new_vendor_user_id", new_vendor_user_id), ("user_id", user_id)], provider)
        }
    };
    for (field, value) in ids {
        check_identifier(field, value)?;
    }
    provider.as_deref().map_or(Ok(()), |provider| check_identifier("provider", provider))
}

/// The vendor user id a webhook body belongs to, found with the smallest parse that finds it.
/// Used for the Kafka key (`<vendor>:<vendor user id>`) so one user's records keep their order on
/// one partition. `None` when the body does not name a user (the record is still accepted).
pub fn vendor_user_id(vendor: Vendor, body: &[u8]) -> Option<String> {
    match vendor {
        Vendor::Terra => terra::vendor_user_id(body),
        Vendor::Oura => oura::vendor_user_id(body),
        Vendor::Whoop => whoop::vendor_user_id(body),
        // Apple Health bodies name no user: the bearer token does.
        Vendor::AppleHealth => None,
    }
}

/// The id of a user we could not map: scoped by vendor so it can never collide with ours.
pub fn vendor_scoped_user_id(vendor: Vendor, vendor_user_id: &str) -> String {
    format!("{}:{}", vendor.slug(), vendor_user_id)
}

/// Deterministic event id: UUIDv5 over vendor, kind and the vendor's natural key of the record.
/// The same vendor record always gets the same id, whichever path or retry brought it.
pub fn event_id(vendor: Vendor, kind: EventKind, natural_key: &str) -> String {
    /// Our own namespace for v5 ids (a random v4 fixed once; never change it).
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_2a8e_93d4_4b57_a1e0_5c7d_3b2f_9e41);
    let name = format!("{}|{}|{}", vendor.symbol(), kind.symbol(), natural_key);
    uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
}

/// A DELETED event: the vendor deleted its record `object_id` of `data_type`. Its own id is keyed
/// by data type and record id (a re-delivered deletion is a duplicate); `retracts` is the kind of
/// event the record had produced, which gives `retracts_event_id` (same natural key: the record
/// id), so consumers can drop exactly that event.
pub fn tombstone(
    input: &RawInput<'_>,
    vendor_user_id: &str,
    data_type: &str,
    object_id: &str,
    retracts: Option<EventKind>,
    deleted_at: i64,
) -> BiometricEvent {
    let mut event = base_event(input, EventKind::Deleted, &format!("{data_type}|{object_id}"), vendor_user_id, deleted_at);
    event.vendor_record_id = Some(object_id.to_owned());
    event.retracts_event_id = retracts.map(|kind| event_id(input.vendor, kind, object_id));
    event
}

/// A new event carrying the fields every vendor fills the same way: ids, vendor, kind, times,
/// lineage and trace id. Metrics start empty (`None`); triggers empty and priority `Normal` until
/// the processor judges the event. `user_id` starts as the vendor-scoped fallback.
pub fn base_event(input: &RawInput<'_>, kind: EventKind, natural_key: &str, vendor_user_id: &str, measured_at: i64) -> BiometricEvent {
    BiometricEvent {
        lineage: input.lineage(),
        trace_id: input.trace_id.map(str::to_owned),
        ..BiometricEvent::empty(
            event_id(input.vendor, kind, natural_key),
            vendor_scoped_user_id(input.vendor, vendor_user_id),
            input.vendor,
            vendor_user_id.to_owned(),
            kind,
            measured_at,
            input.received_at_ms,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_type_declared_mapped_has_a_mapper() {
        let input = test_support::raw_input(Vendor::Oura, b"{}");
        type Mapper = fn(&str, &[u8], &RawInput<'_>, &str) -> Result<Vec<BiometricEvent>, NormalizeError>;
        let vendors: [(Vendor, &[&str], Mapper); 2] = [
            (Vendor::Oura, oura::MAPPED_DATA_TYPES, oura::map_api_record),
            (Vendor::Whoop, whoop::MAPPED_DATA_TYPES, whoop::map_api_record),
        ];
        for (vendor, types, map) in vendors {
            for data_type in types {
                assert!(fetch_is_mapped(vendor, data_type));
                let error = map(data_type, b"{}", &input, "u").err();
                assert_ne!(error.map(|e| e.class()), Some("unsupported_type"), "{vendor:?} {data_type}");
            }
            assert_eq!(map("daily_stress", b"{}", &input, "u").unwrap_err().class(), "unsupported_type");
            assert!(!fetch_is_mapped(vendor, "daily_stress"));
        }
    }
}
