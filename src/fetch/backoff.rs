//! How long to wait before trying again: inside one fetch pass (short, jittered exponential
//! backoff), and between passes through the retry topic (long, from the topology).

use std::time::Duration;

/// Exponential backoff with "full jitter" (a random delay in [0, base * 2^attempt], capped):
/// spreads the retries of many fetches that failed together, so they don't hit the vendor again
/// in lock step. `attempt` counts from 0; `unit` in [0, 1) is the random draw.
pub fn jittered(base: Duration, cap: Duration, attempt: u32, unit: f64) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// A random number in [0, 1) from the OS RNG (via uuid's v4, already a dependency). The low 62
/// bits of a v4 UUID are random (the variant bits sit just above them).
pub fn unit_random() -> f64 {
    let bits = (uuid::Uuid::new_v4().as_u128() as u64 & ((1 << 62) - 1)) >> 9;
    bits as f64 / (1u64 << 53) as f64
}

/// The delay before retry pass `attempt` (1 = first retry): `first * 2^(attempt-1)`, capped,
/// never shorter than what the vendor asked for with `Retry-After`.
pub fn retry_topic_delay(first: Duration, cap: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponential = first.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(cap);
    exponential.max(retry_after.unwrap_or_default())
}

/// A `Retry-After` header value: delta-seconds, or an HTTP date (then relative to `now_unix`).
pub fn parse_retry_after(value: &str, now_unix: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(Duration::from_secs(u64::try_from(date.timestamp() - now_unix).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn jitter_stays_under_the_growing_capped_ceiling() {
        let (base, cap) = (200 * MS, 2_000 * MS);
        assert_eq!(jittered(base, cap, 0, 0.999_999).as_millis(), 199);
        assert_eq!(jittered(base, cap, 2, 0.5), 400 * MS);
        assert_eq!(jittered(base, cap, 10, 0.5), 1_000 * MS, "capped at 2 s before the draw");
        assert_eq!(jittered(base, cap, 40, 1.0), cap, "huge attempts don't overflow");
        assert_eq!(jittered(base, cap, 3, 0.0), Duration::ZERO);
    }

    #[test]
    fn random_units_are_in_range_and_vary() {
        let draws: Vec<f64> = (0..1000).map(|_| unit_random()).collect();
        assert!(draws.iter().all(|unit| (0.0..1.0).contains(unit)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }

    #[test]
    fn retry_topic_delays_double_up_to_the_cap_and_honour_retry_after() {
        let (first, cap) = (Duration::from_secs(30), Duration::from_secs(3600));
        let delays: Vec<u64> = (1..=9).map(|attempt| retry_topic_delay(first, cap, attempt, None).as_secs()).collect();
        assert_eq!(delays, vec![30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_topic_delay(first, cap, 1, Some(Duration::from_secs(90))).as_secs(), 90);
        assert_eq!(retry_topic_delay(first, cap, 3, Some(Duration::from_secs(90))).as_secs(), 120);
    }

    #[test]
    fn retry_after_as_seconds_or_http_date() {
        assert_eq!(parse_retry_after(" 17 ", 0), Some(Duration::from_secs(17)));
        let now = chrono::DateTime::parse_from_rfc2822("Thu, 26 Nov 2026 10:00:00 GMT").unwrap().timestamp();
        assert_eq!(parse_retry_after("Thu, 26 Nov 2026 10:01:30 GMT", now), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after("Thu, 26 Nov 2026 09:00:00 GMT", now), Some(Duration::ZERO), "a past date: now");
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
