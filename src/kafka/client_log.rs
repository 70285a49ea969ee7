//! librdkafka's errors and log lines, rate-limited.
//!
//! While a broker is down, librdkafka reports it once per reconnect attempt, per broker, per
//! client (an instance holds four or five clients), and again for every request that times out
//! when it comes back: hundreds of identical lines that bury the one that matters. Each kind of
//! line (the error code, or the log facility and level) goes through the first time, then at
//! most once per [`WINDOW`], saying how many like it were held back. The errors still count in
//! `kafka_client_errors_total`, held back or not.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// How often one kind of line may repeat.
pub const WINDOW: Duration = Duration::from_secs(30);

/// When each kind of line was last let through, and how many were held back since.
struct Throttle {
    seen: Mutex<BTreeMap<String, (Instant, u64)>>,
}

impl Throttle {
    const fn new() -> Throttle {
        Throttle { seen: Mutex::new(BTreeMap::new()) }
    }

    /// `Some(held back since the last one let through)` if this line should be written.
    fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match seen.get_mut(kind) {
            Some((last, held)) if now.duration_since(*last) < WINDOW => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                seen.insert(kind.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

static THROTTLE: Throttle = Throttle::new();

/// For `ClientContext::error`: every client error, at most one line per kind per [`WINDOW`].
pub fn error(error: &KafkaError, reason: &str) {
    let code = error.rdkafka_error_code().map_or_else(|| "other".to_owned(), |code| format!("{code:?}"));
    crate::metrics::KAFKA_CLIENT_ERRORS.with_label_values(&[&code]).inc();
    if let Some(held_back) = THROTTLE.admit(&format!("error:{code}"), Instant::now()) {
        tracing::warn!(target: "librdkafka", %error, reason, held_back, "Kafka client error (repeats of it are logged at most every 30 s).");
    }
}

/// For `ClientContext::log`: librdkafka's own lines at their level; warnings and errors at most
/// one per facility per [`WINDOW`].
pub fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    use RDKafkaLogLevel::*;
    let loud = matches!(level, Emerg | Alert | Critical | Error | Warning);
    if !loud {
        match level {
            Notice | Info => tracing::info!(target: "librdkafka", facility, "{message}"),
            _ => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
        return;
    }
    let Some(held_back) = THROTTLE.admit(&format!("log:{level:?}:{facility}"), Instant::now()) else { return };
    if matches!(level, Warning) {
        tracing::warn!(target: "librdkafka", facility, held_back, "{message}");
    } else {
        tracing::error!(target: "librdkafka", facility, held_back, "{message}");
    }
}

/// A client context that only rate-limits the logs, for clients with nothing else to report.
#[derive(Clone, Copy, Default)]
pub struct Throttled;

impl rdkafka::ClientContext for Throttled {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn error(&self, kafka_error: KafkaError, reason: &str) {
        error(&kafka_error, reason);
    }
}

impl rdkafka::producer::ProducerContext for Throttled {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

impl rdkafka::consumer::ConsumerContext for Throttled {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_line_is_let_through_once_per_window_with_the_count_held_back() {
        let throttle = Throttle::new();
        let start = Instant::now();
        assert_eq!(throttle.admit("error:BrokerTransportFailure", start), Some(0), "the first one is written");
        for second in 1..30 {
            assert_eq!(throttle.admit("error:BrokerTransportFailure", start + Duration::from_secs(second)), None);
        }
        assert_eq!(throttle.admit("error:AllBrokersDown", start + Duration::from_secs(5)), Some(0), "another kind is not held back");
        assert_eq!(throttle.admit("error:BrokerTransportFailure", start + WINDOW), Some(29), "then one, with the 29 held back");
        assert_eq!(throttle.admit("error:BrokerTransportFailure", start + WINDOW + Duration::from_secs(1)), None);
        assert_eq!(throttle.admit("error:BrokerTransportFailure", start + WINDOW * 3), Some(1));
    }
}
