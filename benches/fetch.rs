//! Fetch-stage benchmark (not a test): notifications/s through the exactly-once processor's fetch
//! stage when every vendor API call takes `BENCH_LATENCY_MS`, for several `FETCH_CONCURRENCY`
//! values in the same run. With a sequential fetch the rate is bound by 1 / latency; the stage
//! overlaps up to FETCH_CONCURRENCY calls while still writing results in offset order, so the
//! rate should grow with it until Kafka, the loop or the simulator saturates.
//!
//! Run with `scripts/bench-fetch` (stack up, release build, then this). Knobs: BENCH_RECORDS
//! (default 1 000), BENCH_LATENCY_MS (25), BENCH_CONCURRENCY (a list, default "1,8,32").

#[path = "../tests/integration/vendor_sim.rs"]
mod vendor_sim;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use biometric_bridge::config::KafkaArgs;
use biometric_bridge::connections::{ConnectionStore, TokenCipher, TokenSet};
use biometric_bridge::event::Vendor;
use biometric_bridge::secret::Secret;
use biometric_bridge::topology::Topology;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use vendor_sim::{Fault, SimVendor, VendorSim};

const USERS: usize = 40;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One measured configuration: a fresh namespace, simulator, connections and processor.
fn run(records: usize, latency: Duration, concurrency: usize, runtime: &tokio::runtime::Runtime) -> f64 {
    let namespace = format!("fetchbench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let text = std::fs::read_to_string(root().join("topologies/biometric.toml")).unwrap().replace("partitions = 10", "partitions = 4");
    let path = std::env::temp_dir().join(format!("bench-topology-{namespace}.toml"));
    std::fs::write(&path, &text).unwrap();
    let topology = Topology::parse_namespaced(&text, "bench", Some(&namespace)).unwrap();
    let kafka = KafkaArgs::plaintext(env_or("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"));
    runtime.block_on(biometric_bridge::kafka::admin::ensure_topics(&kafka, &topology.topics)).unwrap();

    // Connections (a key of this run) and the records behind the notifications.
    let sim = VendorSim::start();
    let key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let database = env_or("DATABASE_URL", "postgres://bridge:bridge@127.0.0.1:5432/biometric_bridge");
    let users: Vec<String> = (0..USERS).map(|i| format!("{namespace}-user-{i}")).collect();
    runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&database).await.unwrap();
        let store = ConnectionStore::new(pool, TokenCipher::from_secret(&Secret::new(key.clone())).unwrap());
        for user in &users {
            let (access, refresh) = sim.add_user(SimVendor::Oura, user, 86_400);
            let tokens = TokenSet {
                access_token: Secret::new(access),
                refresh_token: Some(Secret::new(refresh)),
                expires_at: Some(chrono::Utc::now() + chrono::Duration::days(1)),
                scopes: None,
            };
            store.upsert(Vendor::Oura, user, &format!("athlete-{user}"), &tokens).await.unwrap();
        }
    });
    for index in 0..records {
        let id = format!("bench-sleep-{index:05}");
        sim.put_record(SimVendor::Oura, &users[index % USERS], "sleep", &id, VendorSim::oura_sleep(&id, "2026-11-20", 50.0));
    }
    sim.inject(SimVendor::Oura, "/v2/usercollection/sleep/", vec![Fault::Slow(latency); records * 2]);

    // Notifications, preloaded.
    let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &kafka.bootstrap_servers).create().unwrap();
    let raw = &topology.sources[0].topic;
    for index in 0..records {
        let user = &users[index % USERS];
        let body = serde_json::json!({"event_type": "create", "data_type": "sleep", "object_id": format!("bench-sleep-{index:05}"),
            "event_time": "2026-11-20T09:00:00+00:00", "user_id": user})
        .to_string();
        let key = format!("oura:{user}");
        let received_at = chrono::Utc::now().timestamp_millis().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "vendor", value: Some("oura") })
            .insert(Header { key: "received-at", value: Some(&received_at) });
        producer.send(BaseRecord::to(raw).key(&key).payload(&body).headers(headers)).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    let events_topic = topology.routes.iter().find(|r| r.vendor.is_none()).unwrap().topic.clone();
    let reader: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("group.id", format!("bench-reader-{namespace}"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader.subscribe(&[&events_topic]).unwrap();

    let binary = root().join("target/release/biometric-bridge");
    assert!(binary.exists(), "build the release binary first: cargo build --release");
    let log = std::env::temp_dir().join(format!("bench-{namespace}.log"));
    let mut child = Command::new(binary)
        .args(["process", "--instance-id", "bench", "--metrics-addr", "127.0.0.1:0", "--namespace", &namespace, "--topology"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .env("TOKEN_ENCRYPTION_KEY", &key)
        .env("OURA_CLIENT_ID", sim.client_id(SimVendor::Oura))
        .env("OURA_CLIENT_SECRET", sim.client_secret(SimVendor::Oura))
        .env("OURA_API_BASE", sim.oura_base())
        .env("OURA_TOKEN_URL", sim.oura_token_url())
        .env("OURA_RATE_LIMIT", "1000000/1")
        .env("FETCH_CONCURRENCY", concurrency.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut first, mut last, mut count) = (None, Instant::now(), 0usize);
    while count < records && Instant::now() < deadline {
        if let Some(Ok(_)) = reader.poll(Duration::from_millis(100)) {
            let at = Instant::now();
            first.get_or_insert(at);
            last = at;
            count += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(count, records, "only {count} of {records} events (log: {})", log.display());
    (count - 1) as f64 / (last - first.unwrap()).as_secs_f64().max(1e-9)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    biometric_bridge::connections::http::install_tls_provider();
    let records: usize = env_or("BENCH_RECORDS", "1000").parse().unwrap();
    let latency = Duration::from_millis(env_or("BENCH_LATENCY_MS", "25").parse().unwrap());
    let levels: Vec<usize> = env_or("BENCH_CONCURRENCY", "1,8,32").split(',').map(|v| v.trim().parse().unwrap()).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!("fetch stage: {records} Oura notifications, {USERS} users, 4 partitions, every API call {} ms", latency.as_millis());
    println!("{:>12} {:>14} {:>22}", "concurrency", "events/s", "bound c / latency");
    for concurrency in levels {
        let rate = run(records, latency, concurrency, &runtime);
        let bound = concurrency as f64 / latency.as_secs_f64();
        println!("{concurrency:>12} {rate:>14.0} {bound:>22.0}");
    }
}
