//! Reading a webhook body within its limits, and the JSON checks the README promises.
//!
//! A body is read only after the request's signature headers (or bearer token) passed, within:
//! - a size limit (413, refused on the declared length before any byte is read);
//! - an overall deadline (`BODY_READ_TIMEOUT_MS`, 408 `body_timeout`);
//! - a minimum average rate after a one-second grace (408 `body_too_slow`): a body trickling in
//!   at a few bytes a second holds an in-flight slot, and without this 100 such bodies would
//!   hold every slot for the whole deadline at no cost to their sender.
//!
//! [`check_json`] is what "malformed JSON is refused with 400" means here: the body is UTF-8
//! (RFC 8259 §8.1: JSON exchanged between systems must be), nests at most [`MAX_JSON_DEPTH`]
//! levels, and parses. serde_json's own recursion limit does not apply when a value is skipped,
//! so the depth is counted first, in one pass over the bytes.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::error::IngressError;

/// Deepest nesting of arrays and objects accepted. Vendors' payloads nest about 6 levels.
pub const MAX_JSON_DEPTH: usize = 64;

/// How long a body may take before the rate check starts.
const RATE_GRACE: Duration = Duration::from_secs(1);

/// The limits a body is read within.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
    /// Slowest average rate after [`RATE_GRACE`], bytes per second; 0: no rate check.
    pub min_bytes_per_sec: u64,
}

/// The body, read within `limits`.
pub async fn read_body(headers: &HeaderMap, body: Body, limits: BodyLimits) -> Result<Bytes, IngressError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limits.max_bytes) {
        return Err(IngressError::PayloadTooLarge { limit: limits.max_bytes });
    }
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let mut body = body;
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0).min(limits.max_bytes));
    loop {
        // The next frame must come before the overall deadline, and before the bytes so far
        // fall below the minimum rate.
        let rate_deadline = (limits.min_bytes_per_sec > 0).then(|| {
            let allowed = Duration::from_secs_f64(buffer.len() as f64 / limits.min_bytes_per_sec as f64).max(RATE_GRACE);
            started + allowed
        });
        let until = rate_deadline.map_or(deadline, |rate| rate.min(deadline));
        let frame = match tokio::time::timeout_at(until, body.frame()).await {
            Ok(frame) => frame,
            Err(_) if rate_deadline.is_some_and(|rate| rate < deadline) => return Err(IngressError::BodyTooSlow),
            Err(_) => return Err(IngressError::BodyTimeout),
        };
        match frame {
            None => return Ok(buffer.freeze()),
            Some(Err(_)) => return Err(IngressError::BodyUnreadable),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if buffer.len() + data.len() > limits.max_bytes {
                        return Err(IngressError::PayloadTooLarge { limit: limits.max_bytes });
                    }
                    buffer.extend_from_slice(&data);
                }
            }
        }
    }
}

/// `Ok` when `body` is UTF-8 JSON nesting at most [`MAX_JSON_DEPTH`] levels.
pub fn check_json(body: &[u8]) -> Result<(), IngressError> {
    std::str::from_utf8(body).map_err(|_| IngressError::MalformedJson)?;
    if nesting_depth(body) > MAX_JSON_DEPTH {
        return Err(IngressError::MalformedJson);
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map(|_| ()).map_err(|_| IngressError::MalformedJson)
}

/// The deepest nesting of `[` / `{` outside strings (a malformed document may give any number:
/// the parse that follows judges it).
fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BodyLimits = BodyLimits { max_bytes: 1024, timeout: Duration::from_secs(10), min_bytes_per_sec: 0 };

    #[test]
    fn json_must_be_utf8_and_shallow() {
        assert!(check_json(br#"{"a": [1, {"b": "c"}]}"#).is_ok());
        assert!(check_json(b"{\"a\": \"\xff\xfe\"}").is_err(), "invalid UTF-8 inside a string");
        let deep = format!("{}{}", "[".repeat(MAX_JSON_DEPTH + 1), "]".repeat(MAX_JSON_DEPTH + 1));
        assert!(check_json(deep.as_bytes()).is_err());
        let ok = format!("{}{}", "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
        assert!(check_json(ok.as_bytes()).is_ok());
        assert!(check_json(br#"{"a": "[[[[ \" [[["}"#).is_ok(), "brackets in strings do not nest");
        assert!(check_json(b"{\"a\": ").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_times_out() {
        let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let result = read_body(&HeaderMap::new(), body, BodyLimits { timeout: Duration::from_secs(1), ..LIMITS }).await;
        assert!(matches!(result, Err(IngressError::BodyTimeout)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_below_the_minimum_rate_is_cut_after_the_grace() {
        let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let started = Instant::now();
        let result = read_body(&HeaderMap::new(), body, BodyLimits { min_bytes_per_sec: 100, ..LIMITS }).await;
        assert!(matches!(result, Err(IngressError::BodyTooSlow)), "{result:?}");
        assert_eq!(started.elapsed(), RATE_GRACE);
    }

    #[tokio::test]
    async fn an_oversized_stream_is_refused() {
        let chunks = futures::stream::iter((0..3).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 512]))));
        let result = read_body(&HeaderMap::new(), Body::from_stream(chunks), LIMITS).await;
        assert!(matches!(result, Err(IngressError::PayloadTooLarge { limit: 1024 })));
    }
}
