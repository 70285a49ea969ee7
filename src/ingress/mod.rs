//! The ingress: a thin HTTP service that verifies vendor webhooks and writes their raw bytes to
//! the `raw-webhooks` topic, answering 2xx only once the broker has acknowledged the write.
//!
//! - `webhook.rs`: the POST pipeline (verify -> write -> answer);
//! - `auth.rs`: vendor secrets and signature dispatch; `tokens.rs`: Apple Health bearer tokens;
//! - `producer.rs` + `circuit.rs`: durable Kafka writes behind a circuit breaker;
//! - `dedup.rs`: the Redis re-delivery fast path;
//! - `error.rs`: every failure as a stable JSON error.

pub mod args;
pub mod auth;
pub mod circuit;
pub mod dedup;
pub mod error;
pub mod producer;
pub mod tokens;
mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use args::IngressArgs;
use auth::{Authenticator, VendorSecrets};
use circuit::CircuitState;
use error::IngressError;
use producer::{ProducerSettings, RawProducer};
use tokens::TokenCache;

use crate::shutdown::CancellationToken;

/// Everything a request handler needs, shared by all requests.
pub struct IngressState {
    pub auth: Authenticator,
    pub producer: RawProducer,
    pub dedup: Option<dedup::Dedup>,
    pub tokens: Option<TokenCache>,
    /// Permits for in-flight webhooks (`MAX_CONCURRENT_WEBHOOKS`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    pub max_body_bytes: usize,
}

impl IngressState {
    /// The user an Apple Health upload belongs to, from its bearer token.
    async fn bearer_user(&self, headers: &HeaderMap) -> Result<String, IngressError> {
        let tokens = self.tokens.as_ref().ok_or(IngressError::VendorDisabled("apple-health"))?;
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(tokens::bearer_token)
            .ok_or(IngressError::Unauthorized)?;
        match tokens.user_for(token).await {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(IngressError::Unauthorized),
            Err(error) => {
                tracing::warn!(%error, "Token lookup failed: PostgreSQL unavailable.");
                Err(IngressError::TokenStoreUnavailable { retry_after_secs: 5 })
            }
        }
    }
}

/// A built, bound ingress: `port()` for tests that bind port 0, `run_until_stopped()` to serve.
pub struct Ingress {
    listener: tokio::net::TcpListener,
    state: Arc<IngressState>,
    shutdown_timeout: Duration,
}

