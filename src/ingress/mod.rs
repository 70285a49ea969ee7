//! The ingress: a thin HTTP service that verifies vendor webhooks and writes their raw bytes to
//! the `raw-webhooks` topic, answering 2xx only once the broker has acknowledged the write.
//!
//! - `server.rs`: the accept loop, with a connection cap and header / idle timeouts;
//! - `webhook.rs`: the POST pipeline (verify -> write -> answer); `body.rs`: reading a body
//!   within its limits, and the JSON checks; `record.rs`: the Kafka key and headers of an
//!   accepted webhook;
//! - `auth.rs`: vendor secrets and signature dispatch; `tokens.rs`: Apple Health bearer tokens;
//! - `producer.rs` + `circuit.rs`: durable Kafka writes behind a circuit breaker;
//! - `dedup.rs`: the Redis re-delivery fast path;
//! - `error.rs`: every failure as a stable JSON error.

pub mod args;
pub mod auth;
pub(crate) mod body;
pub mod circuit;
pub mod dedup;
pub mod error;
pub mod kafka_health;
pub mod producer;
mod record;
mod server;
mod shares;
pub mod tokens;
mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use args::IngressArgs;
use auth::{Authenticator, VendorSecrets};
use circuit::CircuitState;
use error::IngressError;
use producer::{ProducerSettings, RawProducer};
use tokens::TokenCache;

use crate::connections::callback::{OAuthCallback, OAuthSecrets};
use crate::shutdown::CancellationToken;

/// Everything a request handler needs, shared by all requests.
pub struct IngressState {
    pub auth: Authenticator,
    pub producer: RawProducer,
    pub dedup: Option<dedup::Dedup>,
    pub tokens: Option<TokenCache>,
    /// Permits for in-flight webhooks (`MAX_CONCURRENT_WEBHOOKS`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// What one client address may hold of them (`MAX_IN_FLIGHT_PER_CLIENT`).
    pub client_shares: shares::ClientShares,
    /// Size, time and rate limits of a body (`MAX_BODY_BYTES`, `BODY_READ_TIMEOUT_MS`,
    /// `MIN_BODY_BYTES_PER_SEC`); Terra's size limit is its own (`TERRA_MAX_BODY_BYTES`).
    pub body_limits: body::BodyLimits,
    pub terra_max_body_bytes: usize,
    /// KiB of body memory all requests together may hold (`MAX_BUFFERED_BODY_BYTES`).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// `GET /oauth/{vendor}/callback`: users connecting Oura / WHOOP (off per vendor when unconfigured).
    pub oauth: OAuthCallback,
    /// Seals each body under its user's data key (`DATA_ENCRYPTION_KEY`); `None` only with
    /// `--insecure-plaintext-at-rest`.
    pub at_rest: Option<Arc<crate::at_rest::DataKeys>>,
}

impl IngressState {
    /// The body limits of `vendor`'s webhooks.
    fn body_limits(&self, vendor: crate::event::Vendor) -> body::BodyLimits {
        match vendor {
            crate::event::Vendor::Terra => body::BodyLimits { max_bytes: self.terra_max_body_bytes, ..self.body_limits },
            _ => self.body_limits,
        }
    }

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
    /// `INGRESS_METRICS_ADDR`'s listener; `None`: `/metrics` is on the webhook port.
    metrics_listener: Option<tokio::net::TcpListener>,
    state: Arc<IngressState>,
    shutdown_timeout: Duration,
    limits: server::ServerLimits,
    /// For the Kafka probe (`kafka_health.rs`).
    kafka: crate::config::KafkaArgs,
    raw_topic: String,
}

impl Ingress {
    /// Builds the ingress from its settings and the vendor secrets, and binds the listener. The
    /// OAuth callback's secrets (`TOKEN_ENCRYPTION_KEY`, `OAUTH_STATE_SECRET`) come from the environment.
    pub async fn build(args: &IngressArgs, secrets: VendorSecrets) -> anyhow::Result<Ingress> {
        Self::build_with_oauth(args, secrets, OAuthSecrets::load()?).await
    }

