//! Circuit breaker around the Kafka producer.
//!
//! When the event log is failing, answering every vendor after a full produce timeout ties up
//! connections and makes retries pile up. After `failure_threshold` consecutive failures the
//! circuit opens and requests fail fast with 503 for `recovery`; then it half-opens and lets one
//! probe through: its success closes the circuit, its failure re-opens it.
//!
//! Requests alone make a poor probe: after an outage the circuit would wait for a request to
//! half-open it, and behind a load balancer that sends traffic only to ready instances none
//! comes. So the ingress also asks Kafka directly (`kafka_health.rs`): while the circuit is not
//! closed, a metadata probe every second closes it as soon as the raw topic can take writes.
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
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is (or may be) in flight; everyone else fails fast.
    HalfOpen {
        probe_in_flight: bool,
    },
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

/// Leave to call the producer once; report the outcome with [`Attempt::succeeded`] or
/// [`Attempt::failed`]. Dropped without a report (the request was abandoned mid-produce), a
/// half-open probe gives its slot back: otherwise the circuit would wait for a verdict that
/// never comes and stay half-open for ever.
#[must_use = "report the outcome, or the half-open probe slot is only freed on drop"]
#[derive(Debug)]
pub struct Attempt<'a> {
    breaker: &'a CircuitBreaker,
    /// Whether this is the half-open probe: only the probe's failure re-opens the circuit; a
    /// failure of a request admitted earlier, while closed, is stale news by then.
    probe: bool,
    reported: bool,
}

