//! The fetch stage's business logic: what a `pending-fetch` / retry-topic record asks for, and
//! what a fetch outcome turns into. The HTTP itself happens in `fetch/`, driven by the runtime;
//! these functions stay pure so every branch is unit-tested.
//!
//! - fetched record -> the vendor's API mapper -> the same event chain as any webhook (identity,
//!   dedup, thresholds, baseline, route);
//! - retry -> the retry topic, with the pass count and a not-before time in headers; after
//!   `max_retries` passes -> the DLQ (`fetch_failed`);
//! - needs re-auth / no connection / rejected -> the DLQ with that reason (replayable once the
//!   user reconnects);
//! - gone (404) -> nothing.

use std::time::Duration;

use super::{Identities, InfraError, Output, Pipeline, Record, SealFor, TaskStores, raw_input};
use crate::event::Vendor;
use crate::fetch::FetchOutcome;
use crate::fetch::backoff::retry_topic_delay;
use crate::kafka::headers;
use crate::vendors::{self, Outcome, PendingFetch};

/// Headers that belong to one fetch attempt chain. They are dropped from dead letters, so a
/// replayed letter starts a fresh chain of passes.
const CHAIN_HEADERS: &[&str] = &[headers::FETCH_ATTEMPT, headers::FETCH_NOT_BEFORE, headers::FETCH_LAST_ERROR];

/// Headers of a pointer record that do not describe the payload it points to: the fetch chain,
/// the fetch plan, and the pointer webhook's signature and delivery id.
const POINTER_ONLY_HEADERS: &[&str] = &[
    headers::FETCH_ATTEMPT,
    headers::FETCH_NOT_BEFORE,
    headers::FETCH_LAST_ERROR,
    headers::FETCH_PATH,
    headers::FETCH_DATA_TYPE,
    headers::DELIVERY_ID,
    "terra-signature",
    "x-terra-signature",
];

/// Dead-letter class: a Terra pointer whose URL expired (or whose object is gone) before its
/// payload was downloaded.
pub const TERRA_PAYLOAD_EXPIRED: &str = "terra_payload_expired";
/// Dead-letter class: a Terra pointer whose URL may not be downloaded (not HTTPS, a host outside
/// `TERRA_PAYLOAD_HOSTS`) or whose download was refused for good.
pub const TERRA_PAYLOAD_REFUSED: &str = "terra_payload_refused";

/// The `fetch-not-before` of a retry record.
fn retry_not_before(retry: &Output) -> Option<i64> {
    use rdkafka::message::Headers;
    retry.headers.iter().find(|h| h.key == headers::FETCH_NOT_BEFORE).and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
}

/// What a record of the fetch stage needs.
#[derive(Debug)]
pub enum FetchPlan {
    /// Fetch `request`; `attempt` passes have failed before (0 for a fresh notification).
    Fetch { request: PendingFetch, attempt: u32 },
    /// A retry record that is not due before `until_ms`.
    Wait { until_ms: i64 },
    /// Nothing to fetch: write these (a dead letter).
    Done(Vec<Output>),
}

impl Pipeline {
    /// Whether `topic` is read by the fetch stage.
    pub fn is_fetch_topic(&self, topic: &str) -> bool {
        topic == self.topology.pending_fetch_topic || topic == self.topology.fetch.retry_topic
    }

    /// What the fetch-stage record needs at `now_ms`. The notification is the vendor's original
    /// body, so it is parsed again rather than trusting headers.
    pub fn plan_fetch(&self, record: &Record<'_>, now_ms: i64) -> FetchPlan {
        let header = |name| headers::get(record.headers, name);
        let Some(vendor) = header(headers::VENDOR).and_then(Vendor::from_slug) else {
            return FetchPlan::Done(vec![self.dead_letter(record, "unknown_vendor", "missing or unknown `vendor` header")]);
        };
        let Some(body) = record.payload else {
            return FetchPlan::Done(vec![self.dead_letter(record, "empty_payload", "record has no value")]);
        };
        if record.topic == self.topology.fetch.retry_topic
            && let Some(until_ms) = header(headers::FETCH_NOT_BEFORE).and_then(|v| v.parse::<i64>().ok())
            && until_ms > now_ms
        {
            return FetchPlan::Wait { until_ms };
        }
        let attempt = header(headers::FETCH_ATTEMPT).and_then(|v| v.parse().ok()).unwrap_or(0);
        match vendors::normalize(&raw_input(record, vendor, body)) {
            Ok(Outcome::PendingFetch(request)) if !vendors::fetch_is_mapped(request.vendor, &request.data_type) => {
                crate::metrics::NOTICES.with_label_values(&["fetch_unmapped"]).inc();
                tracing::info!(vendor = vendor.slug(), data_type = %request.data_type, "No mapping for this data type; not fetched.");
                FetchPlan::Done(Vec::new())
            }
            Ok(Outcome::PendingFetch(request)) if request.expires_at_ms.is_some_and(|at| at <= now_ms) => {
                FetchPlan::Done(vec![self.expired(record, &request, "the URL expired before it could be downloaded")])
            }
            Ok(Outcome::PendingFetch(request)) => FetchPlan::Fetch { request, attempt },
            Ok(_) => FetchPlan::Done(vec![self.dead_letter(record, "not_a_notification", "record names nothing to fetch")]),
            Err(error) => FetchPlan::Done(vec![self.rejected(record, &error)]),
        }
    }

