//! `biometric-bridge ingress` settings. Vendor secrets are not flags: they come from the
//! environment or `*_FILE` (see `VendorSecrets::load`).

use std::net::SocketAddr;

use crate::config::{DatabaseArgs, KafkaArgs, RedisArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct IngressArgs {
    /// Address the HTTP server listens on.
    #[arg(long = "http-addr", env = "BRIDGE_HTTP_ADDR", default_value = "0.0.0.0:8889")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic raw webhooks are written to.
    #[arg(long, env = "RAW_WEBHOOKS_TOPIC", default_value = "raw-webhooks")]
    pub raw_topic: String,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// Turn off the Redis de-duplication fast path.
    #[arg(long, env = "DEDUP_DISABLED")]
    pub no_dedup: bool,

    /// How long a delivery id is remembered by the de-duplication fast path, seconds (48 h
    /// covers Terra's ~24 h retry schedule with margin).
    #[arg(long, env = "DEDUP_TTL_SECS", default_value_t = 172_800)]
    pub dedup_ttl_secs: u64,

    /// How far a signed timestamp may be from now before the request is refused as a replay.
    #[arg(long, env = "SIGNATURE_TOLERANCE_SECS", default_value_t = 300)]
    pub signature_tolerance_secs: u64,

    /// Accept webhooks without checking signatures. Local development only: logs a warning at
    /// every start.
    #[arg(long, env = "INSECURE_SKIP_SIGNATURES")]
    pub insecure_skip_signatures: bool,

    /// How long to wait for Kafka's acknowledgement before answering 503.
    #[arg(long, env = "PRODUCE_TIMEOUT_MS", default_value_t = 5_000)]
    pub produce_timeout_ms: u64,

    /// Producer `linger.ms`: how long to wait to fill a batch (latency vs throughput).
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = 5)]
    pub linger_ms: u32,

    /// Producer `batch.size` in bytes.
    #[arg(long, env = "KAFKA_BATCH_SIZE", default_value_t = 16_384)]
    pub batch_size: u32,

    /// Producer `compression.type` (none, gzip, snappy, lz4).
    #[arg(long, env = "KAFKA_COMPRESSION", default_value = "snappy")]
    pub compression: String,

    /// Consecutive produce failures that open the circuit breaker.
    #[arg(long, env = "CIRCUIT_FAILURE_THRESHOLD", default_value_t = 5)]
    pub circuit_failure_threshold: u32,

    /// How long an open circuit fails fast before letting one probe through, seconds.
    #[arg(long, env = "CIRCUIT_RECOVERY_SECS", default_value_t = 60)]
    pub circuit_recovery_secs: u64,

    /// Webhook requests handled at once; beyond it, 503 with Retry-After.
    #[arg(long, env = "MAX_CONCURRENT_WEBHOOKS", default_value_t = 100)]
    pub max_concurrent_webhooks: usize,

    /// Largest accepted body, bytes (larger: 413). The producer's `message.max.bytes` follows it
    /// (plus 512 KiB for key and headers); the raw topic's `max.message.bytes` must be at least
    /// `producer::required_topic_max_message_bytes` of it (6 MiB for the default).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// How long the whole body may take to arrive, milliseconds (then 408). Without it, a
    /// client trickling bytes holds an in-flight slot for ever; vendors time out after 8-10 s
    /// anyway.
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_read_timeout_ms: u64,

    /// How long a known Apple Health token is trusted without asking PostgreSQL, seconds: the
    /// longest a revoked token keeps working.
    #[arg(long, env = "TOKEN_CACHE_TTL_SECS", default_value_t = 30)]
    pub token_cache_ttl_secs: u64,

    /// How long shutdown waits for in-flight requests and the producer flush, seconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 20)]
    pub shutdown_timeout_secs: u64,

    /// OAuth clients for `GET /oauth/{vendor}/callback` (users connecting Oura / WHOOP).
    #[command(flatten)]
    pub oauth: crate::connections::oauth::OAuthArgs,

    /// Public base URL of this ingress as registered with the vendors: the OAuth redirect URI is
    /// `<base>/oauth/<vendor>/callback`. Unset: the OAuth callback is off.
    #[arg(long, env = "OAUTH_REDIRECT_BASE")]
    pub oauth_redirect_base: Option<String>,
}
