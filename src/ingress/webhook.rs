//! `POST /webhooks/{vendor}`: verify, write the raw bytes to Kafka, answer.
//!
//! The steps run cheapest-refusal first, and nothing reaches Kafka before authentication:
//! vendor known and enabled (404) -> JSON content type (415) -> signature headers present and
//! fresh (401, before any body byte is read) -> a slot under the in-flight limit, within the
//! client's share of it (503) -> Apple
//! bearer token (401) -> body within the size limit, the read timeout and the minimum rate (413,
//! 408) -> signature over the body (401) -> UTF-8 JSON of bounded depth (400) -> claim the
//! delivery: already delivered? (200, no write) -> durable write acknowledged by the broker (202,
//! else 503 + Retry-After) -> mark the delivery written (or release the claim).
//!
//! Logs and error bodies name headers and codes, never header values, secrets or the payload;
//! the only request-derived values on the span are the delivery and trace ids.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::IngressState;
use super::body::{Reservation, check_json, read_body};
use super::dedup::Claim;
use super::error::IngressError;
use super::producer::ProduceError;
use super::record::{self, Accepted};
use super::server::ClientAddr;
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
    let (parts, body) = request.into_parts();
    check_content_type(&parts.headers)?;
    let client = parts.extensions.get::<ClientAddr>().copied();
    // Refused before the body is read and before a slot is taken: an unsigned or replayed
    // request costs nothing but its headers.
    if vendor != Vendor::AppleHealth {
        state.auth.check_headers(vendor, &parts.headers)?;
    }
    // Taken before the body is read: a slow upload occupies its slot while it trickles in (the
    // minimum body rate bounds how long).
    let _share = match client {
        Some(ClientAddr(address)) => state.client_shares.take(address).ok_or(IngressError::Overloaded { retry_after_secs: 1 })?,
        None => None,
    };
    let _permit = state.in_flight.clone().try_acquire_owned().map_err(|_| IngressError::Overloaded { retry_after_secs: 1 })?;
    let token_user = match vendor {
        Vendor::AppleHealth => Some(state.bearer_user(&parts.headers).await?),
        _ => None,
    };
    // Held until the write is acknowledged: the body's memory is the budget's until then.
    let mut reservation = Reservation::new(state.body_budget.clone());
    let body = read_body(&parts.headers, body, state.body_limits(vendor), &mut reservation).await?;
    if vendor != Vendor::AppleHealth {
        state.auth.verify(vendor, &parts.headers, &body)?;
    }
    // Authenticated from here on. Only now is the body parsed, and only to check it is JSON.
    check_json(&body)?;

    let delivery_id = record::delivery_id(vendor, &parts.headers, &body);
    tracing::Span::current().record("delivery_id", delivery_id.as_str());
    let vendor_user_id = token_user.or_else(|| vendors::vendor_user_id(vendor, &body));

    // The delivery is the vendor's, the user's and the id's together: two users' identical
    // uploads are two deliveries.
    let claim = match &state.dedup {
        Some(dedup) => match dedup.claim(vendor.slug(), vendor_user_id.as_deref(), &delivery_id, state.producer.produce_timeout()).await {
            Claim::Delivered => {
                crate::metrics::DEDUP_HITS.with_label_values(&[vendor.slug()]).inc();
                tracing::debug!("Re-delivery of an already written webhook; not written again.");
                return Ok(accepted_response(StatusCode::OK, "duplicate", &delivery_id, &trace_id));
            }
            Claim::Claimed(claim) => Some((dedup, claim)),
            Claim::Unavailable => None,
        },
        None => None,
    };

    let accepted = Accepted { vendor, delivery_id, trace_id, vendor_user_id, received_at_ms };
    // Sealed, the record's key and headers name the data key, never the user.
    let (key, value, headers) = match &state.at_rest {
        Some(keys) => match crate::at_rest::seal(keys, vendor, accepted.vendor_user_id.as_deref(), &body).await {
            Ok(sealed) => (sealed.key, std::borrow::Cow::Owned(sealed.value), accepted.sealed_headers(&parts.headers)),
            Err(error) => {
                tracing::warn!(%error, "The user's data key cannot be read; the webhook is refused, not written unsealed.");
                if let Some((dedup, claim)) = &claim {
                    dedup.release(claim).await;
                }
                return Err(IngressError::KeyStoreUnavailable { retry_after_secs: 5 });
            }
        },
        None => (accepted.key(), std::borrow::Cow::Borrowed(&body[..]), accepted.headers(&parts.headers)),
    };
    let written = state.producer.send(&key, &value, headers).await.map_err(|error| match error {
        ProduceError::CircuitOpen { retry_after } => IngressError::CircuitOpen { retry_after_secs: retry_after.as_secs().max(1) },
        ProduceError::Rejected(_) => IngressError::KafkaRejected,
        ProduceError::Unavailable(_) | ProduceError::Timeout => {
            IngressError::KafkaUnavailable { retry_after_secs: state.producer.retry_after().as_secs() }
        }
    });
    if let Some((dedup, claim)) = &claim {
        match &written {
            Ok(()) => dedup.mark_delivered(claim).await,
            Err(_) => dedup.release(claim).await,
        }
    }
    written?;
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
}
