//! How long can the processor be down before Terra's pointers expire? (A measurement, not a test.)
//!
//! Terra's Kafka destination publishes pointers whose pre-signed URL works for `expires_in`
//! (600 s) after Terra sent it. While the processor is down they wait in `terra-direct`; after a
//! restart the waiting pointers are downloaded from `first` seconds after it (start-up, group
//! join, store restore, the re-key and normalize hops) at the stage's download rate `c`, while new
//! ones keep arriving at `r`. They are not downloaded strictly oldest first (the re-key spreads
//! them over partitions), so the worst case is the oldest downloaded last, at an age of
//! D + first + r·D/c. The processor may therefore be down for
//!
//!   D_max = (expires_in − first − the usual age at download) / (1 + r/c)
//!
//! This measures `first`, `c` and the usual age: pointers are published at `BENCH_RATE`/s (one
//! distinct payload each, behind a storage stand-in answering after `BENCH_STORAGE_MS`), the
//! processor runs `BENCH_WARMUP_SECS`, is SIGKILLed, stays down `BENCH_DOWN_SECS`, is restarted,
//! and publishing goes on for `BENCH_AFTER_SECS`. Every downloaded payload's age (its
//! `downloaded-at` header minus the moment it was published) is read back from the raw topic.
//! With `BENCH_EXPIRES_SECS` below the downtime the pointers older than it must come out as
//! `terra_payload_expired` dead letters instead: the prediction checked from the other side.
//!
//! Run with `scripts/bench-terra-downtime` (stack up, release build, then this).

#[path = "../tests/integration/terra_sim.rs"]
mod terra_sim;

/// What `terra_sim` needs of the integration tests' helpers.
mod helpers {
    pub fn unique(prefix: &str) -> String {
        format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
    }
    pub fn now_secs() -> i64 {
        chrono::Utc::now().timestamp()
    }
    pub fn terra_signature(_secret: &str, _timestamp: i64, _body: &[u8]) -> String {
        unreachable!("the benchmark never asks Terra's API to re-send")
    }
}

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use biometric_bridge::config::KafkaArgs;
use biometric_bridge::topology::Topology;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use terra_sim::TerraSim;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A Terra sleep webhook for pointer `index`, of one of 50 users.
fn payload(template: &serde_json::Value, index: usize) -> Vec<u8> {
    let mut json = template.clone();
    let user = format!("downtime-user-{}", index % 50);
    json["user"]["user_id"] = format!("terra-{user}").into();
    json["user"]["reference_id"] = user.into();
    json["data"][0]["metadata"]["summary_id"] = format!("downtime-{index:06}").into();
    serde_json::to_vec(&json).unwrap()
}

fn index_of(body: &[u8]) -> Option<usize> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    json["data"][0]["metadata"]["summary_id"].as_str()?.strip_prefix("downtime-")?.parse().ok()
}

struct Run {
    topology_path: PathBuf,
    namespace: String,
    log: PathBuf,
}

