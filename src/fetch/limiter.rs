//! Per-vendor request rate limits as token buckets.
//!
//! Each documented limit (Oura: 5000 requests / 5 min; WHOOP: 100 / min and 10 000 / day,
//! vendors.md §2.1, §3.1) is a bucket of that many tokens refilled evenly over its period. A
//! request takes one token from every bucket of its vendor, waiting for the slowest. A 429 from
//! the vendor empties the buckets until its `Retry-After`: the vendor knows better than our count
//! (other instances, other apps on the same account).
//!
//! The limits are per process: with N processor instances, configure 1/N of the vendor's limit.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One limit: `requests` per `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub requests: u32,
    pub period: Duration,
}

impl FromStr for Limit {
    type Err = String;

    /// `<requests>/<seconds>`, e.g. `5000/300`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (requests, seconds) = text.trim().split_once('/').ok_or_else(|| format!("{text:?}: expected <requests>/<seconds>"))?;
        let requests: u32 = requests.trim().parse().map_err(|_| format!("{text:?}: requests must be a whole number"))?;
        let seconds: f64 = seconds.trim().parse().map_err(|_| format!("{text:?}: seconds must be a number"))?;
        if requests == 0 || !(seconds.is_finite() && seconds > 0.0) {
            return Err(format!("{text:?}: both parts must be positive"));
        }
        Ok(Limit { requests, period: Duration::from_secs_f64(seconds) })
    }
}

/// Parses a comma-separated list of limits (`100/60,10000/86400`); empty means unlimited.
pub fn parse_limits(text: &str) -> Result<Vec<Limit>, String> {
    text.split(',').filter(|part| !part.trim().is_empty()).map(str::parse).collect()
}

#[derive(Debug)]
struct Bucket {
    limit: Limit,
    /// May go negative: a reservation made by a waiting request.
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let rate = f64::from(self.limit.requests) / self.limit.period.as_secs_f64();
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.limit.requests));
        self.updated = now;
    }

    /// How long until one token is available.
    fn wait(&self) -> Duration {
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        let rate = f64::from(self.limit.requests) / self.limit.period.as_secs_f64();
        Duration::from_secs_f64((1.0 - self.tokens) / rate)
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<(Vec<Bucket>, Option<Instant>)>,
}

impl RateLimiter {
    pub fn new(limits: &[Limit]) -> Self {
        let now = Instant::now();
        let buckets = limits.iter().map(|limit| Bucket { limit: *limit, tokens: f64::from(limit.requests), updated: now }).collect();
        RateLimiter { buckets: Mutex::new((buckets, None)) }
    }

    /// Reserves a request slot and returns how long to wait before using it, or `Err(wait)`
    /// without reserving when the wait would exceed `max_wait` (the caller gives the work back
    /// for later instead of holding it).
    pub fn reserve(&self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        let mut guard = self.buckets.lock().expect("limiter lock");
        let (buckets, blocked_until) = &mut *guard;
        let mut wait = blocked_until.map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        for bucket in buckets.iter_mut() {
            bucket.refill(now);
            wait = wait.max(bucket.wait());
        }
        if wait > max_wait {
            return Err(wait);
        }
        for bucket in buckets.iter_mut() {
            bucket.tokens -= 1.0;
        }
        Ok(wait)
    }

    /// The vendor said 429: no request before `now + retry_after`.
    pub fn back_off(&self, now: Instant, retry_after: Duration) {
        let mut guard = self.buckets.lock().expect("limiter lock");
        let until = now + retry_after;
        guard.1 = Some(guard.1.map_or(until, |current| current.max(until)));
    }

    /// Waits for a slot (async), or gives up as [`RateLimiter::reserve`] does.
    pub async fn acquire(&self, max_wait: Duration) -> Result<(), Duration> {
        let wait = self.reserve(Instant::now(), max_wait)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn limits_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_limits("100/60, 10000/86400").unwrap(),
            vec![Limit { requests: 100, period: Duration::from_secs(60) }, Limit { requests: 10_000, period: Duration::from_secs(86_400) }]
        );
        assert_eq!(parse_limits("").unwrap(), vec![]);
        for bad in ["100", "0/60", "10/0", "x/60", "10/-1"] {
            assert!(parse_limits(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_full_bucket_serves_its_burst_then_paces_requests() {
        let limiter = RateLimiter::new(&[Limit { requests: 100, period: Duration::from_secs(60) }]);
        let start = Instant::now();
        for _ in 0..100 {
            assert_eq!(limiter.reserve(start, Duration::ZERO), Ok(Duration::ZERO));
        }
        // The 101st waits one refill interval (60 s / 100 = 0.6 s); the next one more.
        let first = limiter.reserve(start, 10 * SECOND).unwrap();
        assert!((first.as_secs_f64() - 0.6).abs() < 1e-6, "{first:?}");
        let second = limiter.reserve(start, 10 * SECOND).unwrap();
        assert!((second.as_secs_f64() - 1.2).abs() < 1e-6, "{second:?}");
        // Too long a wait is refused without a reservation.
        assert!(limiter.reserve(start, Duration::from_millis(100)).is_err());
        // After a minute the bucket has refilled (minus the two reservations).
        let later = start + Duration::from_secs(60);
        assert_eq!(limiter.reserve(later, Duration::ZERO), Ok(Duration::ZERO));
    }

    #[test]
    fn the_slowest_of_several_limits_decides() {
        let limiter = RateLimiter::new(&[
            Limit { requests: 100, period: Duration::from_secs(60) },
            Limit { requests: 2, period: Duration::from_secs(86_400) },
        ]);
        let now = Instant::now();
        assert!(limiter.reserve(now, Duration::ZERO).is_ok());
        assert!(limiter.reserve(now, Duration::ZERO).is_ok());
        let wait = limiter.reserve(now, Duration::from_secs(86_400)).unwrap();
        assert!(wait >= Duration::from_secs(43_199), "the day limit: {wait:?}");
    }

    #[test]
    fn a_429_blocks_every_request_until_retry_after() {
        let limiter = RateLimiter::new(&[Limit { requests: 5000, period: Duration::from_secs(300) }]);
        let now = Instant::now();
        limiter.back_off(now, 30 * SECOND);
        assert_eq!(limiter.reserve(now, SECOND), Err(30 * SECOND));
        assert_eq!(limiter.reserve(now + 30 * SECOND, Duration::ZERO), Ok(Duration::ZERO));
        // A shorter later back-off never shortens a longer one.
        limiter.back_off(now, 60 * SECOND);
        limiter.back_off(now, 10 * SECOND);
        assert_eq!(limiter.reserve(now, Duration::ZERO), Err(60 * SECOND));
    }

    #[test]
    fn no_limits_means_no_wait() {
        let limiter = RateLimiter::new(&[]);
        for _ in 0..10_000 {
            assert_eq!(limiter.reserve(Instant::now(), Duration::ZERO), Ok(Duration::ZERO));
        }
    }
}
