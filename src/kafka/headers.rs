//! Kafka header names: the contract between the ingress, the processor and downstream consumers
//! (documented in the README's "Topics and headers" section). Values are UTF-8 strings.

use rdkafka::message::{Headers, OwnedHeaders};

// ---- on raw-webhooks (written by the ingress) ----
/// Vendor slug: `terra`, `oura`, `whoop`, `apple-health`.
pub const VENDOR: &str = "vendor";
/// When the ingress received the request, ms since the epoch (UTC).
pub const RECEIVED_AT: &str = "received-at";
/// The vendor's delivery id (Terra `x-terra-trace-id`, WHOOP `trace_id`) or sha256 of the body.
pub const DELIVERY_ID: &str = "delivery-id";
/// The request's content type.
pub const CONTENT_TYPE: &str = "content-type";
/// W3C trace id (32 hex), from the caller's `traceparent` or minted by the ingress.
pub const TRACE_ID: &str = "trace-id";
/// The vendor's user id when the ingress knows it from authentication (Apple Health tokens).
pub const VENDOR_USER_ID: &str = "vendor-user-id";

/// Terra: the reference of the large historical request a data chunk belongs to (Terra's
/// `terra-reference` request header, copied by the ingress).
pub const TERRA_REFERENCE: &str = "terra-reference";
/// Terra: when Terra emitted the payload (its `X-Terra-Ordering-Timestamp`, ms), unchanged across
/// retries: an older copy must not overwrite a newer one.
pub const TERRA_ORDERING_TIMESTAMP: &str = "x-terra-ordering-timestamp";

// ---- on output events ----
/// `NORMAL`, `LOW`, `MEDIUM`, `HIGH`, `CRITICAL`: route without decoding Avro.
pub const PRIORITY: &str = "priority";
/// The event kind (`SLEEP`, `HRV`, ...).
pub const EVENT_TYPE: &str = "event-type";
/// Our user id (also the record key).
pub const USER_ID: &str = "user-id";
/// The event's deterministic id.
pub const EVENT_ID: &str = "event-id";
/// On an erasure record (`users erase`, every partition of the ingress topic): the person whose
/// state every task deletes, and their vendor user ids (`<vendor>:<id>,...`).
pub const ERASE_USER: &str = "erase-user";
pub const ERASE_VENDOR_USERS: &str = "erase-vendor-users";
/// When the erase happened (ms): the person's records received before it are not written.
pub const ERASED_AT: &str = "erased-at";

// ---- on dead letters ----
pub const ERROR_CLASS: &str = "error-class";
pub const ERROR_MESSAGE: &str = "error-message";
pub const SOURCE_TOPIC: &str = "source-topic";
pub const SOURCE_PARTITION: &str = "source-partition";
pub const SOURCE_OFFSET: &str = "source-offset";
/// On a dead letter too large for the DLQ topic: the payload's length. The letter carries no
/// payload; the source record (`source-topic` / `source-partition` / `source-offset`) has it.
pub const PAYLOAD_OMITTED: &str = "payload-omitted";
/// On a replayed record: `<dlq topic>/<partition>/<offset>` it was replayed from.
pub const REPLAYED_FROM: &str = "replayed-from";

// ---- on pending fetches ----
/// The vendor API path to GET for the notified record.
pub const FETCH_PATH: &str = "fetch-path";
/// The vendor data type of the notified record.
pub const FETCH_DATA_TYPE: &str = "fetch-data-type";

// ---- on Terra payloads downloaded from a pointer (raw topic) ----
/// Where the pointer was read: `<topic>/<partition>/<offset>` (the `terra-direct` record, or the
/// raw webhook that carried it).
pub const POINTER_ORIGIN: &str = "terra-pointer-origin";
/// The pointer's payload reference (its `payload_reference`, else an id of its URL).
pub const TERRA_PAYLOAD_REFERENCE: &str = "terra-payload-reference";
/// When the payload was downloaded, ms since the epoch.
pub const DOWNLOADED_AT: &str = "downloaded-at";

// ---- on the fetch retry topic ----
/// How many fetch passes have failed so far (1 on the first retry record).
pub const FETCH_ATTEMPT: &str = "fetch-attempt";
/// Not to be fetched again before this instant, ms since the epoch.
pub const FETCH_NOT_BEFORE: &str = "fetch-not-before";
/// Why the last pass failed (a short class, e.g. `http_503`, `rate_limited`, `timeout`).
pub const FETCH_LAST_ERROR: &str = "fetch-last-error";

/// The value of header `name` as UTF-8, if present.
pub fn get<'a>(headers: Option<&'a rdkafka::message::BorrowedHeaders>, name: &str) -> Option<&'a str> {
    let headers = headers?;
    headers.iter().find(|header| header.key == name).and_then(|header| header.value).and_then(|value| std::str::from_utf8(value).ok())
}

/// Copies every header of `from` into a new set, for records forwarded unchanged (DLQ,
/// pending-fetch, repartition).
pub fn copy(from: Option<&rdkafka::message::BorrowedHeaders>) -> OwnedHeaders {
    let mut owned = OwnedHeaders::new();
    if let Some(from) = from {
        for header in from.iter() {
            owned = owned.insert(rdkafka::message::Header { key: header.key, value: header.value });
        }
    }
    owned
}

/// Like [`copy`], without the headers named in `except` (they are about to be set anew; a reader
/// takes the first header of a name, so a stale copy must not stay in front).
pub fn copy_except(from: Option<&rdkafka::message::BorrowedHeaders>, except: &[&str]) -> OwnedHeaders {
    let mut owned = OwnedHeaders::new();
    if let Some(from) = from {
        for header in from.iter().filter(|header| !except.contains(&header.key)) {
            owned = owned.insert(rdkafka::message::Header { key: header.key, value: header.value });
        }
    }
    owned
}

/// Adds a string header.
pub fn with(headers: OwnedHeaders, name: &str, value: &str) -> OwnedHeaders {
    headers.insert(rdkafka::message::Header { key: name, value: Some(value) })
}

/// The headers of an output event (README, "Topics and headers"): a consumer can route it by
/// `priority` and `event-type` before decoding it.
pub fn event_headers(event: &crate::event::BiometricEvent) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    out = with(out, PRIORITY, event.priority.symbol());
    out = with(out, EVENT_TYPE, event.kind.symbol());
    out = with(out, VENDOR, event.vendor.slug());
    out = with(out, USER_ID, &event.user_id);
    out = with(out, EVENT_ID, &event.event_id);
    if let Some(trace_id) = &event.trace_id {
        out = with(out, TRACE_ID, trace_id);
    }
    out
}
