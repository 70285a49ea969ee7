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
        "Metadata probes of Kafka while the circuit is not closed, by outcome (writable, not_writable, no_connection: writable by the metadata, but no connection to a leader yet, so the circuit half-opens for one request).",
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
        "Records readable (read_committed end offset) past the group's committed offset, per assigned partition; refreshed every statistics interval (5 s).",
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
    histogram_vec(
        "biometric_bridge_store_restore_duration_seconds",
        "Wall time of one restore of a store: all its newly assigned partitions, read together from its changelog (one observation per restore, not per partition).",
        &["store"],
    )
});
pub static STORE_RESTORED_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("biometric_bridge_store_restored_records_total", "Changelog records applied while restoring stores.", &["store"])
});
pub static TASKS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge("biometric_bridge_tasks", "Tasks (ingress partitions, with their co-partitions and stores) this instance holds.")
});
pub static STORE_ENTRIES: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge_vec("biometric_bridge_store_entries", "Entries held per store.", &["store"]));

// ---- PostgreSQL sink ----

pub static SINK_ROWS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("biometric_bridge_sink_rows_total", "Event rows upserted into PostgreSQL."));
pub static ERASURES_APPLIED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "biometric_bridge_erasures_applied_total",
        "Erasure records (users erase) applied by this process's tasks: one per task and erase.",
    )
});
pub static ERASED_IN_FLIGHT_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "biometric_bridge_erased_in_flight_dropped_total",
        "Events of an erased person received before the erase but processed after it: dropped, never written.",
    )
});
pub static AT_REST_ERASED_SKIPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "biometric_bridge_at_rest_erased_skipped_total",
        "Records sealed under an erased person's data key, skipped unread (crypto-shredded).",
    )
});
pub static KAFKA_CLIENT_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "biometric_bridge_kafka_client_errors_total",
        "Errors librdkafka reported to a client (every one, including those the log held back), by error code.",
        &["code"],
    )
});
pub static SINK_RETENTION_DELETED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter("biometric_bridge_sink_retention_deleted_total", "History rows deleted by the retention job (sink postgres --retention).")
});
pub static SINK_BATCH_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    histogram("biometric_bridge_sink_batch_duration_seconds", "Time to write one batch and its offsets in one database transaction.")
});

// ---- the build ----

pub static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec("biometric_bridge_build_info", "Always 1; the labels say which build runs.", &["version", "git_sha", "component"])
});

/// The git commit the binary was built from (`build.rs`; `GIT_SHA` at build time where there is
/// no `.git`, as in the Docker build), or `unknown`.
pub const GIT_SHA: &str = env!("BIOMETRIC_BRIDGE_GIT_SHA");

/// Registers what every component exports from its first second: the build info, the `process_*`
/// series (CPU, memory, file descriptors, threads, start time, from /proc), and each counter an
/// alert uses, with its known label sets at zero. A counter that appears only at its first
/// increment is invisible to `rate()` and `increase()` at exactly the moment that matters.
/// Idempotent; nothing is reset (tests start several components in one process).
pub fn init(component: Component) {
    static PROCESS: std::sync::Once = std::sync::Once::new();
    PROCESS.call_once(|| {
        // /proc exists on Linux only; elsewhere the process series are simply absent.
        #[cfg(target_os = "linux")]
        let _ = REGISTRY.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
    });
    BUILD_INFO.with_label_values(&[env!("CARGO_PKG_VERSION"), GIT_SHA, component.name()]).set(1);
    LazyLock::force(&ERRORS);
    match component {
        Component::Ingress => init_ingress(),
        Component::Processor => init_processor(),
        Component::Sink => {
            LazyLock::force(&SINK_ROWS);
            LazyLock::force(&SINK_BATCH_DURATION);
            LazyLock::force(&SINK_RETENTION_DELETED);
            for dependency in ["kafka", "postgresql"] {
                INFRA_RETRIES.with_label_values(&[dependency]);
            }
        }
    }
}

/// The process kinds, for [`init`] and the `component` label of the build info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Ingress,
    Processor,
    Sink,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::Ingress => "ingress",
            Component::Processor => "processor",
            Component::Sink => "sink",
        }
    }
}

/// Every ingress series: an alert on `redis_errors_total` must not depend on Redis having failed once.
fn init_ingress() {
    LazyLock::force(&WEBHOOKS_IN_FLIGHT);
    LazyLock::force(&WEBHOOK_REQUESTS);
    LazyLock::force(&WEBHOOK_DURATION);
    LazyLock::force(&KAFKA_PRODUCE_DURATION);
    LazyLock::force(&REDIS_ERRORS);
    LazyLock::force(&OPEN_CONNECTIONS);
    for outcome in ["writable", "not_writable", "no_connection"] {
        CIRCUIT_PROBES.with_label_values(&[outcome]);
    }
    for reason in ["idle_timeout", "header_timeout", "over_limit"] {
        CONNECTIONS_CLOSED.with_label_values(&[reason]);
    }
    for vendor in crate::event::Vendor::ALL {
        DEDUP_HITS.with_label_values(&[vendor.slug()]);
        STALE_SIGNATURES.with_label_values(&[vendor.slug()]);
    }
}

