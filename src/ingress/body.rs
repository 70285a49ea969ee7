//! Reading a webhook body within its limits, and the JSON checks the README promises.
//!
//! A body is read only after the request's signature headers (or bearer token) passed, within:
//! - a size limit (413, refused on the declared length before any byte is read);
//! - an overall deadline (`BODY_READ_TIMEOUT_MS`, 408 `body_timeout`);
//! - a minimum average rate after a one-second grace (408 `body_too_slow`): a body trickling in
//!   at a few bytes a second holds an in-flight slot, and without this 100 such bodies would
//!   hold every slot for the whole deadline at no cost to their sender.
//!
//! Memory: the body is read once, into one buffer sized from the declared length, and reserves
//! its size in KiB from the ingress-wide budget (`MAX_BUFFERED_BODY_BYTES`) as it arrives; the
//! reservation is held until the write is acknowledged. When the budget is spent, 503
//! `overloaded`: the vendor retries, and memory never grows past the budget however many large
//! Terra bodies arrive at once.
//!
//! [`check_json`] is what "malformed JSON is refused with 400" means here: the body is UTF-8
//! (RFC 8259 §8.1: JSON exchanged between systems must be), nests at most [`MAX_JSON_DEPTH`]
//! levels, and parses. serde_json's own recursion limit does not apply when a value is skipped,
//! so the depth is counted first, in one pass over the bytes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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

/// A body's reservation of the memory budget, released when dropped.
pub struct Reservation {
    budget: Arc<Semaphore>,
    permits: Option<OwnedSemaphorePermit>,
    kib: u32,
}

impl Reservation {
    pub fn new(budget: Arc<Semaphore>) -> Reservation {
        Reservation { budget, permits: None, kib: 0 }
    }

    /// Grows the reservation to cover `bytes`; `Overloaded` when the budget cannot.
    fn cover(&mut self, bytes: usize) -> Result<(), IngressError> {
        let needed = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        if needed <= self.kib {
            return Ok(());
        }
        // Reserve ahead (at least 64 KiB more) so a trickle of small frames is not one call each.
        let more = (needed - self.kib).max(64);
        let permit = self.budget.clone().try_acquire_many_owned(more).map_err(|_| IngressError::Overloaded { retry_after_secs: 1 })?;
        match &mut self.permits {
            Some(held) => held.merge(permit),
            None => self.permits = Some(permit),
        }
        self.kib += more;
        Ok(())
    }
}

/// The body, read within `limits`, its memory reserved in `reservation`.
pub async fn read_body(headers: &HeaderMap, body: Body, limits: BodyLimits, reservation: &mut Reservation) -> Result<Bytes, IngressError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limits.max_bytes) {
        return Err(IngressError::PayloadTooLarge { limit: limits.max_bytes });
    }
    if let Some(length) = declared {
        reservation.cover(length)?;
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
                    reservation.cover(buffer.len() + data.len())?;
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

    fn reservation() -> Reservation {
        Reservation::new(Arc::new(Semaphore::new(1 << 20)))
    }

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
        let result = read_body(&HeaderMap::new(), body, BodyLimits { timeout: Duration::from_secs(1), ..LIMITS }, &mut reservation()).await;
        assert!(matches!(result, Err(IngressError::BodyTimeout)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_below_the_minimum_rate_is_cut_after_the_grace() {
        let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let started = Instant::now();
        let result = read_body(&HeaderMap::new(), body, BodyLimits { min_bytes_per_sec: 100, ..LIMITS }, &mut reservation()).await;
        assert!(matches!(result, Err(IngressError::BodyTooSlow)), "{result:?}");
        assert_eq!(started.elapsed(), RATE_GRACE);
    }

    #[tokio::test]
    async fn an_oversized_stream_is_refused() {
        let chunks = futures::stream::iter((0..3).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 512]))));
        let result = read_body(&HeaderMap::new(), Body::from_stream(chunks), LIMITS, &mut reservation()).await;
        assert!(matches!(result, Err(IngressError::PayloadTooLarge { limit: 1024 })));
    }

    #[tokio::test]
    async fn bodies_share_one_memory_budget() {
        let budget = Arc::new(Semaphore::new(256));
        let limits = BodyLimits { max_bytes: 1 << 20, ..LIMITS };
        let (mut first, mut second) = (Reservation::new(budget.clone()), Reservation::new(budget.clone()));
        let body = |kib: usize| Body::from(vec![b' '; kib * 1024]);
        assert!(read_body(&HeaderMap::new(), body(200), limits, &mut first).await.is_ok());
        let refused = read_body(&HeaderMap::new(), body(200), limits, &mut second).await;
        assert!(matches!(refused, Err(IngressError::Overloaded { .. })), "the budget is spent while the first body is held");
        drop(first);
        let mut third = Reservation::new(budget);
        assert!(read_body(&HeaderMap::new(), body(200), limits, &mut third).await.is_ok(), "released with the first");
    }
}
