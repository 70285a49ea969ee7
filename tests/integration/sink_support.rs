//! Support for the PostgreSQL sink tests: a database of their own (created, migrated, dropped),
//! events encoded with the registered schema and produced in Kafka transactions, the sink as a
//! child process of the built binary, and the "caught up" check (stored offsets = end offsets).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use biometric_bridge::event::avro::{EventCodec, register};
use biometric_bridge::event::{BiometricEvent, EventKind, HrvWindow, Priority, Severity, Trigger, Vendor};
use biometric_bridge::vendors::{RawInput, base_event};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Row};

use super::helpers::{self, ProcessorGuard, TestTopology};

pub type Offsets = BTreeMap<(String, i32), i64>;

/// A database of the test's own, so `count(*)` and `sink_offsets` hold only its rows.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn create() -> TestDb {
        helpers::require_stack();
        let name = format!("bb_sink_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let admin = PgPool::connect(&helpers::database_url()).await.expect("connect to PostgreSQL");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("CREATE DATABASE");
        admin.close().await;
        let url = format!("{}/{name}", helpers::database_url().rsplit_once('/').unwrap().0);
        let pool = PgPoolOptions::new().max_connections(2).connect(&url).await.unwrap();
        biometric_bridge::db::MIGRATOR.run(&pool).await.unwrap();
        TestDb { name, url, pool }
    }

    /// Runs `sql` on the shared database (administration of this one).
    pub async fn admin(&self, sql: String) {
        let admin = PgPool::connect(&helpers::database_url()).await.unwrap();
        sqlx::query(AssertSqlSafe(sql)).execute(&admin).await.unwrap();
        admin.close().await;
    }

    pub async fn count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM biometric_events").fetch_one(&self.pool).await.unwrap()
    }

    pub async fn offsets(&self, sink: &str) -> Offsets {
        let rows: Vec<(String, i32, i64)> = sqlx::query_as("SELECT topic, partition, next_offset FROM sink_offsets WHERE sink = $1")
            .bind(sink)
            .fetch_all(&self.pool)
            .await
            .unwrap();
        rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect()
    }

    pub async fn row(&self, event_id: &str) -> Option<PgRow> {
        sqlx::query("SELECT * FROM biometric_events WHERE event_id = $1::uuid").bind(event_id).fetch_optional(&self.pool).await.unwrap()
    }
}

