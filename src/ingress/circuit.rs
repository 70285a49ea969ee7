//! Circuit breaker around the Kafka producer.
//!
//! When the event log is failing, answering every vendor after a full produce timeout ties up
//! connections and makes retries pile up. After `failure_threshold` consecutive failures the
//! circuit opens and requests fail fast with 503 for `recovery`; then it half-opens and lets one
//! probe through: its success closes the circuit, its failure re-opens it.
//!
//! Time comes from `tokio::time::Instant`, so tests drive the cycle with paused time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    /// The value of the `biometric_bridge_circuit_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    /// One probe is (or may be) in flight; everyone else fails fast.
    HalfOpen { probe_in_flight: bool },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    recovery: Duration,
    inner: Mutex<Inner>,
}

/// Refusal to call the producer; carries how long until a probe will be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitOpen {
    pub retry_after: Duration,
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, recovery: Duration) -> Self {
        CircuitBreaker { failure_threshold: failure_threshold.max(1), recovery, inner: Mutex::new(Inner::Closed { consecutive_failures: 0 }) }
    }

    /// Asks to call the producer. Ok means go ahead (and report the result); Err means fail fast.
    pub fn try_acquire(&self) -> Result<(), CircuitOpen> {
        let mut inner = self.inner.lock().expect("circuit lock");
        let now = Instant::now();
        let result = match &mut *inner {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until } if now >= *until => {
                *inner = Inner::HalfOpen { probe_in_flight: true };
                Ok(())
            }
            Inner::Open { until } => Err(CircuitOpen { retry_after: *until - now }),
            Inner::HalfOpen { probe_in_flight } if !*probe_in_flight => {
                *probe_in_flight = true;
                Ok(())
            }
            Inner::HalfOpen { .. } => Err(CircuitOpen { retry_after: Duration::from_secs(1) }),
        };
        publish(&inner);
        result
    }

    pub fn on_success(&self) {
        let mut inner = self.inner.lock().expect("circuit lock");
        *inner = Inner::Closed { consecutive_failures: 0 };
        publish(&inner);
    }

    pub fn on_failure(&self) {
        let mut inner = self.inner.lock().expect("circuit lock");
        let open = Inner::Open { until: Instant::now() + self.recovery };
        match &mut *inner {
            Inner::Closed { consecutive_failures } => {
                *consecutive_failures += 1;
                if *consecutive_failures >= self.failure_threshold {
                    tracing::warn!(failures = *consecutive_failures, recovery_secs = self.recovery.as_secs(), "Kafka circuit opened.");
                    *inner = open;
                }
            }
            Inner::HalfOpen { .. } => {
                tracing::warn!("Kafka circuit probe failed; circuit re-opened.");
                *inner = open;
            }
            // A request admitted before the circuit opened failed late: the circuit stays open.
            Inner::Open { .. } => {}
        }
        publish(&inner);
    }

    pub fn state(&self) -> CircuitState {
        let inner = self.inner.lock().expect("circuit lock");
        state_of(&inner)
    }
}

fn state_of(inner: &Inner) -> CircuitState {
    match inner {
        Inner::Closed { .. } => CircuitState::Closed,
        Inner::Open { until } if Instant::now() < *until => CircuitState::Open,
        Inner::Open { .. } | Inner::HalfOpen { .. } => CircuitState::HalfOpen,
    }
}

fn publish(inner: &Inner) {
    crate::metrics::CIRCUIT_STATE.set(state_of(inner).gauge());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_half_opens_and_closes_on_success() {
        let breaker = CircuitBreaker::new(5, Duration::from_secs(60));
        for _ in 0..4 {
            assert!(breaker.try_acquire().is_ok());
            breaker.on_failure();
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "4 failures < threshold 5");
        assert!(breaker.try_acquire().is_ok());
        breaker.on_failure();
        assert_eq!(breaker.state(), CircuitState::Open);

        let refused = breaker.try_acquire().unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(60));

        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(breaker.try_acquire().is_err(), "still open after 59 s");

        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert!(breaker.try_acquire().is_ok(), "the probe goes through");
        assert!(breaker.try_acquire().is_err(), "only one probe at a time");
        breaker.on_success();
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert!(breaker.try_acquire().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_for_a_full_recovery_period() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(60));
        breaker.try_acquire().unwrap();
        breaker.on_failure();
        tokio::time::advance(Duration::from_secs(60)).await;
        breaker.try_acquire().unwrap();
        breaker.on_failure();
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.try_acquire().unwrap_err().retry_after, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_failure_count() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            breaker.on_failure();
        }
        breaker.on_success();
        for _ in 0..2 {
            breaker.on_failure();
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}
