//! `biometric-bridge ingress` settings. Vendor secrets are not flags: they come from the
//! environment or `*_FILE` (see `VendorSecrets::load`).

use std::net::SocketAddr;

use crate::config::{DatabaseArgs, KafkaArgs, RedisArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct IngressArgs {
    /// Address the HTTP server listens on.
    #[arg(long = "http-addr", env = "BRIDGE_HTTP_ADDR", default_value = "0.0.0.0:8889")]
    pub http_addr: SocketAddr,

    /// Address for `GET /metrics` (and `/health`), apart from the webhook port. Set it in
    /// production: the webhook port faces the internet, and the metrics (request counts per
    /// vendor, error codes, circuit state) are for the operator's scraper only. Unset, `/metrics`
    /// is served on the webhook port, with a warning at start.
    #[arg(long = "metrics-addr", env = "INGRESS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic raw webhooks are written to. Default: the topology's ingress source (`raw-webhooks`,
    /// with `-<TOPOLOGY_NAMESPACE>` when a namespace is set), so the ingress and the processor
    /// agree on it.
    #[arg(long, env = "RAW_WEBHOOKS_TOPIC")]
    pub raw_topic: Option<String>,

    /// The topology whose ingress source is the raw topic (`--topology`, `--namespace`).
    #[command(flatten)]
    pub topology: crate::topology::TopologyArgs,

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

    /// How far a Terra signature's timestamp may be from now, seconds. Terra keeps retrying for a
    /// little over 24 h and does not document whether a retry is re-signed: the window covers the
    /// whole retry horizon, so no retry is refused (a replay of a valid old delivery is a
    /// duplicate, dropped by its delivery id).
    #[arg(long, env = "TERRA_SIGNATURE_TOLERANCE_SECS", default_value_t = 93_600)]
    pub terra_signature_tolerance_secs: u64,

    /// The same for Oura (10 retries over about an hour).
    #[arg(long, env = "OURA_SIGNATURE_TOLERANCE_SECS", default_value_t = 7_200)]
    pub oura_signature_tolerance_secs: u64,

    /// The same for WHOOP (5 retries over about an hour).
    #[arg(long, env = "WHOOP_SIGNATURE_TOLERANCE_SECS", default_value_t = 7_200)]
    pub whoop_signature_tolerance_secs: u64,

    /// Accept webhooks without checking signatures. Local development only: logs a warning at
    /// every start.
    #[arg(long, env = "INSECURE_SKIP_SIGNATURES")]
    pub insecure_skip_signatures: bool,

    /// Write webhook bodies to Kafka unsealed when DATA_ENCRYPTION_KEY is not set: an erase then
    /// cannot shred them. Local development only: logs a warning at every start.
    #[arg(long, env = "INSECURE_PLAINTEXT_AT_REST")]
    pub insecure_plaintext_at_rest: bool,

    /// How long the ingress uses a user's data key before reading it again. An erase also tells
    /// every ingress at once (PostgreSQL NOTIFY); this bounds a missed notification.
    #[arg(long, env = "DATA_KEY_CACHE_TTL_SECS", default_value_t = 60)]
    pub data_key_cache_ttl_secs: u64,

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

    /// In-flight webhooks one client address may hold at once (default: half of
    /// MAX_CONCURRENT_WEBHOOKS), so one slow or hostile client cannot take every slot. 0: no
    /// limit (behind a load balancer, where every request has the balancer's address).
    #[arg(long, env = "MAX_IN_FLIGHT_PER_CLIENT")]
    pub max_in_flight_per_client: Option<usize>,

    /// Largest accepted body of Oura, WHOOP and Apple Health, bytes (larger: 413).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest accepted Terra body, bytes: Terra documents no limit (long activities are tens of
    /// MB, backfill chunks about 10 MB) and does not resend a refused body smaller. The
    /// producer's `message.max.bytes` follows the largest limit (plus 512 KiB for key and
    /// headers); the raw topic's `max.message.bytes` must be at least
    /// `producer::required_topic_max_message_bytes` of it (65 MiB for the default), which the
    /// ingress checks at start (an ERROR log naming the setting; a missing topic stops the start).
    #[arg(long, env = "TERRA_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub terra_max_body_bytes: usize,

    /// Body bytes the ingress holds at once, across requests, bytes: a body reserves its size as
    /// it arrives and releases it after the write; beyond, 503 `overloaded`. Bounds memory when
    /// several large Terra bodies come together.
    #[arg(long, env = "MAX_BUFFERED_BODY_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_buffered_body_bytes: usize,

    /// How long the whole body may take to arrive, milliseconds (then 408). Without it, a
    /// client trickling bytes holds an in-flight slot for ever; vendors time out after 8-10 s
    /// anyway.
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_read_timeout_ms: u64,

    /// Slowest average body rate accepted after the first second, bytes per second (slower:
    /// 408 `body_too_slow`). A trickling body holds an in-flight slot; with this, holding all
    /// 100 slots costs a client 100 x this rate of real bandwidth instead of a byte a second.
    /// 0 turns the check off.
    #[arg(long, env = "MIN_BODY_BYTES_PER_SEC", default_value_t = 16_384)]
    pub min_body_bytes_per_sec: u64,

    /// Open HTTP connections at most; beyond, a connection is answered 503
    /// `too_many_connections` and closed.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// How long a request's headers may take, from its first byte, milliseconds (slowloris
    /// connections are closed after it).
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 5_000)]
    pub header_read_timeout_ms: u64,

    /// How long a connection may wait for its next request (a new one: for its first byte)
    /// before it is closed, milliseconds. Behind a load balancer, set it above the balancer's own
    /// idle timeout, so the ingress never closes a connection the balancer is about to reuse.
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub idle_timeout_ms: u64,

    /// Largest request head (request line and headers), bytes; larger: 431. Vendors send a few
    /// hundred bytes of headers.
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 16_384)]
    pub max_header_bytes: usize,

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
