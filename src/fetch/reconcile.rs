//! Reconciliation: webhooks get lost (Oura and WHOOP both say so), so every active connection's
//! records of a recent window are listed through the collection endpoints, and those not yet
//! seen are fed through the normal path.
//!
//! "Fed" means: a notification in the vendor's own format is written to `raw-webhooks`, exactly
//! as the ingress would have written the lost webhook. The processor then normalizes it, fetches
//! the record and emits its events; de-duplication drops whatever was already emitted, so running
//! reconciliation twice (or on two instances) is harmless. "Not yet seen" is judged against the
//! event history table (`biometric_events`, filled by `sink postgres`) to spare API calls and
//! rate limit; without the sink every listed record is fed and de-duplication does the work.

use std::time::Duration;

use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;

use super::{FetchOutcome, Fetcher};
use crate::config::KafkaArgs;
use crate::connections::ConnectionStore;
use crate::event::{EventKind, Vendor};
use crate::kafka::headers;
use crate::shutdown::CancellationToken;

/// `2d`, `6h`, `30m`, `45s` or plain seconds.
pub fn parse_span(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((index, _)) => text.split_at(index),
        None => (text, "s"),
    };
    let value: u64 = number.parse().map_err(|_| format!("{text:?}: expected a number with d, h, m or s"))?;
    let seconds = match unit {
        "d" => value * 86_400,
        "h" => value * 3_600,
        "m" => value * 60,
        "s" => value,
        _ => return Err(format!("{text:?}: unit must be d, h, m or s")),
    };
    if seconds == 0 {
        return Err(format!("{text:?}: must be positive"));
    }
    Ok(Duration::from_secs(seconds))
}

/// The span of one polled heartrate window: 6 hours are at most ~72 five-minute samples (Oura's
/// daytime resolution), one page.
pub const HEARTRATE_WINDOW: Duration = Duration::from_secs(6 * 3_600);

/// A record found by listing: enough to judge it and to write its notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub data_type: &'static str,
    /// The id the notification carries (WHOOP recovery: its sleep's id).
    pub object_id: String,
    /// The kind of event it maps to, for its event id.
    pub kind: EventKind,
}

/// The collections reconciled per vendor: (data type, list path without query).
fn collections(vendor: Vendor) -> &'static [(&'static str, &'static str)] {
    match vendor {
        Vendor::Oura => &[
            ("sleep", "/v2/usercollection/sleep"),
            ("daily_sleep", "/v2/usercollection/daily_sleep"),
            ("daily_readiness", "/v2/usercollection/daily_readiness"),
            ("daily_activity", "/v2/usercollection/daily_activity"),
        ],
        // WHOOP sends no webhook for cycles (day strain, kilojoules, daily heart rate): "retrieve
        // by calling their respective APIs" (WHOOP developer FAQ). Listing is how they arrive.
        Vendor::Whoop => {
            &[("sleep", "/v2/activity/sleep"), ("recovery", "/v2/recovery"), ("workout", "/v2/activity/workout"), ("cycle", "/v2/cycle")]
        }
        _ => &[],
    }
}