    /// [`Ingress::build`] with the OAuth callback's secrets given rather than read (tests).
    pub async fn build_with_oauth(args: &IngressArgs, secrets: VendorSecrets, oauth_secrets: OAuthSecrets) -> anyhow::Result<Ingress> {
        Self::build_with(args, secrets, oauth_secrets, crate::at_rest::Kek::from_env()?).await
    }

    /// [`Ingress::build`] with every secret given rather than read (tests); `kek` is
    /// `DATA_ENCRYPTION_KEY`'s.
    pub async fn build_with(
        args: &IngressArgs,
        secrets: VendorSecrets,
        oauth_secrets: OAuthSecrets,
        kek: Option<crate::at_rest::Kek>,
    ) -> anyhow::Result<Ingress> {
        if kek.is_none() && !args.insecure_plaintext_at_rest {
            anyhow::bail!(
                "DATA_ENCRYPTION_KEY (or DATA_ENCRYPTION_KEY_FILE) is not set: without it webhook bodies would be written to Kafka \
                 unsealed, and an erase could not shred them. Set it (`openssl rand -hex 32`), or pass \
                 --insecure-plaintext-at-rest for local development only"
            );
        }
        let signed_vendor_configured = secrets.terra.is_some() || secrets.oura.is_some() || secrets.whoop.is_some();
        if !signed_vendor_configured && !args.insecure_skip_signatures {
            anyhow::bail!(
                "no vendor secret is configured (TERRA_SIGNING_SECRET, OURA_CLIENT_SECRET or WHOOP_CLIENT_SECRET, or their *_FILE); \
                 set at least one, or pass --insecure-skip-signatures for local development only"
            );
        }
        let pool = database_pool(&args.database).await?;
        let at_rest = match kek {
            Some(kek) => {
                let keys = crate::at_rest::DataKeys::new(pool.clone(), kek, Duration::from_secs(args.data_key_cache_ttl_secs));
                crate::at_rest::keys::refuse_a_wrong_kek(&keys).await?;
                Some(Arc::new(keys))
            }
            None => {
                tracing::warn!("INSECURE: webhook bodies are written to Kafka unsealed (--insecure-plaintext-at-rest); development only.");
                None
            }
        };
        let oauth = OAuthCallback::build(&args.oauth, args.oauth_redirect_base.as_deref(), pool.clone(), oauth_secrets, &secrets)?;
        oauth.log_startup();
        let tolerances = auth::Tolerances {
            terra: args.terra_signature_tolerance_secs,
            oura: args.oura_signature_tolerance_secs,
            whoop: args.whoop_signature_tolerance_secs,
        };
        let auth = Authenticator::new(secrets, tolerances, args.insecure_skip_signatures, true);
        auth.log_startup();

        let sealing_overhead = if at_rest.is_some() { crate::at_rest::envelope::MAX_OVERHEAD } else { 0 };
        let raw_topic = match &args.raw_topic {
            Some(topic) => topic.clone(),
            None => args.topology.load()?.ingress_topic().to_owned(),
        };
        let producer = RawProducer::new(
            &args.kafka,
            ProducerSettings {
                topic: raw_topic.clone(),
                produce_timeout: Duration::from_millis(args.produce_timeout_ms),
                linger_ms: args.linger_ms,
                batch_size: args.batch_size,
                compression: args.compression.clone(),
                max_body_bytes: args.max_body_bytes.max(args.terra_max_body_bytes) + sealing_overhead,
                circuit_failure_threshold: args.circuit_failure_threshold,
                circuit_recovery: Duration::from_secs(args.circuit_recovery_secs),
            },
        )?;
        let dedup = if args.no_dedup {
            tracing::warn!("Redis de-duplication is off (--no-dedup): every re-delivery is written again.");
            None
        } else {
            let dedup = dedup::Dedup::new(&args.redis.redis_url, &raw_topic, args.dedup_ttl_secs)?;
            dedup.connect(Duration::from_secs(2)).await;
            Some(dedup)
        };
        let state = Arc::new(IngressState {
            auth,
            producer,
            dedup,
            tokens: Some(TokenCache::new(pool, Duration::from_secs(args.token_cache_ttl_secs))),
            in_flight: Arc::new(tokio::sync::Semaphore::new(args.max_concurrent_webhooks.max(1))),
            client_shares: shares::ClientShares::new(args.max_in_flight_per_client.unwrap_or((args.max_concurrent_webhooks / 2).max(1))),
            body_limits: body::BodyLimits {
                max_bytes: args.max_body_bytes,
                timeout: Duration::from_millis(args.body_read_timeout_ms),
                min_bytes_per_sec: args.min_body_bytes_per_sec,
            },
            terra_max_body_bytes: args.terra_max_body_bytes,
            body_budget: Arc::new(tokio::sync::Semaphore::new((args.max_buffered_body_bytes / 1024).clamp(1, u32::MAX as usize >> 3))),
            oauth,
            at_rest,
        });
        check_raw_topic(&args.kafka, &raw_topic, args.max_body_bytes + sealing_overhead, args.terra_max_body_bytes + sealing_overhead)
            .await?;
        let listener = tokio::net::TcpListener::bind(args.http_addr)
            .await
            .map_err(|error| anyhow::anyhow!("cannot listen on {} (BRIDGE_HTTP_ADDR): {error}", args.http_addr))?;
        let metrics_listener = match args.metrics_addr {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|error| anyhow::anyhow!("cannot listen on {addr} (INGRESS_METRICS_ADDR): {error}"))?,
            ),
            None => {
                tracing::warn!(
                    "Serving /metrics on the public webhook port; set INGRESS_METRICS_ADDR to serve it on an address only the scraper reaches."
                );
                None
            }
        };
        register_metrics(&state);
        let limits = server::ServerLimits {
            max_connections: args.max_connections,
            header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
            max_header_bytes: args.max_header_bytes,
        };
        Ok(Ingress {
            listener,
            metrics_listener,
            state,
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
            limits,
            kafka: args.kafka.clone(),
            raw_topic,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Where `/metrics` is served: the metrics listener's address, or the webhook port's.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener.as_ref().map_or_else(|| self.local_addr(), |l| l.local_addr().expect("bound listener has an address"))
    }

    /// Serves until `shutdown`, then stops accepting, lets in-flight requests finish (bounded by
    /// the shutdown timeout) and flushes the producer.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!(%addr, "Ingress listening.");
        let app = router(self.state.clone(), self.metrics_listener.is_none());
        if let Some(keys) = &self.state.at_rest {
            tokio::spawn(keys.clone().follow_erasures(shutdown.clone()));
        }
        let probe = tokio::spawn(kafka_health::watch(self.state.clone(), self.kafka.clone(), self.raw_topic.clone(), shutdown.clone()));
        // The scraper's port: plain axum, as the processor's; it is not reachable from outside.
        let scrape = self.metrics_listener.map(|listener| {
            tracing::info!(addr = %listener.local_addr().expect("bound"), "Serving metrics.");
            let app = metrics_router(self.state.clone());
            tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).into_future())
        });
        let served = server::serve(self.listener, app, self.limits, shutdown, self.shutdown_timeout).await;
        probe.abort();
        if let Some(scrape) = scrape {
            scrape.abort();
        }
        if !served {
            tracing::warn!("In-flight requests did not finish within the shutdown timeout.");
        }
        let state = self.state.clone();
        let timeout = self.shutdown_timeout;
        tokio::task::spawn_blocking(move || state.producer.flush(timeout)).await??;
        tracing::info!("Ingress stopped; producer flushed.");
        Ok(())
    }
}