/// Drops the database even when the test failed (on its own thread and runtime: `Drop` cannot
/// await, and the test's runtime may be unwinding).
impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropping = std::thread::spawn(move || -> sqlx::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let admin = PgPool::connect(&helpers::database_url()).await?;
                sqlx::query(AssertSqlSafe(sql)).execute(&admin).await?;
                admin.close().await;
                Ok(())
            })
        });
        if let Ok(Err(error)) = dropping.join() {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// A test event; `version` shows in the lineage offset, the steps and the HRV, so a row tells
/// which version of its event it holds. Even versions carry a trigger.
pub fn event(id: &str, user: &str, version: i64) -> BiometricEvent {
    let triggers = if version % 2 == 0 {
        vec![Trigger {
            trigger_type: "URGENT_INTERVENTION".into(),
            severity: Severity::Critical,
            metric: "hrv_rmssd_ms".into(),
            value: 20.0 + version as f64,
            threshold: 25.0,
            recommendation: Some("immediate_stress_protocol".into()),
            baseline_mean: None,
            baseline_sd: None,
            z_score: Some(-1.5),
            contributions: Vec::new(),
        }]
    } else {
        Vec::new()
    };
    let delivery_id = format!("d-{id}");
    let input = RawInput {
        vendor: Vendor::Terra,
        body: b"{}",
        received_at_ms: 1_764_142_260_123,
        vendor_user_id: None,
        delivery_id: Some(&delivery_id),
        trace_id: None,
        source_topic: "raw-webhooks",
        source_partition: 0,
        source_offset: version,
    };
    let mut event = base_event(&input, EventKind::Sleep, id, &format!("terra-{user}"), 1_764_115_200_000 + version * 1_000);
    event.event_id = id.to_owned();
    event.user_id = user.to_owned();
    event.source_device = Some("GARMIN".into());
    event.vendor_record_id = Some(format!("summary-{id}"));
    event.measured_until = Some(1_764_142_200_000);
    event.local_date = Some("2025-11-26".into());
    event.hrv_rmssd_ms = Some(20.0 + version as f64);
    event.hrv_window = Some(HrvWindow::NightlyMean);
    event.heart_rate_avg_bpm = Some(52.5);
    event.sleep_total_seconds = Some(25_200);
    event.steps = Some(version);
    event.priority = Priority::from_triggers(&triggers);
    event.triggers = triggers;
    event.trace_id = Some(format!("{version:032x}"));
    event
}

/// Checks every column of `row` against `event`, straight from the event (not through the
/// sink's own mapping).
pub fn assert_row_matches(row: &PgRow, event: &BiometricEvent) {
    let id = &event.event_id;
    let millis = |column: &str| row.get::<chrono::DateTime<chrono::Utc>, _>(column).timestamp_millis();
    assert_eq!(row.get::<uuid::Uuid, _>("event_id").to_string(), *id);
    assert_eq!(row.get::<String, _>("user_id"), event.user_id, "{id}");
    assert_eq!(row.get::<String, _>("vendor"), event.vendor.symbol(), "{id}");
    assert_eq!(row.get::<String, _>("vendor_user_id"), event.vendor_user_id, "{id}");
    assert_eq!(row.get::<Option<String>, _>("source_device"), event.source_device, "{id}");
    assert_eq!(row.get::<String, _>("kind"), event.kind.symbol(), "{id}");
    assert_eq!(millis("measured_at"), event.measured_at, "{id}");
    let until: Option<chrono::DateTime<chrono::Utc>> = row.get("measured_until");
    assert_eq!(until.map(|at| at.timestamp_millis()), event.measured_until, "{id}");
    let local_date: Option<chrono::NaiveDate> = row.get("local_date");
    assert_eq!(local_date.map(|d| d.to_string()), event.local_date, "{id}");
    assert_eq!(millis("received_at"), event.received_at, "{id}");
    assert_eq!(row.get::<Option<f64>, _>("hrv_rmssd_ms"), event.hrv_rmssd_ms, "{id}");
    assert_eq!(row.get::<Option<f64>, _>("hrv_sdnn_ms"), event.hrv_sdnn_ms, "{id}");
    assert_eq!(row.get::<String, _>("priority"), event.priority.symbol(), "{id}");
    let triggers: serde_json::Value = row.get("triggers");
    assert_eq!(triggers, serde_json::to_value(&event.triggers).unwrap(), "{id}");
    let metrics: serde_json::Value = row.get("metrics");
    let serde_json::Value::Object(fields) = serde_json::to_value(event).unwrap() else { unreachable!() };
    let mut present = 0;
    for name in biometric_bridge::sink::postgres::rows::METRIC_FIELDS {
        let expected = fields.get(name).filter(|value| !value.is_null());
        assert_eq!(metrics.get(name), expected, "{id}: metric {name}");
        present += usize::from(expected.is_some());
    }
    assert_eq!(metrics.as_object().unwrap().len(), present, "{id}: only the non-null metrics: {metrics}");
    assert_eq!(row.get::<Option<String>, _>("trace_id"), event.trace_id, "{id}");
    assert_eq!(row.get::<String, _>("source_topic"), event.lineage.source_topic, "{id}");
    assert_eq!(row.get::<i32, _>("source_partition"), event.lineage.source_partition, "{id}");
    assert_eq!(row.get::<i64, _>("source_offset"), event.lineage.source_offset, "{id}");
}

/// Produces events to the output topics the way the processor does: Avro with the registered
/// schema, keyed by user, inside Kafka transactions.
pub struct EventProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
    codecs: BTreeMap<String, EventCodec>,
}

/// One record to produce: an event, or raw bytes that are not one. (Test data: the size of an
/// unboxed event does not matter.)
#[allow(clippy::large_enum_variant)]
pub enum Out {
    Event(String, BiometricEvent),
    Garbage(String, Vec<u8>),
}