/// The query of one page of a list endpoint for the window `[start, end]`.
fn page_query(vendor: Vendor, start: chrono::DateTime<chrono::Utc>, end: chrono::DateTime<chrono::Utc>, next: Option<&str>) -> String {
    let mut params: Vec<(&str, String)> = match vendor {
        // Oura's collections take dates, and the OpenAPI does not say which bounds are inclusive.
        // Open-source receivers report that a date-only end_date is read as that day's midnight
        // (excluding the day itself) and that `sleep` treats start_date as exclusive: one day of
        // padding on each side covers the window under every reading; what comes twice is
        // de-duplicated downstream.
        Vendor::Oura => vec![
            ("start_date", (start - chrono::Duration::days(1)).format("%Y-%m-%d").to_string()),
            ("end_date", (end + chrono::Duration::days(1)).format("%Y-%m-%d").to_string()),
        ],
        _ => vec![
            ("start", start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            ("end", end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            ("limit", "25".to_owned()),
        ],
    };
    if let Some(next) = next {
        params.push((if vendor == Vendor::Oura { "next_token" } else { "nextToken" }, next.to_owned()));
    }
    let encoded: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", url_encode(v))).collect();
    encoded.join("&")
}

fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One page of a list endpoint: its records and the next page's token.
pub fn parse_page(vendor: Vendor, data_type: &'static str, body: &[u8]) -> Result<(Vec<Listed>, Option<String>), String> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(alias = "records")]
        data: Vec<serde_json::Value>,
        next_token: Option<String>,
    }
    let page: Page = serde_json::from_slice(body).map_err(|error| format!("{} {data_type} list: {error}", vendor.slug()))?;
    let mut listed = Vec::new();
    for record in page.data {
        // Ids are strings, except WHOOP's integer cycle ids.
        let text = |field: &str| match record.get(field)? {
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Number(number) => Some(number.to_string()),
            _ => None,
        };
        // Deleted sleep periods and unscored WHOOP records would emit nothing: don't fetch them.
        let deleted = vendor == Vendor::Oura && data_type == "sleep" && text("type").as_deref() == Some("deleted");
        let unscored = vendor == Vendor::Whoop && text("score_state").as_deref() != Some("SCORED");
        let Some(kind) = crate::vendors::record_kind(vendor, data_type).filter(|_| !deleted && !unscored) else { continue };
        // The id notifications carry: a WHOOP recovery is named by its sleep.
        let id_field = if (vendor, data_type) == (Vendor::Whoop, "recovery") { "sleep_id" } else { "id" };
        let object_id = text(id_field).ok_or_else(|| format!("{} {data_type} record without an id", vendor.slug()))?;
        listed.push(Listed { data_type, object_id, kind });
    }
    Ok((listed, page.next_token.filter(|token| !token.is_empty())))
}

/// The webhook the vendor would have sent for `listed`, in its own format (vendors.md §2.1, §3.1).
pub fn notification(vendor: Vendor, vendor_user_id: &str, listed: &Listed, now: chrono::DateTime<chrono::Utc>) -> Option<Vec<u8>> {
    let body = match vendor {
        Vendor::Oura => serde_json::json!({
            "event_type": "update",
            "data_type": listed.data_type,
            "object_id": listed.object_id,
            "event_time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            "user_id": vendor_user_id,
        }),
        Vendor::Whoop => serde_json::json!({
            "user_id": vendor_user_id.parse::<i64>().ok()?,
            "id": listed.object_id,
            "type": format!("{}.updated", listed.data_type),
            "trace_id": format!("reconcile-{}", uuid::Uuid::new_v4()),
        }),
        _ => return None,
    };
    Some(body.to_string().into_bytes())
}

/// What one run found, per vendor.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub connections: usize,
    pub listed: usize,
    pub known: usize,
    pub fed: usize,
    /// Connections that could not be listed (token or API trouble), with the reason class.
    pub failed: Vec<(String, String)>,
}

pub struct Reconciler {
    pub fetcher: std::sync::Arc<Fetcher>,
    pub store: ConnectionStore,
    pub pool: sqlx::PgPool,
    pub producer: FutureProducer<crate::kafka::client_log::Throttled>,
    pub raw_topic: String,
}

impl Reconciler {
    pub fn new(
        fetcher: std::sync::Arc<Fetcher>,
        store: ConnectionStore,
        pool: sqlx::PgPool,
        kafka: &KafkaArgs,
        raw_topic: &str,
    ) -> anyhow::Result<Self> {
        let producer: FutureProducer<crate::kafka::client_log::Throttled> = kafka
            .config_with(&[("enable.idempotence", "true"), ("acks", "all"), ("client.id", "biometric-bridge-reconcile")])?
            .create_with_context(crate::kafka::client_log::Throttled)?;
        Ok(Reconciler { fetcher, store, pool, producer, raw_topic: raw_topic.to_owned() })
    }

