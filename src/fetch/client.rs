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
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, chrono::Utc::now().timestamp()));
                Reply::RateLimited(retry_after)
            }
            status if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT => {
                Reply::Transient(format!("http_{}", status.as_u16()))
            }
            status => Reply::Rejected(status.as_u16()),
        }
    }
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
