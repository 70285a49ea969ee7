//! One vendor API: its base URL, HTTP client, rate limiter and concurrency bound, and one GET
//! classified by what the caller must do next.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::Semaphore;

use super::backoff::parse_retry_after;
use super::limiter::{Limit, RateLimiter};
use crate::event::Vendor;
use crate::secret::Secret;

/// What one GET came to.
#[derive(Debug)]
pub enum Reply {
    Ok(Vec<u8>),
    /// 404: no such record (deleted, or not this user's).
    NotFound,
    /// 401: the access token is not (or no longer) accepted.
    Unauthorized,
    /// 403: authenticated but refused (Oura: membership lapsed; scope missing).
    Forbidden,
    /// 429 from the vendor, with its `Retry-After`.
    RateLimited(Option<Duration>),
    /// Our own rate limiter would have waited this long: the pass gives up at once.
    Throttled(Duration),
    /// Worth retrying: 5xx, 408, timeouts, connection errors. A bounded class for headers/metrics.
    Transient(String),
    /// Any other status: retrying will not help.
    Rejected(u16),
}

pub struct VendorClient {
    pub vendor: Vendor,
    base: String,
    http: reqwest::Client,
    pub limiter: RateLimiter,
    permits: Semaphore,
}

impl VendorClient {
    pub fn new(vendor: Vendor, base: &str, limits: &[Limit], concurrency: usize, timeout: Duration) -> anyhow::Result<Self> {
        let http = crate::connections::http::client(timeout)?;
        Ok(VendorClient {
            vendor,
            base: base.trim_end_matches('/').to_owned(),
            http,
            limiter: RateLimiter::new(limits),
            permits: Semaphore::new(concurrency.max(1)),
        })
    }

    /// GETs `path` (relative to the base) with the bearer token, after a rate-limit slot (at
    /// most `max_rate_wait` away) and a concurrency permit.
    pub async fn get(&self, path: &str, token: &Secret, max_rate_wait: Duration) -> Reply {
        let vendor = self.vendor.slug();
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        if let Err(wait) = self.limiter.acquire(max_rate_wait).await {
            crate::metrics::FETCH_REQUESTS.with_label_values(&[vendor, "throttled"]).inc();
            return Reply::Throttled(wait);
        }
        crate::metrics::FETCH_IN_FLIGHT.with_label_values(&[vendor]).inc();
        let started = Instant::now();
        let result = self.http.get(format!("{}{path}", self.base)).bearer_auth(token.expose()).send().await;
        let reply = match result {
            Ok(response) => self.classify(response).await,
            // reqwest's error text names the URL, never the Authorization header.
            Err(error) if error.is_timeout() => Reply::Transient("timeout".to_owned()),
            Err(error) if error.is_connect() => Reply::Transient("connect".to_owned()),
            Err(error) => {
                tracing::debug!(vendor, %error, "Vendor API request failed.");
                Reply::Transient("network".to_owned())
            }
        };
        crate::metrics::FETCH_IN_FLIGHT.with_label_values(&[vendor]).dec();
        crate::metrics::FETCH_DURATION.with_label_values(&[vendor]).observe(started.elapsed().as_secs_f64());
        crate::metrics::FETCH_REQUESTS.with_label_values(&[vendor, reply.label()]).inc();
        reply
    }

    async fn classify(&self, response: reqwest::Response) -> Reply {
        let status = response.status();
        match status {
            StatusCode::OK => match response.bytes().await {
                Ok(body) => Reply::Ok(body.to_vec()),
                Err(_) => Reply::Transient("body".to_owned()),
            },
            StatusCode::NOT_FOUND => Reply::NotFound,
            StatusCode::UNAUTHORIZED => Reply::Unauthorized,
            StatusCode::FORBIDDEN => Reply::Forbidden,
            StatusCode::TOO_MANY_REQUESTS => Reply::RateLimited(rate_limit_wait(response.headers(), chrono::Utc::now().timestamp())),
            status if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT => {
                Reply::Transient(format!("http_{}", status.as_u16()))
            }
            status => Reply::Rejected(status.as_u16()),
        }
    }
}

/// How long a 429 asks to wait: `Retry-After`, and WHOOP's `X-RateLimit-Reset` (documented by
/// WHOOP as the seconds until the rate-limit window resets; a value that looks like a Unix time is
/// read as one). The longer of the two when both are sent.
pub fn rate_limit_wait(headers: &reqwest::header::HeaderMap, now_unix: i64) -> Option<Duration> {
    let value = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    let retry_after = value("retry-after").and_then(|value| parse_retry_after(value, now_unix));
    let reset = value("x-ratelimit-reset").and_then(|value| value.parse::<f64>().ok()).filter(|secs| secs.is_finite() && *secs >= 0.0).map(
        |secs| {
            let secs = if secs > 1e9 { (secs - now_unix as f64).max(0.0) } else { secs };
            Duration::from_secs_f64(secs.min(86_400.0))
        },
    );
    retry_after.max(reset)
}

impl Reply {
    /// Bounded metric label.
    fn label(&self) -> &'static str {
        match self {
            Reply::Ok(_) => "ok",
            Reply::NotFound => "not_found",
            Reply::Unauthorized => "unauthorized",
            Reply::Forbidden => "forbidden",
            Reply::RateLimited(_) => "rate_limited",
            Reply::Throttled(_) => "throttled",
            Reply::Transient(_) => "transient",
            Reply::Rejected(_) => "rejected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_waits_for_retry_after_or_the_rate_limit_reset() {
        let headers = |pairs: &[(&'static str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (reqwest::header::HeaderName::from_static(k), v.parse().unwrap()))
                .collect::<reqwest::header::HeaderMap>()
        };
        let now = 1_795_000_000;
        assert_eq!(rate_limit_wait(&headers(&[("retry-after", "7")]), now), Some(Duration::from_secs(7)));
        assert_eq!(rate_limit_wait(&headers(&[("x-ratelimit-reset", "42")]), now), Some(Duration::from_secs(42)), "WHOOP");
        assert_eq!(rate_limit_wait(&headers(&[("x-ratelimit-reset", "1795000030")]), now), Some(Duration::from_secs(30)), "a Unix time");
        assert_eq!(rate_limit_wait(&headers(&[("retry-after", "5"), ("x-ratelimit-reset", "60")]), now), Some(Duration::from_secs(60)));
        assert_eq!(rate_limit_wait(&headers(&[]), now), None);
    }
}
