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

use super::{Identities, InfraError, Output, Pipeline, Record, TaskStores, raw_input};
use crate::event::Vendor;
use crate::fetch::FetchOutcome;
use crate::fetch::backoff::retry_topic_delay;
use crate::kafka::headers;
use crate::vendors::{self, Outcome, PendingFetch};

/// Headers that belong to one fetch attempt chain. They are dropped from dead letters, so a
/// replayed letter starts a fresh chain of passes.
const CHAIN_HEADERS: &[&str] = &[headers::FETCH_ATTEMPT, headers::FETCH_NOT_BEFORE, headers::FETCH_LAST_ERROR];

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
        }
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
            payload: record.payload.unwrap_or_default().to_vec(),
            headers: out,
            received_at_ms: None,
        }
    }
}

#[cfg(test)]
mod tests;