/// Every abort reason, DLQ class, trigger, fetch outcome and dependency the processor can report.
fn init_processor() {
    LazyLock::force(&TXN_COMMITS);
    LazyLock::force(&TXN_COMMIT_DURATION);
    LazyLock::force(&PRODUCER_FENCED);
    LazyLock::force(&END_TO_END_LATENCY);
    LazyLock::force(&DUPLICATES_DROPPED);
    LazyLock::force(&ERASURES_APPLIED);
    LazyLock::force(&AT_REST_ERASED_SKIPPED);
    LazyLock::force(&KAFKA_CLIENT_ERRORS);
    LazyLock::force(&ERASED_IN_FLIGHT_DROPPED);
    LazyLock::force(&CONSUMER_LAG);
    LazyLock::force(&STORE_ENTRIES);
    LazyLock::force(&TASKS);
    LazyLock::force(&FETCH_PENDING);
    LazyLock::force(&TERRA_OLDEST_POINTER_AGE);
    LazyLock::force(&TERRA_HEALTHCHECKS);
    LazyLock::force(&TERRA_HEALTHCHECK_LAST_SEEN);
    for reason in ["shutdown", "consumer_fatal", "abortable_error", "assignment_lost", "commit_failed"] {
        TXN_ABORTS.with_label_values(&[reason]);
    }
    for dependency in ["kafka", "schema_registry", "postgresql", "redis"] {
        INFRA_RETRIES.with_label_values(&[dependency]);
    }
    for class in DLQ_CLASSES {
        DLQ_RECORDS.with_label_values(&[class]);
    }
    use crate::processor::triggers as t;
    for (trigger, severity) in [
        (t::URGENT_INTERVENTION, "CRITICAL"),
        (t::STRESS_INTERVENTION, "HIGH"),
        (t::SDNN_URGENT_INTERVENTION, "CRITICAL"),
        (t::SDNN_STRESS_INTERVENTION, "HIGH"),
        (t::IRREGULAR_RHYTHM, "HIGH"),
        (crate::processor::baseline::HRV_BELOW_BASELINE, "HIGH"),
    ] {
        TRIGGERS.with_label_values(&[trigger, severity]);
    }
    for outcome in ["downloaded", "expired", "refused"] {
        TERRA_POINTERS.with_label_values(&[outcome]);
    }
    for vendor in ["oura", "whoop"] {
        for outcome in ["fetched", "gone", "retry", "needs_reauth", "no_connection", "rejected"] {
            FETCH_OUTCOMES.with_label_values(&[vendor, outcome]);
        }
        for outcome in ["refreshed", "needs_reauth", "unavailable", "invalid_client"] {
            OAUTH_REFRESHES.with_label_values(&[vendor, outcome]);
        }
    }
}

/// The dead-letter classes (the `error-class` header), registered at zero so a DLQ-rate alert
/// sees the first one.
pub const DLQ_CLASSES: &[&str] = &[
    "invalid_json",
    "invalid_shape",
    "unsupported_type",
    "invalid_value",
    "implausible_value",
    "unknown_vendor",
    "unknown_source",
    "empty_payload",
    "not_a_notification",
    "output_too_large",
    "database_rejected",
    "fetch_failed",
    "invalid_api_response",
    "terra_payload_expired",
    "terra_payload_refused",
    "terra_backfill_incomplete",
];

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

#[cfg(test)]
mod tests {
    /// Every `biometric_bridge_*` series the dashboard and the alert rules query is defined here:
    /// renaming a metric without them would leave a blank panel or an alert that never fires.
    #[test]
    fn the_dashboard_and_the_alerts_query_only_metrics_that_exist() {
        let source = include_str!("metrics.rs");
        let queried = [include_str!("../deploy/grafana/dashboards/biometric-bridge.json"), include_str!("../deploy/prometheus/alerts.yml")];
        let mut names = std::collections::BTreeSet::new();
        for text in queried {
            let mut rest = text;
            while let Some(at) = rest.find("biometric_bridge_") {
                let tail = &rest[at..];
                let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
                names.insert(&tail[..end]);
                rest = &tail[end..];
            }
        }
        assert!(names.len() > 20, "found {names:?}");
        for name in names {
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name);
            let defined = source.contains(&format!("\"{name}\"")) || source.contains(&format!("\"{base}\""));
            assert!(defined, "{name} is queried by deploy/ but no metric of that name is defined");
        }
    }

    #[test]
    fn init_registers_the_build_and_the_alerting_series() {
        super::init(super::Component::Processor);
        let text = super::render();
        assert!(text.contains("biometric_bridge_build_info{component=\"processor\""), "{text}");
        assert!(text.contains("biometric_bridge_producer_fenced_total 0"), "{text}");
        assert!(text.contains("biometric_bridge_dlq_records_total{error_class=\"terra_payload_expired\"} 0"), "{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_cpu_seconds_total"), "{text}");
    }
}