/// The pool for Apple Health tokens and OAuth callbacks. PostgreSQL's absence does not stop the
/// start: the ingress then runs as it does during an outage mid-run (Apple Health uploads and
/// OAuth callbacks get 503, Terra, Oura and WHOOP are unaffected), and the migrations run as
/// soon as PostgreSQL answers.
async fn database_pool(database: &crate::config::DatabaseArgs) -> anyhow::Result<sqlx::PgPool> {
    match database.migrated_pool().await {
        Ok(pool) => Ok(pool),
        Err(error) if error.downcast_ref::<crate::config::DatabaseUnavailable>().is_some() => {
            tracing::warn!(
                dependency = "postgresql",
                address = %crate::startup::host_of(&database.database_url),
                %error,
                "PostgreSQL does not answer; starting without it: Apple Health uploads and OAuth callbacks get 503 until it does."
            );
            let pool = database.pool()?;
            let (database, migrating) = (database.clone(), pool.clone());
            tokio::spawn(async move {
                let never = CancellationToken::new();
                let address = crate::startup::host_of(&database.database_url);
                // Only an absence is waited out; a failed migration is reported once.
                let attempt = || async {
                    database.migrate(&migrating).await.map_err(|error| match error.downcast_ref::<crate::config::DatabaseUnavailable>() {
                        Some(_) => error,
                        None => crate::startup::Misconfigured(format!("{error:#}")).into(),
                    })
                };
                if let Err(error) = crate::startup::wait_for("postgresql", &address, &never, attempt).await {
                    tracing::error!(%error, "PostgreSQL migrations failed.");
                }
            });
            Ok(pool)
        }
        Err(error) => Err(error.context("the ingress needs PostgreSQL's schema for Apple Health tokens")),
    }
}