impl Ingress {
    /// Builds the ingress from its settings and the vendor secrets, and binds the listener.
    pub async fn build(args: &IngressArgs, secrets: VendorSecrets) -> anyhow::Result<Ingress> {
        let signed_vendor_configured = secrets.terra.is_some() || secrets.oura.is_some() || secrets.whoop.is_some();
        if !signed_vendor_configured && !args.insecure_skip_signatures {
            anyhow::bail!(
                "no vendor secret is configured (TERRA_SIGNING_SECRET, OURA_CLIENT_SECRET or WHOOP_CLIENT_SECRET, or their *_FILE); \
                 set at least one, or pass --insecure-skip-signatures for local development only"
            );
        }
        let pool = args.database.migrated_pool().await.map_err(|error| {
            anyhow::anyhow!("{error}; the ingress needs PostgreSQL for Apple Health tokens")
        })?;
        let auth = Authenticator::new(secrets, args.signature_tolerance_secs, args.insecure_skip_signatures, true);
        auth.log_startup();

        let producer = RawProducer::new(
            &args.kafka,
            ProducerSettings {
                topic: args.raw_topic.clone(),
                produce_timeout: Duration::from_millis(args.produce_timeout_ms),
                linger_ms: args.linger_ms,
                batch_size: args.batch_size,
                compression: args.compression.clone(),
                circuit_failure_threshold: args.circuit_failure_threshold,
                circuit_recovery: Duration::from_secs(args.circuit_recovery_secs),
            },
        )?;
        let dedup = if args.no_dedup { None } else { Some(dedup::Dedup::new(Some(&args.redis.redis_url), &args.raw_topic, args.dedup_ttl_secs)?) };
        let state = Arc::new(IngressState {
            auth,
            producer,
            dedup,
            tokens: Some(TokenCache::new(pool)),
            in_flight: Arc::new(tokio::sync::Semaphore::new(args.max_concurrent_webhooks.max(1))),
            max_body_bytes: args.max_body_bytes,
        });
        let listener = tokio::net::TcpListener::bind(args.http_addr).await?;
        // Touch the gauges so /metrics lists them before the first request.
        crate::metrics::CIRCUIT_STATE.set(CircuitState::Closed.gauge());
        crate::metrics::WEBHOOKS_IN_FLIGHT.set(0);
        Ok(Ingress { listener, state, shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Serves until `shutdown`, then stops accepting, lets in-flight requests finish (bounded by
    /// the shutdown timeout) and flushes the producer.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!(%addr, "Ingress listening.");
        let app = router(self.state.clone());
        let serve = axum::serve(self.listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let drained = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.shutdown_timeout).await;
        };
        tokio::select! {
            result = serve => result?,
            _ = drained => tracing::warn!("In-flight requests did not finish within the shutdown timeout."),
        }
        let state = self.state.clone();
        let timeout = self.shutdown_timeout;
        tokio::task::spawn_blocking(move || state.producer.flush(timeout)).await??;
        tracing::info!("Ingress stopped; producer flushed.");
        Ok(())
    }
}

/// The HTTP routes.
pub fn router(state: Arc<IngressState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(|| async { crate::metrics::render() }))
        .route("/webhooks/{vendor}", post(webhook::post_webhook).get(handshake))
        .fallback(|| async { IngressError::NotFound })
        .method_not_allowed_fallback(|| async { IngressError::MethodNotAllowed })
        .with_state(state)
}

async fn health() -> Response {
    axum::Json(serde_json::json!({ "status": "healthy", "service": "biometric-bridge" })).into_response()
}

/// 200 only while the producer has a broker connection and the circuit is closed.
async fn ready(State(state): State<Arc<IngressState>>) -> Response {
    let circuit = state.producer.circuit_state();
    let connected = state.producer.is_connected();
    let body = serde_json::json!({
        "status": if connected && circuit == CircuitState::Closed { "ready" } else { "not_ready" },
        "kafka_connected": connected,
        "circuit": circuit.name(),
    });
    if connected && circuit == CircuitState::Closed {
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        let reason = if !connected { "kafka_unavailable" } else { "circuit_not_closed" };
        let mut body = body;
        body["error"] = reason.into();
        body["detail"] = (if !connected { "no broker connection" } else { "the Kafka circuit breaker is not closed" }).into();
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}

/// `GET /webhooks/oura?verification_token=..&challenge=..`: Oura's subscription handshake.
/// Other vendors have no GET.
async fn handshake(
    State(state): State<Arc<IngressState>>,
    axum::extract::Path(vendor): axum::extract::Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, IngressError> {
    match vendor.as_str() {
        "oura" => {
            if !state.auth.enabled(crate::event::Vendor::Oura) {
                return Err(IngressError::VendorDisabled("oura"));
            }
            state.auth.verify_oura_handshake(query.get("verification_token").map(String::as_str))?;
            let challenge = query.get("challenge").cloned().unwrap_or_default();
            tracing::info!("Oura subscription handshake verified.");
            Ok(axum::Json(serde_json::json!({ "challenge": challenge })).into_response())
        }
        other if crate::event::Vendor::from_slug(other).is_some() => Err(IngressError::MethodNotAllowed),
        _ => Err(IngressError::NotFound),
    }
}

/// `biometric-bridge ingress`.
pub async fn run(args: IngressArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let secrets = VendorSecrets::load()?;
    let ingress = Ingress::build(&args, secrets).await?;
    ingress.run_until_stopped(shutdown).await
}
