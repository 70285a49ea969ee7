//! A first contact with Kafka at start, to tell a misconfiguration from an absence.
//!
//! librdkafka retries a refused login or a failed TLS handshake forever, exactly like an
//! unreachable broker, so a wrong password would look like a hang (a processor waiting on
//! `init_transactions`, an ingress whose writes all time out). Before building their real
//! clients, the commands ask for cluster metadata with the same settings and watch the client's
//! error events: an authentication or TLS error ends the start with one line naming the
//! settings to check; an unreachable cluster is only absent, and waited for.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

use crate::config::KafkaArgs;

/// What the first contact found.
#[derive(Debug)]
pub enum Contact {
    /// Metadata came back: the settings work.
    Reachable { brokers: usize },
    /// No answer in the time given (down, or not yet up); `last_error` is librdkafka's word.
    Unreachable { last_error: String },
}

/// The cluster answered and refused us: credentials or TLS settings are wrong.
#[derive(Debug, thiserror::Error)]
#[error("the cluster refused the connection: {reason}. Check {settings}.")]
pub struct Refused {
    pub reason: String,
    pub settings: &'static str,
}

/// Records the first refusal among the client's error events.
#[derive(Default)]
struct WatchRefusals {
    refusal: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ClientContext for WatchRefusals {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::client_log::log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if let Some(code @ (RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)) = code {
            self.refusal.lock().expect("refusal lock").get_or_insert((code, reason.to_owned()));
        }
    }
}

impl ProducerContext for WatchRefusals {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// Asks for metadata until it comes back, a refusal is seen, or `patience` has passed.
/// Blocking (librdkafka's calls are): run it on a blocking thread.
pub fn contact(kafka: &KafkaArgs, patience: Duration) -> anyhow::Result<Contact> {
    // A producer, because its poll hands error events to the context with librdkafka's reason
    // (a consumer's poll returns only the code). It never produces.
    let client: BaseProducer<WatchRefusals> = kafka
        .config_with(&[("client.id", "biometric-bridge-preflight")])?
        .set("log_level", "3")
        .create_with_context(WatchRefusals::default())?;
    let deadline = Instant::now() + patience;
    loop {
        let answer = client.client().fetch_metadata(None, Duration::from_secs(2).min(patience));
        client.poll(Duration::from_millis(50));
        if let Some((code, reason)) = client.context().refusal.lock().expect("refusal lock").take() {
            let settings = match code {
                RDKafkaErrorCode::Authentication => "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or _FILE)",
                _ => "KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_CA_LOCATION and the bootstrap address (TLS listener, certificate names)",
            };
            return Err(Refused { reason, settings }.into());
        }
        match answer {
            Ok(metadata) => return Ok(Contact::Reachable { brokers: metadata.brokers().len() }),
            Err(error) if Instant::now() >= deadline => return Ok(Contact::Unreachable { last_error: error.to_string() }),
            Err(_) => {}
        }
    }
}

/// Waits, logging `dependency=kafka` with the address every few seconds, until the cluster
/// answers; a refusal ends the wait at once (see [`crate::startup::Misconfigured`]).
pub async fn wait_until_reachable(kafka: &KafkaArgs, shutdown: &crate::shutdown::CancellationToken) -> anyhow::Result<usize> {
    crate::startup::wait_for("kafka", &kafka.bootstrap_servers, shutdown, || {
        let kafka = kafka.clone();
        async move {
            let contact = tokio::task::spawn_blocking(move || contact(&kafka, Duration::from_secs(2))).await?;
            match contact {
                Ok(Contact::Reachable { brokers }) => Ok(brokers),
                Ok(Contact::Unreachable { last_error }) => Err(anyhow::anyhow!("no answer ({last_error})")),
                Err(error) => Err(crate::startup::Misconfigured(error.to_string()).into()),
            }
        }
    })
    .await
}