impl Run {
    fn processor(&self) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        Command::new(root().join("target/release/biometric-bridge"))
            .args(["process", "--instance-id", "downtime", "--metrics-addr", "127.0.0.1:0", "--namespace", &self.namespace, "--topology"])
            .arg(&self.topology_path)
            .env("RUST_LOG", std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .env("TERRA_PAYLOAD_HOSTS", "127.0.0.1")
            .env("INSECURE_TERRA_PAYLOAD_HTTP", "true")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let rate: f64 = env_or("BENCH_RATE", 20.0);
    let storage_ms: u64 = env_or("BENCH_STORAGE_MS", 50);
    let warmup = Duration::from_secs(env_or("BENCH_WARMUP_SECS", 20));
    let down = Duration::from_secs(env_or("BENCH_DOWN_SECS", 60));
    let after = Duration::from_secs(env_or("BENCH_AFTER_SECS", 40));
    let expires_in: u64 = env_or("BENCH_EXPIRES_SECS", 600);

    let namespace = format!("downtime-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let text = std::fs::read_to_string(root().join("topologies/biometric.toml")).unwrap().replace("partitions = 10", "partitions = 4");
    let topology_path = std::env::temp_dir().join(format!("bench-topology-{namespace}.toml"));
    std::fs::write(&topology_path, &text).unwrap();
    let topology = Topology::parse_namespaced(&text, "bench", Some(&namespace)).unwrap();
    let kafka = KafkaArgs::plaintext(env_or("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092".to_owned()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(biometric_bridge::kafka::admin::ensure_topics(&kafka, &topology.topics)).unwrap();
    let topic = |base: &str| topology.topics.iter().find(|t| t.name == format!("{base}-{namespace}")).unwrap().name.clone();
    let (direct, raw, dlq) = (topic("terra-direct"), topic("raw-webhooks"), topic("raw-webhooks.dlq"));

    let sim = TerraSim::start();
    sim.set_storage_delay(Duration::from_millis(storage_ms));
    let template: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join("tests/fixtures/terra/sleep.json")).unwrap()).unwrap();
    let producer: BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &kafka.bootstrap_servers).set("linger.ms", "5").create().unwrap();
    let run = Run { topology_path, namespace: namespace.clone(), log: std::env::temp_dir().join(format!("bench-{namespace}.log")) };

    println!(
        "terra pointers: {rate}/s, storage answers in {storage_ms} ms, expires_in {expires_in} s; processor up {} s, down {} s, up again {} s",
        warmup.as_secs(),
        down.as_secs(),
        after.as_secs()
    );
    let mut published: HashMap<usize, i64> = HashMap::new();
    let mut processor = Some(run.processor());
    let started = Instant::now();
    let (kill_at, restart_at, stop_at) = (warmup, warmup + down, warmup + down + after);
    let (mut killed_ms, mut restarted_ms) = (0i64, 0i64);
    let mut index = 0usize;
    while started.elapsed() < stop_at {
        let elapsed = started.elapsed();
        if elapsed >= kill_at && killed_ms == 0 {
            let mut child = processor.take().unwrap();
            child.kill().unwrap();
            child.wait().unwrap();
            killed_ms = now_ms();
        }
        if elapsed >= restart_at && restarted_ms == 0 {
            processor = Some(run.processor());
            restarted_ms = now_ms();
        }
        let due = (elapsed.as_secs_f64() * rate) as usize;
        while index < due {
            // Terra's lifetime of the URL starts when it publishes; the processor counts from the
            // record's timestamp, which is now.
            let url = sim.store_payload(payload(&template, index), Duration::from_secs(expires_in));
            let pointer = TerraSim::pointer(&url, expires_in);
            published.insert(index, now_ms());
            producer.send(BaseRecord::<(), [u8]>::to(&direct).payload(&pointer)).unwrap();
            index += 1;
        }
        producer.poll(Duration::from_millis(5));
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let total = index;

    // Read the results back: downloaded payloads from the raw topic, expired pointers from the DLQ.
    let reader: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("group.id", format!("bench-reader-{namespace}"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader.subscribe(&[&raw, &dlq]).unwrap();
    let mut ages: Vec<(i64, f64)> = Vec::new(); // (published ms, age at download s)
    let mut expired = 0usize;
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    while ages.len() + expired < total && Instant::now() < deadline {
        let Some(Ok(message)) = reader.poll(Duration::from_millis(200)) else { continue };
        let header = |name: &str| {
            message
                .headers()
                .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value).map(|v| String::from_utf8_lossy(v).into_owned()))
        };
        if message.topic() == dlq {
            if header("error-class").as_deref() == Some("terra_payload_expired") {
                expired += 1;
            }
            continue;
        }
        let (Some(downloaded), Some(index)) =
            (header("downloaded-at").and_then(|v| v.parse::<i64>().ok()), message.payload().and_then(index_of))
        else {
            continue;
        };
        if seen.insert(index) {
            let at = published[&index];
            ages.push((at, (downloaded - at) as f64 / 1000.0));
        }
    }
    if let Some(mut child) = processor {
        let _ = child.kill();
        let _ = child.wait();
    }

    let steady: Vec<f64> = {
        // Published in the second half of the warm-up (the processor has started) and downloaded
        // before the kill: a pointer's age while the processor runs.
        let settled = killed_ms - warmup.as_millis() as i64 / 2;
        let mut v: Vec<f64> =
            ages.iter().filter(|(at, age)| *at >= settled && (*at as f64 + age * 1000.0) < killed_ms as f64).map(|(_, age)| *age).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let backlog: Vec<(i64, f64)> = ages.iter().copied().filter(|(at, _)| *at >= killed_ms && *at < restarted_ms).collect();
    let oldest = backlog.iter().map(|(_, age)| *age).fold(f64::NAN, f64::max);
    let downtime = (restarted_ms - killed_ms) as f64 / 1000.0;
    // When each waiting pointer was downloaded, in seconds after the restart.
    let after_restart = |(at, age): &(i64, f64)| (*at as f64 + age * 1000.0 - restarted_ms as f64) / 1000.0;
    let first = backlog.iter().map(after_restart).fold(f64::NAN, f64::min);
    let last = backlog.iter().map(after_restart).fold(f64::NAN, f64::max);
    let drain = backlog.len() as f64 / (last - first).max(1e-9);
    let mut timeline = vec![0usize; last.max(0.0) as usize + 1];
    for pointer in &backlog {
        timeline[after_restart(pointer).max(0.0) as usize] += 1;
    }

    println!("published {total} pointers: {} downloaded, {expired} expired (dead-lettered terra_payload_expired)", ages.len());
    println!(
        "while running: {} pointers, age at download p50 {:.2} s, p99 {:.2} s",
        steady.len(),
        percentile(&steady, 0.5),
        percentile(&steady, 0.99)
    );
    println!(
        "during {downtime:.1} s down: {} pointers waited; downloads from {first:.1} s to {last:.1} s after the restart ({drain:.0}/s; arrivals {rate}/s); the oldest was {oldest:.1} s old",
        backlog.len()
    );
    println!("backlog downloads per second after the restart: {timeline:?}");
    // The waiting pointers are downloaded between `first` and `last` after the restart, not
    // strictly oldest first (the re-key spreads them over partitions), so the worst case is the
    // oldest downloaded last: D + first + r·D / drain < expires_in - the usual age.
    let usual = percentile(&steady, 0.99);
    let d_max = |expires: f64| (expires - first - usual) / (1.0 + rate / drain);
    println!(
        "=> D_max = (expires_in - {first:.1} s - {usual:.1} s) / (1 + {rate}/{drain:.0}) = {:.0} s with Terra's 600 s Kafka pointers, {:.0} s with 300 s webhook pointers",
        d_max(600.0),
        d_max(300.0)
    );
    assert_eq!(ages.len() + expired, total, "every pointer is downloaded or dead-lettered (log: {})", run.log.display());
}