/// Registers every ingress metric so `/metrics` lists them from the start, at zero, rather than
/// from their first use (`metrics::init`), with the circuit's current state.
fn register_metrics(state: &IngressState) {
    crate::metrics::init(crate::metrics::Component::Ingress);
    circuit::publish_state(state.producer.circuit_state());
}

/// The HTTP routes of the webhook port; `/metrics` among them only when `with_metrics` (no
/// separate metrics address).
pub fn router(state: Arc<IngressState>, with_metrics: bool) -> Router {
    let routes = Router::new().route("/health", get(health)).route("/ready", get(ready));
    let routes = if with_metrics { routes.route("/metrics", get(metrics)) } else { routes };
    routes
        .route("/webhooks/{vendor}", post(webhook::post_webhook).get(handshake))
        .route("/oauth/{vendor}/callback", get(crate::connections::callback::oauth_callback))
        .fallback(|| async { IngressError::NotFound })
        .method_not_allowed_fallback(|| async { IngressError::MethodNotAllowed })
        .with_state(state)
}

/// The routes of `INGRESS_METRICS_ADDR`.
fn metrics_router(state: Arc<IngressState>) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/health", get(health)).route("/ready", get(ready)).with_state(state)
}

async fn health() -> Response {
    axum::Json(serde_json::json!({ "status": "healthy", "service": "biometric-bridge" })).into_response()
}

/// Prometheus text format; the circuit gauge is refreshed first because an open circuit turns
/// half-open by the clock alone.
async fn metrics(State(state): State<Arc<IngressState>>) -> Response {
    circuit::publish_state(state.producer.circuit_state());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::render()).into_response()
}