impl Attempt<'_> {
    /// Kafka answered: the circuit closes (or stays closed) and the failure count resets.
    pub fn succeeded(mut self) {
        self.reported = true;
        let mut inner = self.breaker.lock();
        *inner = Inner::Closed { consecutive_failures: 0 };
        publish(&inner);
    }

    /// Kafka failed or was too slow.
    pub fn failed(mut self) {
        self.reported = true;
        let breaker = self.breaker;
        let mut inner = breaker.lock();
        let open = Inner::Open { until: Instant::now() + breaker.recovery };
        match &mut *inner {
            Inner::Closed { consecutive_failures } => {
                *consecutive_failures += 1;
                if *consecutive_failures >= breaker.failure_threshold {
                    tracing::warn!(failures = *consecutive_failures, recovery_secs = breaker.recovery.as_secs(), "Kafka circuit opened.");
                    *inner = open;
                }
            }
            Inner::HalfOpen { .. } if self.probe => {
                tracing::warn!("Kafka circuit probe failed; circuit re-opened.");
                *inner = open;
            }
            // A request admitted before the circuit opened failed late: the circuit's state
            // already accounts for the outage.
            Inner::HalfOpen { .. } | Inner::Open { .. } => {}
        }
        publish(&inner);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.reported || !self.probe {
            return;
        }
        let mut inner = self.breaker.lock();
        if let Inner::HalfOpen { probe_in_flight } = &mut *inner {
            *probe_in_flight = false;
        }
    }
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, recovery: Duration) -> Self {
        CircuitBreaker {
            failure_threshold: failure_threshold.max(1),
            recovery,
            inner: Mutex::new(Inner::Closed { consecutive_failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a plain value that is always consistent: a panic elsewhere while the lock
        // was held cannot have left it half-written, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks to call the producer. Ok means go ahead and report the result; Err means fail fast.
    pub fn try_acquire(&self) -> Result<Attempt<'_>, CircuitOpen> {
        let mut inner = self.lock();
        let now = Instant::now();
        let result = match &mut *inner {
            Inner::Closed { .. } => Ok(false),
            Inner::Open { until } if now >= *until => {
                *inner = Inner::HalfOpen { probe_in_flight: true };
                Ok(true)
            }
            Inner::Open { until } => Err(CircuitOpen { retry_after: *until - now }),
            Inner::HalfOpen { probe_in_flight } if !*probe_in_flight => {
                *probe_in_flight = true;
                Ok(true)
            }
            Inner::HalfOpen { .. } => Err(CircuitOpen { retry_after: Duration::from_secs(1) }),
        };
        publish(&inner);
        result.map(|probe| Attempt { breaker: self, probe, reported: false })
    }

    pub fn state(&self) -> CircuitState {
        state_of(&self.lock())
    }

    /// Kafka itself said it takes writes again (the metadata probe): close the circuit, unless
    /// a request probe is in flight, whose verdict is fresher. Returns whether it closed.
    pub fn close_on_healthy_probe(&self) -> bool {
        let mut inner = self.lock();
        let closed = match &*inner {
            Inner::Closed { .. } | Inner::HalfOpen { probe_in_flight: true } => false,
            Inner::Open { .. } | Inner::HalfOpen { probe_in_flight: false } => {
                *inner = Inner::Closed { consecutive_failures: 0 };
                true
            }
        };
        publish(&inner);
        closed
    }
}

impl CircuitBreaker {
    /// Kafka's metadata says the raw topic can take writes, but this client holds no connection
    /// to a leader. librdkafka connects to a broker only when it has something to send there,
    /// and an open circuit sends nothing: waiting for the connection would wait for the full
    /// recovery period. So an open circuit half-opens now, and the next webhook is the probe
    /// (its write makes the connection). Returns whether it half-opened.
    pub fn half_open_for_a_request(&self) -> bool {
        let mut inner = self.lock();
        let opened = matches!(&*inner, Inner::Open { .. });
        if opened {
            *inner = Inner::HalfOpen { probe_in_flight: false };
        }
        publish(&inner);
        opened
    }
}

fn state_of(inner: &Inner) -> CircuitState {
    match inner {
        Inner::Closed { .. } => CircuitState::Closed,
        Inner::Open { until } if Instant::now() < *until => CircuitState::Open,
        Inner::Open { .. } | Inner::HalfOpen { .. } => CircuitState::HalfOpen,
    }
}

/// Sets the gauge. Also called at scrape time: an open circuit turns half-open by the clock
/// alone, with no call that would publish it.
pub(super) fn publish_state(state: CircuitState) {
    crate::metrics::CIRCUIT_STATE.set(state.gauge());
}

fn publish(inner: &Inner) {
    publish_state(state_of(inner));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(breaker: &CircuitBreaker) {
        breaker.try_acquire().expect("admitted").failed();
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_kafka_probe_closes_an_open_circuit_at_once_but_not_over_a_request_probe() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(60));
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert!(breaker.close_on_healthy_probe(), "no need to wait out the 60 s");
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert!(!breaker.close_on_healthy_probe(), "already closed");

        fail(&breaker);
        tokio::time::advance(Duration::from_secs(60)).await;
        let probe = breaker.try_acquire().expect("the request probe");
        assert!(!breaker.close_on_healthy_probe(), "the request in flight decides");
        probe.failed();
        assert_eq!(breaker.state(), CircuitState::Open);
        assert!(breaker.close_on_healthy_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn leaders_without_a_connection_half_open_the_circuit_for_one_request() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(60));
        fail(&breaker);
        assert!(breaker.half_open_for_a_request(), "no need to wait out the 60 s");
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        let probe = breaker.try_acquire().expect("one webhook goes through");
        assert!(breaker.try_acquire().is_err(), "only one");
        assert!(!breaker.half_open_for_a_request(), "a request probe is already deciding");
        probe.failed();
        assert_eq!(breaker.state(), CircuitState::Open, "its failure re-opens");
        assert!(breaker.half_open_for_a_request(), "and the next probe tick lets another through");
        breaker.try_acquire().unwrap().succeeded();
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert!(!breaker.half_open_for_a_request(), "a closed circuit stays closed");
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_then_half_opens_and_closes_on_success() {
        let breaker = CircuitBreaker::new(5, Duration::from_secs(60));
        for _ in 0..4 {
            fail(&breaker);
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "4 failures < threshold 5");
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);

        let refused = breaker.try_acquire().unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(60));

        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(breaker.try_acquire().is_err(), "still open after 59 s");

        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        let probe = breaker.try_acquire().expect("the probe goes through");
        assert!(breaker.try_acquire().is_err(), "only one probe at a time");
        probe.succeeded();
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.try_acquire().unwrap().succeeded();
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_for_a_full_recovery_period() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(60));
        fail(&breaker);
        tokio::time::advance(Duration::from_secs(60)).await;
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.try_acquire().unwrap_err().retry_after, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_failure_count() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            fail(&breaker);
        }
        breaker.try_acquire().unwrap().succeeded();
        for _ in 0..2 {
            fail(&breaker);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_the_slot() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(10));
        fail(&breaker);
        tokio::time::advance(Duration::from_secs(10)).await;
        drop(breaker.try_acquire().expect("probe"));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        breaker.try_acquire().expect("a new probe is let through").succeeded();
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_failure_does_not_reopen_a_half_open_circuit() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(10));
        let early = breaker.try_acquire().expect("admitted while closed");
        fail(&breaker);
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = breaker.try_acquire().expect("probe");
        early.failed();
        assert_eq!(breaker.state(), CircuitState::HalfOpen, "stale failure ignored");
        probe.succeeded();
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}