impl EventProducer {
    pub async fn new(topics: &[String]) -> EventProducer {
        biometric_bridge::connections::http::install_tls_provider();
        let settings = SrSettings::new(helpers::registry_url());
        let mut codecs = BTreeMap::new();
        for topic in topics {
            let id = register(&settings, &format!("{topic}-value")).await.expect("register the event schema");
            codecs.insert(topic.clone(), EventCodec::new(id));
        }
        let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", helpers::bootstrap())
            .set("transactional.id", helpers::unique("sink-test-producer"))
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        tokio::task::block_in_place(|| producer.init_transactions(Duration::from_secs(30))).unwrap();
        EventProducer { producer, codecs }
    }

    /// `event` as the processor would write it to `topic`.
    pub fn encode(&self, topic: &str, event: &BiometricEvent) -> Vec<u8> {
        self.codecs[topic].encode(event).unwrap()
    }

    /// Sends `records` in one transaction, committed or aborted.
    pub fn transaction(&self, records: &[Out], commit: bool) {
        tokio::task::block_in_place(|| {
            self.producer.begin_transaction().unwrap();
            for record in records {
                let (topic, key, payload, id) = match record {
                    Out::Event(topic, event) => (topic, event.user_id.clone(), self.encode(topic, event), event.event_id.clone()),
                    Out::Garbage(topic, bytes) => (topic, "garbage".to_owned(), bytes.clone(), String::new()),
                };
                let headers = OwnedHeaders::new().insert(Header { key: "event-id", value: Some(id.as_str()) });
                let mut base = BaseRecord::to(topic).key(&key).payload(&payload).headers(headers);
                loop {
                    match self.producer.send(base) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            std::thread::sleep(Duration::from_millis(10));
                            base = back;
                        }
                    }
                }
            }
            if commit {
                self.producer.commit_transaction(Duration::from_secs(30)).unwrap();
            } else {
                self.producer.flush(Duration::from_secs(30)).unwrap();
                self.producer.abort_transaction(Duration::from_secs(30)).unwrap();
            }
        });
    }
}

/// The end offset (high watermark) of every non-empty partition of `topics`.
pub fn end_offsets(topics: &[String]) -> Offsets {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).create().unwrap();
    let mut ends = Offsets::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        for partition in metadata.topics()[0].partitions() {
            let (_, high) = consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(10)).unwrap();
            if high > 0 {
                ends.insert((topic.clone(), partition.id()), high);
            }
        }
    }
    ends
}

/// Waits until the sink's stored offsets equal the topics' end offsets; the last seen offsets
/// on timeout.
pub async fn wait_caught_up(db: &TestDb, sink: &str, topics: &[String], timeout: Duration) -> Result<(), (Offsets, Offsets)> {
    let deadline = Instant::now() + timeout;
    loop {
        let ends = tokio::task::block_in_place(|| end_offsets(topics));
        let stored: Offsets = db.offsets(sink).await.into_iter().filter(|(_, next)| *next > 0).collect();
        if stored == ends {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err((stored, ends));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The sink as a child process (killed when dropped, like the processor's).
pub fn spawn_sink(topology: &TestTopology, db: &TestDb, sink: &str, batch_size: usize) -> ProcessorGuard {
    let log = std::env::temp_dir().join(format!("bb-sink-{sink}.log"));
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"))
        .args(["sink", "postgres", "--topology"])
        .arg(&topology.path)
        .args(["--sink-name", sink, "--metrics-addr", "127.0.0.1:0"])
        .env("SINK_BATCH_SIZE", batch_size.to_string())
        .env("SINK_BATCH_MS", "100")
        .env("RUST_LOG", std::env::var("TEST_SINK_LOG").unwrap_or_else(|_| "info".into()))
        .env("KAFKA_BOOTSTRAP_SERVERS", helpers::bootstrap())
        .env("SCHEMA_REGISTRY_URL", helpers::registry_url())
        .env("DATABASE_URL", &db.url)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn the sink");
    ProcessorGuard { child, log }
}

/// The whole log of a child process.
pub fn log_text(process: &ProcessorGuard) -> String {
    std::fs::read_to_string(&process.log).unwrap_or_default()
}

/// SIGTERM, then the exit status (at most 20 s).
pub fn terminate(process: &mut ProcessorGuard) -> std::process::ExitStatus {
    Command::new("kill").args(["-TERM", &process.child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the sink did not stop on SIGTERM:\n{}", log_text(process));
        std::thread::sleep(Duration::from_millis(100));
    }
}
