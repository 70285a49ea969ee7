//! Every Prometheus metric of the process, defined in one place.
//!
//! Names follow `biometric_bridge_<what>_<unit>[_total]`. Labels are bounded: vendor slugs,
//! stable error codes and classes, topic names from the topology — never raw error text, user ids
//! or anything else unbounded. The ingress serves them at `GET /metrics`; the processor and the
//! sink serve them on their own `--metrics-addr`.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The registry every metric below is registered in.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn counter(name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid metric");
    REGISTRY.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    REGISTRY.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn gauge(name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric");
    REGISTRY.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    REGISTRY.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

/// Latency buckets from 0.5 ms to 10 s: webhooks and produces are expected in the low ms.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

fn histogram(name: &str, help: &str) -> Histogram {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())).expect("valid metric");
    REGISTRY.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels).expect("valid metric");
    REGISTRY.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

// ---- errors (all components) ----

/// One counter for every handled error, by component stage and stable error code.
pub static ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("biometric_bridge_errors_total", "Handled errors by stage and stable error code.", &["stage", "error_code"])
});

// ---- ingress ----

pub static WEBHOOK_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("biometric_bridge_webhook_requests_total", "Webhook requests by vendor and HTTP status.", &["vendor", "status"])
});
pub static WEBHOOK_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec("biometric_bridge_webhook_request_duration_seconds", "Webhook request latency, receipt to response.", &["vendor"])
});
pub static KAFKA_PRODUCE_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    histogram("biometric_bridge_kafka_produce_duration_seconds", "Time from enqueue to broker acknowledgement of a raw webhook.")
});
pub static WEBHOOKS_IN_FLIGHT: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("biometric_bridge_webhooks_in_flight", "Webhook requests currently being handled."));
pub static CIRCUIT_STATE: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("biometric_bridge_circuit_state", "Producer circuit breaker: 0 closed, 1 half-open, 2 open."));
pub static CIRCUIT_PROBES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_circuit_probes_total",
        "Metadata probes of Kafka while the circuit is not closed, by outcome (writable, not_writable).",
        &["outcome"],
    )
});
pub static DEDUP_HITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("biometric_bridge_dedup_hits_total", "Re-deliveries answered from the Redis de-duplication fast path.", &["vendor"])
});
pub static OPEN_CONNECTIONS: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("biometric_bridge_http_connections_open", "HTTP connections the ingress holds open."));
pub static CONNECTIONS_CLOSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_http_connections_closed_total",
        "HTTP connections the ingress closed itself, by reason (idle_timeout, header_timeout, over_limit).",
        &["reason"],
    )
});
pub static DEDUP_CLAIM_WAITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_dedup_claim_waits_total",
        "Copies of a delivery that waited for another copy's write, by how the wait ended (delivered_meanwhile, claimed_after_release, gave_up).",
        &["outcome"],
    )
});
pub static STALE_SIGNATURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_stale_signatures_total",
        "Webhooks refused because their signature timestamp was outside the vendor's replay window (a refused retry is lost data).",
        &["vendor"],
    )
});
pub static REDIS_ERRORS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("biometric_bridge_redis_errors_total", "Redis calls that failed (the ingress keeps accepting)."));

// ---- processor ----

pub static RECORDS_IN: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("biometric_bridge_records_in_total", "Records consumed, by topic.", &["topic"]));
pub static RECORDS_OUT: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("biometric_bridge_records_out_total", "Records produced (committed or not yet), by topic.", &["topic"]));
pub static DLQ_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("biometric_bridge_dlq_records_total", "Records sent to the dead-letter topic, by error class.", &["error_class"])
});
pub static NOTICES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("biometric_bridge_notices_total", "Records recognised as carrying no data (logged, skipped), by kind.", &["kind"])
});
pub static TXN_COMMIT_DURATION: LazyLock<Histogram> =
    LazyLock::new(|| histogram("biometric_bridge_transaction_commit_duration_seconds", "Time to send offsets and commit one transaction."));
pub static TXN_COMMITS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("biometric_bridge_transactions_committed_total", "Transactions committed."));
pub static TXN_ABORTS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("biometric_bridge_transactions_aborted_total", "Transactions aborted, by reason.", &["reason"]));
pub static PRODUCER_FENCED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter("biometric_bridge_producer_fenced_total", "Fatal producer errors (fenced by a newer instance, invalid producer id).")
});
pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "biometric_bridge_consumer_lag_records",
        "Consumer lag per assigned partition (librdkafka statistics).",
        &["topic", "partition"],
    )
});
pub static TRIGGERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("biometric_bridge_triggers_total", "HRV triggers raised, by type and severity.", &["trigger_type", "severity"])
});
pub static END_TO_END_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    histogram("biometric_bridge_end_to_end_latency_seconds", "From the ingress receiving a webhook to its event's transaction committing.")
});
pub static INFRA_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("biometric_bridge_infra_retries_total", "Pauses caused by an unavailable dependency, by dependency.", &["dependency"])
});
pub static IMPLAUSIBLE_VALUES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_implausible_values_total",
        "Measurements removed from events as implausible or unrepresentable, by field and reason.",
        &["field", "reason"],
    )
});
pub static STALE_UPDATES_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_stale_updates_dropped_total",
        "Event versions dropped because the vendor's ordering timestamp was older than the emitted one's (Terra last-write-wins).",
        &["vendor"],
    )
});
pub static DUPLICATES_DROPPED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("biometric_bridge_duplicates_dropped_total", "Events dropped by the de-duplication store (already emitted)."));

