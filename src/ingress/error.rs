//! Every way a webhook request can fail, as an HTTP answer with a stable JSON body
//! `{"error": "<code>", "detail": "..."}`.
//!
//! Codes are part of the API (vendors' dashboards and our alerts key on them); details are for
//! humans and never contain secrets, header values or the payload.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::vendors::signature::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("no webhook endpoint for this path")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("vendor {0} is not enabled on this ingress")]
    VendorDisabled(&'static str),
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("could not read the request body")]
    BodyUnreadable,
    /// The body did not arrive within the read timeout: a slow sender must not hold one of the
    /// in-flight slots for ever.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// The body arrived slower than the minimum rate (`MIN_BODY_BYTES_PER_SEC`).
    #[error("the request body arrives too slowly")]
    BodyTooSlow,
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("verification token does not match")]
    VerificationFailed,
    #[error("body is not UTF-8 JSON nesting at most 64 levels")]
    MalformedJson,
    #[error("too many webhooks in flight; retry later")]
    Overloaded { retry_after_secs: u64 },
    #[error("event log unavailable; retry later")]
    KafkaUnavailable { retry_after_secs: u64 },
    #[error("event log circuit is open; retry later")]
    CircuitOpen { retry_after_secs: u64 },
    /// The broker (or the producer) refused this record for good, e.g. larger than the topic's
    /// `max.message.bytes`: a deployment error, not the sender's, so 500 and the vendor retries
    /// once it is fixed.
    #[error("the event log refused the record; the operators have been alerted")]
    KafkaRejected,
    #[error("token store unavailable; retry later")]
    TokenStoreUnavailable { retry_after_secs: u64 },
    /// The per-user data key could not be read or created (PostgreSQL): nothing is written
    /// unsealed instead.
    #[error("key store unavailable; retry later")]
    KeyStoreUnavailable { retry_after_secs: u64 },
}

impl IngressError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngressError::NotFound | IngressError::VendorDisabled(_) => StatusCode::NOT_FOUND,
            IngressError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            IngressError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngressError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngressError::BodyUnreadable | IngressError::MalformedJson => StatusCode::BAD_REQUEST,
            IngressError::BodyTimeout | IngressError::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            IngressError::KafkaRejected => StatusCode::INTERNAL_SERVER_ERROR,
            IngressError::Signature(_) | IngressError::Unauthorized | IngressError::VerificationFailed => StatusCode::UNAUTHORIZED,
            IngressError::Overloaded { .. }
            | IngressError::KafkaUnavailable { .. }
            | IngressError::CircuitOpen { .. }
            | IngressError::TokenStoreUnavailable { .. }
            | IngressError::KeyStoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable error code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            IngressError::NotFound => "not_found",
            IngressError::MethodNotAllowed => "method_not_allowed",
            IngressError::VendorDisabled(_) => "vendor_disabled",
            IngressError::UnsupportedMediaType => "unsupported_media_type",
            IngressError::PayloadTooLarge { .. } => "payload_too_large",
            IngressError::BodyUnreadable => "body_unreadable",
            IngressError::BodyTimeout => "body_timeout",
            IngressError::BodyTooSlow => "body_too_slow",
            IngressError::KafkaRejected => "kafka_rejected",
            IngressError::Signature(error) => error.code(),
            IngressError::Unauthorized => "unauthorized",
            IngressError::VerificationFailed => "verification_failed",
            IngressError::MalformedJson => "malformed_json",
            IngressError::Overloaded { .. } => "overloaded",
            IngressError::KafkaUnavailable { .. } => "kafka_unavailable",
            IngressError::CircuitOpen { .. } => "circuit_open",
            IngressError::TokenStoreUnavailable { .. } => "token_store_unavailable",
            IngressError::KeyStoreUnavailable { .. } => "key_store_unavailable",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            IngressError::Overloaded { retry_after_secs }
            | IngressError::KafkaUnavailable { retry_after_secs }
            | IngressError::CircuitOpen { retry_after_secs }
            | IngressError::TokenStoreUnavailable { retry_after_secs }
            | IngressError::KeyStoreUnavailable { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// `{"error": code, "detail": detail}` with the right status (and `Retry-After` for 503s).
pub fn json_error(status: StatusCode, code: &str, detail: &str, retry_after: Option<u64>) -> Response {
    let body = serde_json::json!({ "error": code, "detail": detail });
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

impl IntoResponse for IngressError {
    fn into_response(self) -> Response {
        crate::metrics::ERRORS.with_label_values(&["ingress", self.code()]).inc();
        json_error(self.status(), self.code(), &self.to_string(), self.retry_after())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_are_json_with_stable_codes() {
        let response = IngressError::KafkaUnavailable { retry_after_secs: 5 }.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "kafka_unavailable");
        assert!(json["detail"].is_string());
    }

    #[test]
    fn signature_errors_keep_their_codes() {
        let error = IngressError::from(SignatureError::Stale);
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error.code(), "stale_signature");
    }
}
