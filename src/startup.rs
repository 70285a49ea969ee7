//! Waiting for a dependency at start: no dependency's absence stops a start.
//!
//! Start order is the operator's business, not ours: a processor started before Kafka, or an
//! ingress before PostgreSQL, waits and retries with exponential backoff (from 250 ms, doubling,
//! capped at 30 s) and says, every few seconds, what it waits for and where it is trying
//! (`dependency=<name>`, the address without credentials), instead of exiting into a restart loop.

use std::time::Duration;

use crate::shutdown::CancellationToken;

/// Where a starting command is, for its `/ready`: a phase name while it waits
/// (`waiting_for_kafka`, ...), [`Readiness::READY`] once it does its work. One owner sets it
/// (the command's run function); the HTTP handler only reads it.
#[derive(Debug, Clone)]
pub struct Readiness(std::sync::Arc<std::sync::Mutex<&'static str>>);

impl Readiness {
    pub const READY: &'static str = "ready";

    pub fn new(phase: &'static str) -> Readiness {
        Readiness(std::sync::Arc::new(std::sync::Mutex::new(phase)))
    }

    pub fn set(&self, phase: &'static str) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = phase;
    }

    pub fn phase(&self) -> &'static str {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// First delay between attempts.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// Longest delay between attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// The next delay of an exponential backoff capped at [`MAX_DELAY`].
pub fn next_delay(delay: Duration) -> Duration {
    (delay * 2).min(MAX_DELAY)
}

/// An error no retry can fix (the registry answers 404 at the configured path, a refused
/// credential): [`wait_for`] returns it at once, so a misconfigured start exits with one clear
/// line instead of waiting forever as if the dependency were down.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Misconfigured(pub String);

/// Retries `attempt` until it succeeds or shutdown; an attempt failing with [`Misconfigured`]
/// ends the wait with that error. `dependency` names what is waited for in
/// logs and metrics (`kafka`, `postgresql`, `schema_registry`, `redis`); `address` says where.
pub async fn wait_for<T, F, Fut>(dependency: &str, address: &str, shutdown: &CancellationToken, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut delay = FIRST_DELAY;
    let mut attempts = 0u32;
    loop {
        match attempt().await {
            Ok(value) => {
                if attempts > 0 {
                    tracing::info!(dependency, address, attempts, "Dependency available.");
                }
                return Ok(value);
            }
            Err(error) if error.downcast_ref::<Misconfigured>().is_some() => {
                return Err(error.context(format!("{dependency} at {address} is misconfigured")));
            }
            Err(error) => {
                attempts += 1;
                crate::metrics::INFRA_RETRIES.with_label_values(&[dependency]).inc();
                tracing::warn!(dependency, address, %error, retry_in_ms = delay.as_millis() as u64, "Waiting for a dependency at start.");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => anyhow::bail!("shut down while waiting for {dependency} at {address}"),
                }
                delay = next_delay(delay);
            }
        }
    }
}

/// `url` without credentials or path, for logs: `postgres://bridge:pw@db:5432/x` -> `db:5432`.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_logged_without_credentials() {
        assert_eq!(host_of("postgres://bridge:secret@db.internal:5432/biometric"), "db.internal:5432");
        assert_eq!(host_of("redis://127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(host_of("http://registry:8081/apis/ccompat/v7"), "registry:8081");
        assert_eq!(next_delay(Duration::from_secs(20)), MAX_DELAY);
    }
}