/// 200 only while the producer has a broker connection and the circuit is closed; else 503
/// with the reason as a stable code.
async fn ready(State(state): State<Arc<IngressState>>) -> Response {
    let circuit = state.producer.circuit_state();
    let connected = state.producer.is_connected();
    let fatal = state.producer.fatal_error();
    let mut body = serde_json::json!({
        "status": "ready",
        "kafka_connected": connected,
        "circuit": circuit.name(),
    });
    let problem = if let Some(error) = &fatal {
        tracing::error!(%error, "The Kafka producer hit a fatal error; restart the ingress.");
        Some(("producer_fatal", "the Kafka producer failed for good; the process needs a restart"))
    } else if !connected {
        Some(("kafka_unavailable", "no broker connection"))
    } else if circuit != CircuitState::Closed {
        Some(("circuit_not_closed", "the Kafka circuit breaker is not closed"))
    } else {
        None
    };
    match problem {
        None => (StatusCode::OK, axum::Json(body)).into_response(),
        Some((code, detail)) => {
            body["status"] = "not_ready".into();
            body["error"] = code.into();
            body["detail"] = detail.into();
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

/// `GET /webhooks/oura?verification_token=..&challenge=..`: Oura's subscription handshake.
/// Other vendors have no GET.
async fn handshake(
    State(state): State<Arc<IngressState>>,
    vendor: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, IngressError> {
    // Rejections are answered with our JSON errors, not axum's text, which may quote the input.
    let Ok(Path(vendor)) = vendor else { return Err(IngressError::NotFound) };
    let query = query.map(|Query(query)| query).unwrap_or_default();
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

/// How long the start check waits for the broker: a Kafka that is down at start is an outage
/// like any other (the circuit answers 503 until it is back), not a reason to refuse to start.
const RAW_TOPIC_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// At start: the raw topic must exist (the broker creates no topic on first write, so every
/// webhook would fail), and its `max.message.bytes` should hold the largest accepted body; a
/// smaller topic refuses the larger bodies with 500 `kafka_rejected`, which the vendors retry, so
/// it is reported loudly rather than refused.
async fn check_raw_topic(kafka: &crate::config::KafkaArgs, topic: &str, max_body: usize, terra_max_body: usize) -> anyhow::Result<()> {
    let found = tokio::time::timeout(RAW_TOPIC_CHECK_TIMEOUT, crate::kafka::admin::topic_max_message_bytes(kafka, topic)).await;
    let limit = match found {
        Ok(Ok(Some(limit))) => limit,
        Ok(Ok(None)) => {
            anyhow::bail!(
                "the raw topic {topic} does not exist; create it with `biometric-bridge topics create` (the broker does not create topics on first write)"
            )
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, topic, "Could not check the raw topic at start; writes will say whether it works.");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!(topic, "Kafka did not answer the raw topic check at start; writes will say whether it works.");
            return Ok(());
        }
    };
    for (setting, body) in [("MAX_BODY_BYTES", max_body), ("TERRA_MAX_BODY_BYTES", terra_max_body)] {
        let needed = producer::required_topic_max_message_bytes(body);
        if limit < needed {
            tracing::error!(
                topic,
                max_message_bytes = limit,
                needed,
                setting,
                "The raw topic cannot hold the largest body {setting} accepts; larger bodies will be refused with 500 kafka_rejected. \
                 Raise the topic's max.message.bytes (topics create --apply-configs) or lower {setting}."
            );
        }
    }
    tracing::info!(topic, max_message_bytes = limit, "The raw topic exists.");
    Ok(())
}

/// `biometric-bridge ingress`.
pub async fn run(args: IngressArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let secrets = VendorSecrets::load()?;
    // A refusal (wrong SASL password, TLS that does not verify) is a misconfiguration: exit with
    // it. An absent cluster is not: the ingress starts, its circuit refuses writes meanwhile.
    let kafka = args.kafka.clone();
    match tokio::task::spawn_blocking(move || crate::kafka::preflight::contact(&kafka, Duration::from_secs(10))).await?? {
        crate::kafka::preflight::Contact::Reachable { brokers } => {
            tracing::info!(brokers, bootstrap = %args.kafka.bootstrap_servers, "Kafka reachable.")
        }
        crate::kafka::preflight::Contact::Unreachable { last_error } => tracing::warn!(
            dependency = "kafka",
            address = %args.kafka.bootstrap_servers,
            error = %last_error,
            "Kafka does not answer yet; starting anyway, writes are refused (503) until it does."
        ),
    }
    let ingress = Ingress::build(&args, secrets).await?;
    ingress.run_until_stopped(shutdown).await
}
