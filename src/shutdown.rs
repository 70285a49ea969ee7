//! One shutdown signal for the whole process.
//!
//! `main` creates a [`CancellationToken`], spawns [`cancel_on_signal`], and hands clones to every
//! long-running task (`ingress::run`, the processor loop, the sinks). Each task stops taking new
//! work when it is cancelled and finishes what it holds: the ingress drains in-flight requests and
//! flushes its producer, the processor commits or aborts its open transaction.

pub use tokio_util::sync::CancellationToken;

/// Waits for SIGINT (ctrl-c) or SIGTERM, then cancels `token`.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "Could not listen for ctrl-c.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "Could not listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        _ = ctrl_c => tracing::info!("Received ctrl-c; shutting down."),
        _ = terminate => tracing::info!("Received SIGTERM; shutting down."),
        _ = token.cancelled() => {}
    }
    token.cancel();
}