    /// Lists every active connection of `vendor` over the last `window` and feeds what is new.
    pub async fn run(&self, vendor: Vendor, window: Duration) -> anyhow::Result<Report> {
        let end = chrono::Utc::now();
        let start = end - chrono::Duration::from_std(window)?;
        let mut report = Report::default();
        let connections = self.store.active(vendor).await.map_err(|error| anyhow::anyhow!("listing connections: {error}"))?;
        for connection in connections {
            report.connections += 1;
            let user = connection.vendor_user_id.clone();
            let mut listed = Vec::new();
            let mut failure = None;
            'collections: for (data_type, path) in collections(vendor) {
                let mut next: Option<String> = None;
                loop {
                    let url = format!("{path}?{}", page_query(vendor, start, end, next.as_deref()));
                    let body = match self.fetcher.get(vendor, &user, &url).await {
                        Ok(body) => body,
                        Err(outcome) => {
                            failure = Some(outcome_class(&outcome));
                            break 'collections;
                        }
                    };
                    let (records, token) = parse_page(vendor, data_type, &body).map_err(|error| anyhow::anyhow!(error))?;
                    listed.extend(records);
                    match token {
                        Some(token) => next = Some(token),
                        None => break,
                    }
                }
            }
            if let Some(class) = failure {
                tracing::warn!(vendor = vendor.slug(), reason = %class, "Reconciliation could not list a connection's records.");
                report.failed.push((user, class));
                continue;
            }
            report.listed += listed.len();
            let known = self.known(vendor, &listed).await?;
            // A cycle grows all day (its strain and energy change under the same id): always fed,
            // and de-duplication drops the unchanged ones.
            let fresh = |record: &&Listed| record.data_type == "cycle" || !known.contains(&event_id_of(vendor, record));
            for record in listed.iter().filter(fresh) {
                self.feed(vendor, &user, record).await?;
                report.fed += 1;
            }
            report.known += known.len();
            if vendor == Vendor::Oura {
                report.fed += self.poll_heartrate(&user, window).await?;
            }
        }
        crate::metrics::RECONCILE_FED.with_label_values(&[vendor.slug(), "fed"]).inc_by(report.fed as u64);
        crate::metrics::RECONCILE_FED.with_label_values(&[vendor.slug(), "known"]).inc_by(report.known as u64);
        tracing::info!(vendor = vendor.slug(), ?report, "Reconciliation done.");
        Ok(report)
    }

    /// Oura's heartrate series has no webhook (it cannot be subscribed to; only
    /// `GET /v2/usercollection/heartrate?start_datetime&end_datetime` serves it): from the user's
    /// high-water mark (or `window` ago) to now, one notification per [`HEARTRATE_WINDOW`] is
    /// fed, each fetched like any other record; the mark moves on once they are written.
    async fn poll_heartrate(&self, user: &str, window: Duration) -> anyhow::Result<usize> {
        let now = chrono::Utc::now();
        let earliest = now - chrono::Duration::from_std(window)?;
        let mark: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
            "SELECT until FROM poll_watermarks WHERE vendor = 'OURA' AND vendor_user_id = $1 AND data_type = 'heartrate'",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        let mut from = mark.map_or(earliest, |mark| mark.max(earliest));
        let mut fed = 0;
        while from < now {
            let to = (from + chrono::Duration::from_std(HEARTRATE_WINDOW)?).min(now);
            let listed = Listed {
                data_type: "heartrate",
                object_id: crate::vendors::oura::heartrate_window_id(from, to),
                kind: EventKind::HeartRate,
            };
            self.feed(Vendor::Oura, user, &listed).await?;
            fed += 1;
            from = to;
        }
        sqlx::query(
            "INSERT INTO poll_watermarks (vendor, vendor_user_id, data_type, until) VALUES ('OURA', $1, 'heartrate', $2)
             ON CONFLICT (vendor, vendor_user_id, data_type) DO UPDATE SET until = EXCLUDED.until, updated_at = now()",
        )
        .bind(user)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(fed)
    }

    /// The event ids among `listed` already in the event history.
    async fn known(&self, vendor: Vendor, listed: &[Listed]) -> anyhow::Result<std::collections::HashSet<String>> {
        let ids: Vec<uuid::Uuid> = listed.iter().filter_map(|record| event_id_of(vendor, record).parse().ok()).collect();
        let rows: Vec<(uuid::Uuid,)> =
            sqlx::query_as("SELECT event_id FROM biometric_events WHERE event_id = ANY($1)").bind(&ids).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(id,)| id.to_string()).collect())
    }

    /// Writes the notification of `record` to the raw topic, as the ingress would have.
    async fn feed(&self, vendor: Vendor, vendor_user_id: &str, record: &Listed) -> anyhow::Result<()> {
        let now = chrono::Utc::now();
        let body =
            notification(vendor, vendor_user_id, record, now).ok_or_else(|| anyhow::anyhow!("not a WHOOP user id: {vendor_user_id}"))?;
        let key = format!("{}:{vendor_user_id}", vendor.slug());
        let delivery = format!("reconcile:{}:{}:{}", vendor.slug(), record.data_type, record.object_id);
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        let mut out = OwnedHeaders::new();
        out = headers::with(out, headers::VENDOR, vendor.slug());
        out = headers::with(out, headers::RECEIVED_AT, &now.timestamp_millis().to_string());
        out = headers::with(out, headers::DELIVERY_ID, &delivery);
        out = headers::with(out, headers::CONTENT_TYPE, "application/json");
        out = headers::with(out, headers::TRACE_ID, &trace_id);
        let message = FutureRecord::to(&self.raw_topic).key(&key).payload(&body).headers(out);
        self.producer
            .send(message, Duration::from_secs(30))
            .await
            .map_err(|(error, _)| anyhow::anyhow!("writing to {}: {error}", self.raw_topic))?;
        tracing::info!(vendor = vendor.slug(), data_type = record.data_type, trace_id = %trace_id, "Reconciliation fed a record not seen before.");
        Ok(())
    }
}

