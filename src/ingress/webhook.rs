//! `POST /webhooks/{vendor}`: verify, write the raw bytes to Kafka, answer.
//!
//! The steps run cheapest-refusal first, and nothing reaches Kafka before authentication:
//! vendor known and enabled (404) -> a slot under the in-flight limit (503) -> JSON content type
//! (415) -> body within the limit (413) -> signature or bearer token (401) -> well-formed JSON
//! (400) -> already delivered? (200, no write) -> durable write acknowledged by the broker (202,
//! else 503 + Retry-After) -> remember the delivery id.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rdkafka::message::OwnedHeaders;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::IngressState;
use super::auth::Authenticator;
use super::error::IngressError;
use super::producer::ProduceError;
use crate::event::Vendor;
use crate::kafka::headers;
use crate::vendors;

/// What the ingress knows about an accepted request, written as Kafka headers.
struct Accepted {
    vendor: Vendor,
    delivery_id: String,
    trace_id: String,
    vendor_user_id: Option<String>,
}

pub async fn post_webhook(State(state): State<Arc<IngressState>>, Path(vendor): Path<String>, request: Request<Body>) -> Response {
    let started = Instant::now();
    let trace_id = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(crate::telemetry::trace_id_from_traceparent)
        .map(str::to_owned)
        .unwrap_or_else(crate::telemetry::new_trace_id);
    let span = tracing::info_span!("webhook", vendor = %vendor, trace_id = %trace_id, delivery_id = tracing::field::Empty);
    let label = Vendor::from_slug(&vendor).map_or("unknown", Vendor::slug);

    crate::metrics::WEBHOOKS_IN_FLIGHT.inc();
    let response = match handle(&state, &vendor, trace_id, request).instrument(span.clone()).await {
        Ok(response) => response,
        Err(error) => {
            span.in_scope(|| tracing::info!(code = error.code(), status = error.status().as_u16(), "Webhook refused."));
            error.into_response()
        }
    };
    crate::metrics::WEBHOOKS_IN_FLIGHT.dec();
    crate::metrics::WEBHOOK_REQUESTS.with_label_values(&[label, response.status().as_str()]).inc();
    crate::metrics::WEBHOOK_DURATION.with_label_values(&[label]).observe(started.elapsed().as_secs_f64());
    response
}

async fn handle(state: &IngressState, vendor: &str, trace_id: String, request: Request<Body>) -> Result<Response, IngressError> {
    let vendor = Vendor::from_slug(vendor).ok_or(IngressError::NotFound)?;
    if !state.auth.enabled(vendor) {
        return Err(IngressError::VendorDisabled(vendor.slug()));
    }
    let _permit = state.in_flight.clone().try_acquire_owned().map_err(|_| IngressError::Overloaded { retry_after_secs: 1 })?;

    let (parts, body) = request.into_parts();
    check_content_type(&parts.headers)?;
    let body = read_body(&parts.headers, body, state.max_body_bytes).await?;

    let vendor_user_id = match vendor {
        Vendor::AppleHealth => Some(state.bearer_user(&parts.headers).await?),
        _ => {
            state.auth.verify(vendor, &parts.headers, &body)?;
            None
        }
    };
    // Authenticated from here on. Only now is the body parsed, and only to check it is JSON.
    serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|_| IngressError::MalformedJson)?;

    let delivery_id = delivery_id(vendor, &parts.headers, &body);
    tracing::Span::current().record("delivery_id", delivery_id.as_str());

    if let Some(dedup) = &state.dedup {
        if dedup.seen(vendor.slug(), &delivery_id).await {
            crate::metrics::DEDUP_HITS.with_label_values(&[vendor.slug()]).inc();
            tracing::info!("Re-delivery of an already written webhook; not written again.");
            return Ok(accepted_response(StatusCode::OK, "duplicate", &delivery_id, &trace_id));
        }
    }

    let accepted = Accepted {
        vendor,
        delivery_id,
        trace_id,
        vendor_user_id: vendor_user_id.or_else(|| vendors::vendor_user_id(vendor, &body)),
    };
    let key = match &accepted.vendor_user_id {
        Some(user) => format!("{}:{user}", vendor.slug()),
        None => vendor.slug().to_owned(),
    };
    let kafka_headers = kafka_headers(&accepted, &parts.headers);
    state.producer.send(&key, &body, kafka_headers).await.map_err(|error| {
        let retry_after_secs = match error {
            ProduceError::CircuitOpen { retry_after } => return IngressError::CircuitOpen { retry_after_secs: retry_after.as_secs().max(1) },
            _ => state.producer.retry_after().as_secs(),
        };
        IngressError::KafkaUnavailable { retry_after_secs }
    })?;

    if let Some(dedup) = &state.dedup {
        dedup.mark(vendor.slug(), &accepted.delivery_id).await;
    }
    tracing::info!(key = %key, bytes = body.len(), "Webhook written to Kafka.");
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

/// Reads the body, refusing early on a declared length over the limit.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<bytes::Bytes, IngressError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(IngressError::PayloadTooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large { IngressError::PayloadTooLarge { limit } } else { IngressError::BodyUnreadable }
    })
}

/// The vendor's own delivery id, else the sha256 of the body (a re-sent identical body is then
/// recognised too).
fn delivery_id(vendor: Vendor, headers: &HeaderMap, body: &[u8]) -> String {
    let vendor_id = match vendor {
        Vendor::Terra => vendors::terra::delivery_id(headers, body),
        Vendor::Oura => vendors::oura::delivery_id(headers, body),
        Vendor::Whoop => vendors::whoop::delivery_id(headers, body),
        Vendor::AppleHealth => None,
    };
    vendor_id.unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(body))))
}

fn kafka_headers(accepted: &Accepted, request_headers: &HeaderMap) -> OwnedHeaders {
    let received_at = chrono::Utc::now().timestamp_millis().to_string();
    let mut out = OwnedHeaders::new();
    out = headers::with(out, headers::VENDOR, accepted.vendor.slug());
    out = headers::with(out, headers::RECEIVED_AT, &received_at);
    out = headers::with(out, headers::DELIVERY_ID, &accepted.delivery_id);
    out = headers::with(out, headers::CONTENT_TYPE, "application/json");
    out = headers::with(out, headers::TRACE_ID, &accepted.trace_id);
    if accepted.vendor == Vendor::AppleHealth {
        if let Some(user) = &accepted.vendor_user_id {
            out = headers::with(out, headers::VENDOR_USER_ID, user);
        }
    }
    for name in Authenticator::signature_headers(accepted.vendor) {
        if let Some(value) = request_headers.get(*name).and_then(|value| value.to_str().ok()) {
            out = headers::with(out, name, value);
        }
    }
    out
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

    #[test]
    fn delivery_id_falls_back_to_the_body_hash() {
        let id = delivery_id(Vendor::AppleHealth, &HeaderMap::new(), b"{}");
        assert_eq!(id, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    }
}