    /// The outputs of one fetch pass over `record`.
    #[allow(clippy::too_many_arguments)]
    pub fn fetched(
        &self,
        record: &Record<'_>,
        request: &PendingFetch,
        attempt: u32,
        outcome: FetchOutcome,
        now_ms: i64,
        identities: &mut dyn Identities,
        stores: TaskStores<'_>,
    ) -> Result<Vec<Output>, InfraError> {
        let dead = |class: &str, message: &str| Ok(vec![self.dead_letter_without(record, class, message, CHAIN_HEADERS)]);
        if request.vendor == Vendor::Terra {
            return Ok(self.downloaded(record, request, attempt, outcome, now_ms));
        }
        match outcome {
            FetchOutcome::Fetched { data_type, body, user_id } => {
                let input = raw_input(record, request.vendor, record.payload.unwrap_or_default());
                let mapped = match request.vendor {
                    Vendor::Oura => vendors::oura::map_api_record(&data_type, &body, &input, &request.vendor_user_id),
                    Vendor::Whoop => vendors::whoop::map_api_record(&data_type, &body, &input, &request.vendor_user_id),
                    other => return dead("unsupported_type", &format!("{} records are not fetched", other.slug())),
                };
                match mapped.and_then(|events| vendors::check_events(&events).map(|()| events)) {
                    Ok(mut events) => {
                        // The connection names our user; an identity link (resolved next) still wins.
                        for event in &mut events {
                            event.user_id.clone_from(&user_id);
                        }
                        self.events(record, events, identities, stores)
                    }
                    Err(error) => dead("invalid_api_response", &format!("{} {data_type}: {error}", request.vendor.slug())),
                }
            }
            FetchOutcome::Gone => {
                crate::metrics::NOTICES.with_label_values(&["fetch_gone"]).inc();
                tracing::info!(vendor = request.vendor.slug(), data_type = %request.data_type, "Notified record no longer exists; skipped.");
                Ok(Vec::new())
            }
            FetchOutcome::Retry { reason, retry_after } => {
                // Our own dependencies down (PostgreSQL, Redis: no token could be had) are not the
                // notification's fault: such a pass is retried without counting, so an outage
                // never dead-letters, as elsewhere in the processor.
                let pass = if reason == crate::fetch::TOKEN_UNAVAILABLE { attempt } else { attempt + 1 };
                if pass > self.topology.fetch.max_retries {
                    return dead("fetch_failed", &format!("{reason} on {pass} passes"));
                }
                Ok(vec![self.retry(record, pass, &reason, retry_after, now_ms)])
            }
            FetchOutcome::NeedsReauth { reason } => dead("connection_needs_reauth", &reason),
            FetchOutcome::NoConnection { reason } => dead("no_connection", &reason),
            FetchOutcome::Rejected { reason } => dead("fetch_rejected", &reason),
            FetchOutcome::Expired { reason } => dead("fetch_failed", &reason),
        }
    }