/// The id of the event `record` maps to (the same rule as the vendor's API mappers).
pub fn event_id_of(vendor: Vendor, record: &Listed) -> String {
    crate::vendors::event_id(vendor, record.kind, &record.object_id)
}

fn outcome_class(outcome: &FetchOutcome) -> String {
    match outcome {
        FetchOutcome::Retry { reason, .. }
        | FetchOutcome::NeedsReauth { reason }
        | FetchOutcome::NoConnection { reason }
        | FetchOutcome::Rejected { reason } => reason.clone(),
        other => other.label().to_owned(),
    }
}

/// Settings of the processor's scheduled reconciliation.
pub struct Schedule {
    pub every: Duration,
    pub window: Duration,
}

/// Runs reconciliation for every fetched vendor every `schedule.every`, until shutdown. With
/// several processor instances each one runs it; the feeds are idempotent, and the event-history
/// check keeps the extra API calls to the listing.
pub async fn run_scheduled(schedule: Schedule, reconciler: Reconciler, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(schedule.every) => {}
            _ = shutdown.cancelled() => return,
        }
        for vendor in reconciler.fetcher.vendors() {
            if let Err(error) = reconciler.run(vendor, schedule.window).await {
                crate::metrics::ERRORS.with_label_values(&["reconcile", "run_failed"]).inc();
                tracing::warn!(vendor = vendor.slug(), %error, "Scheduled reconciliation failed; next run as scheduled.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse() {
        assert_eq!(parse_span("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_span("6h"), Ok(Duration::from_secs(21_600)));
        assert_eq!(parse_span("90"), Ok(Duration::from_secs(90)));
        for bad in ["", "d", "2w", "0h", "-1d"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_list_what_would_emit_an_event() {
        let oura = br#"{"data":[{"id":"a","type":"long_sleep"},{"id":"b","type":"deleted"}],"next_token":"n2"}"#;
        let (listed, next) = parse_page(Vendor::Oura, "sleep", oura).unwrap();
        assert_eq!(listed, vec![Listed { data_type: "sleep", object_id: "a".into(), kind: EventKind::Sleep }]);
        assert_eq!(next.as_deref(), Some("n2"));
        let whoop =
            br#"{"records":[{"sleep_id":"s1","score_state":"SCORED"},{"sleep_id":"s2","score_state":"PENDING_SCORE"}],"next_token":null}"#;
        let (listed, next) = parse_page(Vendor::Whoop, "recovery", whoop).unwrap();
        assert_eq!(listed, vec![Listed { data_type: "recovery", object_id: "s1".into(), kind: EventKind::Recovery }]);
        assert_eq!(next, None);
        assert!(parse_page(Vendor::Whoop, "sleep", br#"{"records":[{"score_state":"SCORED"}]}"#).is_err());
    }

    #[test]
    fn fed_notifications_normalize_to_the_same_fetch_as_a_webhook() {
        let now = chrono::Utc::now();
        for (vendor, user, listed, path) in [
            (
                Vendor::Oura,
                "u1",
                Listed { data_type: "daily_readiness", object_id: "r1".into(), kind: EventKind::Readiness },
                "/v2/usercollection/daily_readiness/r1",
            ),
            (
                Vendor::Whoop,
                "42",
                Listed { data_type: "recovery", object_id: "s1".into(), kind: EventKind::Recovery },
                "/v2/activity/sleep/s1",
            ),
        ] {
            let body = notification(vendor, user, &listed, now).unwrap();
            let input = crate::vendors::RawInput {
                vendor,
                body: &body,
                received_at_ms: 0,
                vendor_user_id: None,
                delivery_id: None,
                trace_id: None,
                source_topic: "raw",
                source_partition: 0,
                source_offset: 0,
            };
            match crate::vendors::normalize(&input) {
                Ok(crate::vendors::Outcome::PendingFetch(fetch)) => {
                    assert_eq!(fetch.api_path, path);
                    assert_eq!(fetch.vendor_user_id, user);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            notification(Vendor::Whoop, "not-a-number", &Listed { data_type: "sleep", object_id: "x".into(), kind: EventKind::Sleep }, now),
            None
        );
    }

    #[test]
    fn page_queries_carry_the_window_and_the_token() {
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z").unwrap().to_utc();
        let end = chrono::DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z").unwrap().to_utc();
        // A day either side: either date bound may exclude its own day.
        assert_eq!(page_query(Vendor::Oura, start, end, Some("t 1")), "start_date=2026-11-23&end_date=2026-11-27&next_token=t%201");
        assert_eq!(
            page_query(Vendor::Whoop, start, end, None),
            "start=2026-11-24T10%3A00%3A00.000Z&end=2026-11-26T10%3A00%3A00.000Z&limit=25"
        );
    }
}
