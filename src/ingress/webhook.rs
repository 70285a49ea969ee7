//! `POST /webhooks/{vendor}`: verify, write the raw bytes to Kafka, answer.
//!
//! The steps run cheapest-refusal first, and nothing reaches Kafka before authentication:
//! vendor known and enabled (404) -> a slot under the in-flight limit (503) -> JSON content type
//! (415) -> body within the limit and the read timeout (413, 408) -> signature or bearer token
//! (401) -> well-formed JSON (400) -> already delivered? (200, no write) -> durable write
//! acknowledged by the broker (202, else 503 + Retry-After) -> remember the delivery id.
//!
//! Logs and error bodies name headers and codes, never header values, secrets or the payload;
//! the only request-derived values on the span are the delivery and trace ids.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::IngressState;
use super::error::IngressError;
use super::producer::ProduceError;
use super::record::{self, Accepted};
use crate::event::Vendor;
use crate::vendors;

/// Keeps `biometric_bridge_webhooks_in_flight` right even when a request is abandoned (the
/// client hung up and the handler future was dropped mid-way).
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        crate::metrics::WEBHOOKS_IN_FLIGHT.inc();
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        crate::metrics::WEBHOOKS_IN_FLIGHT.dec();
    }
}

pub async fn post_webhook(
    State(state): State<Arc<IngressState>>,
    vendor: Result<Path<String>, PathRejection>,
    request: Request<Body>,
) -> Response {
    let started = Instant::now();
    let received_at_ms = chrono::Utc::now().timestamp_millis();
    let _in_flight = InFlight::enter();
    let trace_id = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(crate::telemetry::trace_id_from_traceparent)
        .map(str::to_owned)
        .unwrap_or_else(crate::telemetry::new_trace_id);
    // The path segment is the caller's text: only a known slug goes into logs and labels.
    let vendor = vendor.ok().and_then(|Path(slug)| Vendor::from_slug(&slug));
    let label = vendor.map_or("unknown", Vendor::slug);
    let span = tracing::info_span!("webhook", vendor = label, trace_id = %trace_id, delivery_id = tracing::field::Empty);

    let response = match handle(&state, vendor, trace_id, received_at_ms, request).instrument(span.clone()).await {
        Ok(response) => response,
        Err(error) => {
            span.in_scope(|| tracing::info!(code = error.code(), status = error.status().as_u16(), "Webhook refused."));
            error.into_response()
        }
    };
    crate::metrics::WEBHOOK_REQUESTS.with_label_values(&[label, response.status().as_str()]).inc();
    crate::metrics::WEBHOOK_DURATION.with_label_values(&[label]).observe(started.elapsed().as_secs_f64());
    response
}

async fn handle(
    state: &IngressState,
    vendor: Option<Vendor>,
    trace_id: String,
    received_at_ms: i64,
    request: Request<Body>,
) -> Result<Response, IngressError> {
    let vendor = vendor.ok_or(IngressError::NotFound)?;
    if !state.auth.enabled(vendor) {
        return Err(IngressError::VendorDisabled(vendor.slug()));
    }
    // Taken before the body is read: a slow upload occupies its slot while it trickles in.
    let _permit = state.in_flight.clone().try_acquire_owned().map_err(|_| IngressError::Overloaded { retry_after_secs: 1 })?;

    let (parts, body) = request.into_parts();
    check_content_type(&parts.headers)?;
    let body = read_body(&parts.headers, body, state.max_body_bytes, state.body_read_timeout).await?;

    let vendor_user_id = match vendor {
        Vendor::AppleHealth => Some(state.bearer_user(&parts.headers).await?),
        _ => {
            state.auth.verify(vendor, &parts.headers, &body)?;
            None
        }
    };
    // Authenticated from here on. Only now is the body parsed, and only to check it is JSON.
    serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|_| IngressError::MalformedJson)?;

    let delivery_id = record::delivery_id(vendor, &parts.headers, &body);
    tracing::Span::current().record("delivery_id", delivery_id.as_str());

    if let Some(dedup) = &state.dedup
        && dedup.seen(vendor.slug(), &delivery_id).await
    {
        crate::metrics::DEDUP_HITS.with_label_values(&[vendor.slug()]).inc();
        tracing::debug!("Re-delivery of an already written webhook; not written again.");
        return Ok(accepted_response(StatusCode::OK, "duplicate", &delivery_id, &trace_id));
    }

    let accepted = Accepted {
        vendor,
        delivery_id,
        trace_id,
        vendor_user_id: vendor_user_id.or_else(|| vendors::vendor_user_id(vendor, &body)),
        received_at_ms,
    };
    state.producer.send(&accepted.key(), &body, accepted.headers(&parts.headers)).await.map_err(|error| match error {
        ProduceError::CircuitOpen { retry_after } => IngressError::CircuitOpen { retry_after_secs: retry_after.as_secs().max(1) },
        ProduceError::Rejected(_) => IngressError::KafkaRejected,
        ProduceError::Unavailable(_) | ProduceError::Timeout => {
            IngressError::KafkaUnavailable { retry_after_secs: state.producer.retry_after().as_secs() }
        }
    })?;

    if let Some(dedup) = &state.dedup {
        dedup.mark(vendor.slug(), &accepted.delivery_id).await;
    }
    tracing::debug!(bytes = body.len(), "Webhook written to Kafka.");
    Ok(accepted_response(StatusCode::ACCEPTED, "accepted", &accepted.delivery_id, &accepted.trace_id))
}

fn accepted_response(status: StatusCode, outcome: &str, delivery_id: &str, trace_id: &str) -> Response {
    let body = serde_json::json!({ "status": outcome, "delivery_id": delivery_id, "trace_id": trace_id });
    (status, axum::Json(body)).into_response()
}

/// JSON only: `application/json` with optional parameters (`; charset=utf-8`).
fn check_content_type(headers: &HeaderMap) -> Result<(), IngressError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case("application/json") { Ok(()) } else { Err(IngressError::UnsupportedMediaType) }
}

/// Reads the body within `timeout`, refusing early on a declared length over the limit.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize, timeout: Duration) -> Result<bytes::Bytes, IngressError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(IngressError::PayloadTooLarge { limit });
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await.map_err(|_| IngressError::BodyTimeout)?;
    read.map_err(|error| {
        let too_large = std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large { IngressError::PayloadTooLarge { limit } } else { IngressError::BodyUnreadable }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_must_be_json() {
        let mut headers = HeaderMap::new();
        assert!(check_content_type(&headers).is_err());
        headers.insert(header::CONTENT_TYPE, "application/json; charset=utf-8".parse().unwrap());
        assert!(check_content_type(&headers).is_ok());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(check_content_type(&headers).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_times_out() {
        let body = Body::from_stream(futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>());
        let result = read_body(&HeaderMap::new(), body, 1024, Duration::from_secs(1)).await;
        assert!(matches!(result, Err(IngressError::BodyTimeout)));
    }
}