    /// The outputs of one download pass of a Terra payload pointer: the payload itself, as a raw
    /// record of the ingress topic, keyed by its user and naming where it came from. Replay and
    /// re-normalization then work long after the URL has expired: the raw topic stays the system
    /// of record.
    fn downloaded(&self, record: &Record<'_>, request: &PendingFetch, attempt: u32, outcome: FetchOutcome, now_ms: i64) -> Vec<Output> {
        match outcome {
            FetchOutcome::Fetched { body, .. } => {
                if matches!(vendors::terra::kind(&body).as_deref(), Some("s3_payload" | "s3_upload")) {
                    return vec![self.dead_letter_without(
                        record,
                        "invalid_api_response",
                        "the payload is itself a pointer",
                        CHAIN_HEADERS,
                    )];
                }
                crate::metrics::TERRA_POINTERS.with_label_values(&["downloaded"]).inc();
                vec![self.raw_payload(record, request, body, now_ms)]
            }
            FetchOutcome::Expired { reason } => vec![self.expired(record, request, &reason)],
            FetchOutcome::Rejected { reason } => {
                crate::metrics::TERRA_POINTERS.with_label_values(&["refused"]).inc();
                vec![self.dead_letter_without(record, TERRA_PAYLOAD_REFUSED, &reason, CHAIN_HEADERS)]
            }
            FetchOutcome::Retry { reason, retry_after } => {
                let pass = attempt + 1;
                let retry = self.retry(record, pass, &reason, retry_after, now_ms);
                let not_before = retry_not_before(&retry);
                match request.expires_at_ms {
                    // The next pass would come too late: the data is only recoverable from Terra now.
                    Some(expires_at) if not_before.is_some_and(|at| at >= expires_at) => {
                        vec![self.expired(record, request, &format!("{reason}; the URL expires before another pass"))]
                    }
                    _ if pass > self.topology.fetch.max_retries => {
                        vec![self.dead_letter_without(record, "fetch_failed", &format!("{reason} on {pass} passes"), CHAIN_HEADERS)]
                    }
                    _ => vec![retry],
                }
            }
            other => vec![self.dead_letter_without(record, "fetch_failed", &format!("unexpected {}", other.label()), CHAIN_HEADERS)],
        }
    }

    /// The dead letter of a pointer whose payload can no longer be downloaded. Recover the data
    /// with `reconcile --vendor terra` (Terra re-sends the window).
    fn expired(&self, record: &Record<'_>, request: &PendingFetch, reason: &str) -> Output {
        crate::metrics::TERRA_POINTERS.with_label_values(&["expired"]).inc();
        let message = format!("{reason} (terra user {}, payload {})", request.vendor_user_id, request.object_id);
        let letter = self.dead_letter_without(record, TERRA_PAYLOAD_EXPIRED, &message, CHAIN_HEADERS);
        Output { headers: headers::with(letter.headers, headers::TERRA_PAYLOAD_REFERENCE, &request.object_id), ..letter }
    }

    /// The downloaded payload as a raw record of the ingress topic.
    fn raw_payload(&self, record: &Record<'_>, request: &PendingFetch, body: Vec<u8>, now_ms: i64) -> Output {
        let user = vendors::vendor_user_id(Vendor::Terra, &body);
        let key = user.as_ref().map_or_else(|| "terra".to_owned(), |user| format!("terra:{user}"));
        // The pointer's own signature headers sign the pointer, not the payload: not copied.
        let mut out = headers::copy_except(record.headers, POINTER_ONLY_HEADERS);
        out = headers::with(out, headers::DELIVERY_ID, &format!("terra-payload:{}", request.object_id));
        out = headers::with(out, headers::TERRA_PAYLOAD_REFERENCE, &request.object_id);
        out = headers::with(out, headers::DOWNLOADED_AT, &now_ms.to_string());
        if headers::get(record.headers, headers::POINTER_ORIGIN).is_none() {
            out = headers::with(out, headers::POINTER_ORIGIN, &format!("{}/{}/{}", record.topic, record.partition, record.offset));
        }
        let topic = self.topology.ingress_topic().to_owned();
        crate::metrics::RECORDS_OUT.with_label_values(&[&topic]).inc();
        let seal_for = user.map(|vendor_user_id| SealFor { vendor: Vendor::Terra, vendor_user_id });
        Output { topic, key: Some(key.into_bytes()), payload: body, headers: out, received_at_ms: None, seal_for }
    }

    /// The notification again, on the retry topic, after pass `pass` failed.
    fn retry(&self, record: &Record<'_>, pass: u32, reason: &str, retry_after: Option<Duration>, now_ms: i64) -> Output {
        let fetch = &self.topology.fetch;
        let delay = retry_topic_delay(
            Duration::from_millis(fetch.retry_delay_ms),
            Duration::from_millis(fetch.max_retry_delay_ms),
            pass.max(1),
            retry_after,
        );
        let not_before = now_ms + delay.as_millis() as i64;
        let mut out = headers::copy_except(record.headers, CHAIN_HEADERS);
        out = headers::with(out, headers::FETCH_ATTEMPT, &pass.to_string());
        out = headers::with(out, headers::FETCH_NOT_BEFORE, &not_before.to_string());
        out = headers::with(out, headers::FETCH_LAST_ERROR, reason);
        crate::metrics::RECORDS_OUT.with_label_values(&[&fetch.retry_topic]).inc();
        tracing::info!(pass, reason, delay_ms = delay.as_millis() as u64, "Fetch failed; notification queued for a retry pass.");
        Output {
            topic: fetch.retry_topic.clone(),
            key: record.key.map(<[u8]>::to_vec),
            payload: record.stored_payload().unwrap_or_default().to_vec(),
            headers: out,
            received_at_ms: None,
            seal_for: None,
        }
    }
}

#[cfg(test)]
mod tests;