// ---- fetch stage (Oura / WHOOP APIs) ----

pub static FETCH_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("biometric_bridge_fetch_requests_total", "Vendor API requests by vendor and result class.", &["vendor", "result"])
});
pub static FETCH_IN_FLIGHT: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge_vec("biometric_bridge_fetch_in_flight", "Vendor API requests in flight.", &["vendor"]));
pub static FETCH_DURATION: LazyLock<HistogramVec> =
    LazyLock::new(|| histogram_vec("biometric_bridge_fetch_duration_seconds", "Vendor API request latency.", &["vendor"]));
pub static FETCH_OUTCOMES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_fetch_outcomes_total",
        "Fetch passes by vendor and outcome (fetched, gone, retry, needs_reauth, no_connection, rejected).",
        &["vendor", "outcome"],
    )
});
pub static TERRA_POINTERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("biometric_bridge_terra_pointers_total", "Terra payload pointers by outcome (downloaded, expired, refused).", &["outcome"])
});
pub static TERRA_BACKFILLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_terra_backfills_total",
        "Terra large historical requests by outcome (completed, incomplete: chunks missing after the timeout).",
        &["outcome"],
    )
});
pub static TERRA_HEALTHCHECKS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("biometric_bridge_terra_healthchecks_total", "Terra destination healthcheck messages received."));
pub static TERRA_HEALTHCHECK_LAST_SEEN: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge("biometric_bridge_terra_healthcheck_last_seen_timestamp_seconds", "When the last Terra healthcheck was received (Unix seconds).")
});
pub static TERRA_OLDEST_POINTER_AGE: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "biometric_bridge_terra_oldest_pending_pointer_age_seconds",
        "Age of the oldest Terra pointer consumed but not yet written (its URL expires 300-600 s after Terra sent it).",
    )
});
pub static FETCH_PENDING: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge("biometric_bridge_fetch_pending", "Fetch-stage records consumed but not yet written (fetch in progress or queued behind one).")
});
pub static RECONCILE_FED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_reconcile_records_total",
        "Records seen by reconciliation, by vendor and result (fed: not yet seen, sent for fetching; known: already in the event history).",
        &["vendor", "result"],
    )
});

// ---- vendor connections (OAuth) ----

pub static OAUTH_REFRESHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_oauth_refreshes_total",
        "OAuth token refreshes by vendor and outcome (refreshed, shared, needs_reauth, unavailable, invalid_client, malformed, lock_busy, store_failed).",
        &["vendor", "outcome"],
    )
});

pub static VENDOR_REVOCATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_vendor_revocations_total",
        "Revocations of users' authorization at the vendor, by vendor and outcome (confirmed, pending: retried later).",
        &["vendor", "outcome"],
    )
});

// ---- state stores ----

pub static STORE_RESTORE_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec("biometric_bridge_store_restore_duration_seconds", "Time to restore one store partition from its changelog.", &["store"])
});
pub static STORE_ENTRIES: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge_vec("biometric_bridge_store_entries", "Entries held per store.", &["store"]));

// ---- PostgreSQL sink ----

pub static SINK_ROWS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("biometric_bridge_sink_rows_total", "Event rows upserted into PostgreSQL."));
pub static SINK_BATCH_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    histogram("biometric_bridge_sink_batch_duration_seconds", "Time to write one batch and its offsets in one database transaction.")
});

/// The registry in Prometheus text exposition format.
pub fn render() -> String {
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&REGISTRY.gather(), &mut buffer).expect("text encoding cannot fail");
    String::from_utf8(buffer).expect("text format is UTF-8")
}

/// Serves `GET /metrics` on `addr` until `shutdown` (for the processor and the sink, which have
/// no HTTP server of their own).
pub async fn serve(
    addr: std::net::SocketAddr,
    shutdown: crate::shutdown::CancellationToken,
    readiness: crate::startup::Readiness,
) -> anyhow::Result<()> {
    use axum::http::StatusCode;
    let ready = move || {
        let phase = readiness.phase();
        async move {
            if phase == crate::startup::Readiness::READY {
                (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ready" })))
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "not_ready", "error": phase })))
            }
        }
    };
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(|| async { render() }))
        .route(
            "/health",
            axum::routing::get(|| async { axum::Json(serde_json::json!({ "status": "healthy", "service": "biometric-bridge" })) }),
        )
        .route("/ready", axum::routing::get(ready));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|error| anyhow::anyhow!("cannot serve metrics on {addr}: {error}"))?;
    // The bound address: with port 0 (tests) the log says which port was taken.
    tracing::info!(addr = %listener.local_addr()?, "Serving metrics.");
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}
