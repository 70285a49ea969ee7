//! Chaos on a 3-broker cluster: broker and processor failures under webhook load, and then the
//! proof that nothing acknowledged was lost or duplicated. (A measurement with a verdict; run it
//! with `scripts/chaos`, which brings up `scripts/stack up --brokers 3` and a release build.)
//!
//! Setup: the ingress and two processor instances (the de-duplication store taken out of the
//! topology, as in the crash tests, so only the transactions prevent duplicates), topics with
//! 3 copies and `min.insync.replicas` 2, and `CHAOS_RATE` (150) signed, distinct Terra webhooks
//! per second for at least `CHAOS_SECS` (150) and until 20 s after the last fault. (The issue's
//! 300/s is more than this 2-core machine serves with three brokers, two processors and the
//! rest of the stack on it: the ingress then refuses for overload, not for the faults.)
//!
//! Faults, each after the cluster has all three brokers again:
//!   two broker SIGKILLs, each broker restarted about 15 s later; a processor SIGKILL after each,
//!   restarted at once with the same instance id; one SIGTERM broker restart (controlled
//!   shutdown); a third processor SIGKILL.
//!
//! Verdict: every 2xx'd delivery is in `raw-webhooks` exactly once (read_committed), and every
//! raw record's event is in the output topic exactly once. Printed per fault: the refusal
//! window (first and last non-2xx answer after it), non-2xx answers by error code, latency p99,
//! and for processor kills the time until the restarted instance held tasks again.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use biometric_bridge::at_rest;
use biometric_bridge::config::KafkaArgs;
use biometric_bridge::event::{EventKind, Vendor};
use biometric_bridge::secret::Secret;
use biometric_bridge::topology::Topology;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;

const SECRET: &str = "chaos-terra-signing-secret-not-for-production";
/// KRaft's `broker.session.timeout.ms` default: how long the controller waits before fencing a
/// broker that stopped heartbeating, and so moving its partitions' leadership.
const FENCING: Duration = Duration::from_secs(9);

/// Opens the sealed raw records (the stack's key, the stack's database), for the proof.
fn opener() -> at_rest::BlockingReader {
    let runtime = Box::leak(Box::new(tokio::runtime::Runtime::new().unwrap()));
    let key = std::fs::read_to_string(data_encryption_key_file()).expect("the stack's data-encryption-key (scripts/chaos makes it)");
    let kek = at_rest::Kek::from_secrets(&Secret::new(key.trim()), None).unwrap();
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/stack env)");
    let pool = runtime.block_on(sqlx::PgPool::connect(&url)).expect("PostgreSQL");
    at_rest::BlockingReader { keys: Some(Arc::new(at_rest::DataKeys::new(pool, kek, Duration::ZERO))), handle: runtime.handle().clone() }
}

/// The stack's key-encryption key (shared with the demo, the bench and the tests).
fn data_encryption_key_file() -> PathBuf {
    root().join(".stack/data-encryption-key")
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One answered (or failed) webhook: when it was sent (since the start), its status, error code
/// and latency.
#[derive(Debug, Clone)]
struct Answer {
    sent: Duration,
    status: u16,
    code: String,
    latency: Duration,
}

#[derive(Debug, Clone)]
struct Fault {
    what: String,
    at: Duration,
    /// For a processor kill: the restarted instance's log and the moment of the restart.
    processor_log: Option<(PathBuf, chrono::DateTime<chrono::Utc>)>,
}

struct Cluster {
    brokers: usize,
    /// Nodes signalled and not yet restarted: not "up", even while the process still exits.
    restarting: Mutex<std::collections::HashSet<usize>>,
}

impl Cluster {
    fn pid(&self, node: usize) -> Option<i32> {
        let path = root().join(format!(".stack/kafka{node}/kafka{node}.pid"));
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    fn signal(&self, node: usize, signal: &str) {
        let pid = self.pid(node).unwrap_or_else(|| panic!("no pid file for kafka{node}: is `scripts/stack up --brokers 3` up?"));
        assert!(Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success(), "kill {signal} kafka{node}");
    }

    /// Starts `kafka<node>` again and waits until it answers (`scripts/stack up` blocks so).
    fn restart(&self, node: usize) {
        let status = Command::new(root().join("scripts/stack"))
            .args(["up", "--brokers", &self.brokers.to_string(), &format!("kafka{node}")])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "restarting kafka{node} failed");
    }

    fn running(&self, node: usize) -> bool {
        self.pid(node).is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    fn all_up(&self) -> bool {
        self.restarting.lock().unwrap().is_empty()
            && (1..=self.brokers)
                .all(|node| self.running(node) && std::net::TcpStream::connect(("127.0.0.1", 19092 + 100 * node as u16)).is_ok())
    }
}

struct Processors {
    namespace: String,
    topology: PathBuf,
    out: PathBuf,
    children: Mutex<HashMap<String, Child>>,
}

impl Processors {
    fn log(&self, instance: &str) -> PathBuf {
        self.out.join(format!("processor-{instance}.log"))
    }

    fn start(&self, instance: &str) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log(instance)).unwrap();
        let child = Command::new(root().join("target/release/biometric-bridge"))
            .args(["process", "--instance-id", instance, "--metrics-addr", "127.0.0.1:0", "--namespace", &self.namespace, "--topology"])
            .arg(&self.topology)
            .env("RUST_LOG", "info,rdkafka=warn")
            .env("DATA_ENCRYPTION_KEY_FILE", data_encryption_key_file())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.lock().unwrap().insert(instance.to_owned(), child);
    }

    fn kill(&self, instance: &str) {
        if let Some(mut child) = self.children.lock().unwrap().remove(instance) {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Processors {
    fn drop(&mut self) {
        for (_, mut child) in self.children.lock().unwrap().drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A distinct Terra sleep webhook, one of 100 users.
fn body(template: &serde_json::Value, index: usize) -> Vec<u8> {
    let mut json = template.clone();
    let user = format!("chaos-user-{}", index % 100);
    json["user"]["user_id"] = format!("terra-{user}").into();
    json["user"]["reference_id"] = user.into();
    json["data"][0]["metadata"]["summary_id"] = format!("chaos-{index:07}").into();
    serde_json::to_vec(&json).unwrap()
}

fn signature(timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends webhooks at `rate`/s until `stop` is set; every answer is recorded.
async fn load(
    addr: String,
    rate: f64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    started: Instant,
    answers: Arc<Mutex<Vec<(usize, Answer)>>>,
) -> usize {
    let template: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join("tests/fixtures/terra/sleep.json")).unwrap()).unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(256).build().unwrap();
    let mut index = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * rate) as usize;
        while index < due {
            let body = body(&template, index);
            let request = client
                .post(format!("http://{addr}/webhooks/terra"))
                .header("content-type", "application/json")
                .header("terra-signature", signature(chrono::Utc::now().timestamp(), &body))
                .header("x-terra-trace-id", format!("chaos-delivery-{index}"))
                .body(body);
            let answers = answers.clone();
            let sent = started.elapsed();
            let this = index;
            tasks.spawn(async move {
                let t0 = Instant::now();
                let (status, code) = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let code = if status >= 300 {
                            let json: serde_json::Value = response.json().await.unwrap_or_default();
                            json["error"].as_str().unwrap_or("?").to_owned()
                        } else {
                            String::new()
                        };
                        (status, code)
                    }
                    Err(error) => (0, if error.is_timeout() { "client_timeout".into() } else { "connection_error".into() }),
                };
                answers.lock().unwrap().push((this, Answer { sent, status, code, latency: t0.elapsed() }));
            });
            index += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while tasks.join_next().await.is_some() {}
    index
}

/// Reads `topics` from the beginning (read_committed) until nothing new came for `idle` and at
/// least `minimum` records arrived, or `timeout`. Returns (header value of `header`, body).
fn read_all(bootstrap: &str, topics: &[&str], header: &str, minimum: usize, idle: Duration, timeout: Duration) -> Vec<(String, Vec<u8>)> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("chaos-verify-{}", uuid::Uuid::new_v4().simple()))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(topics).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut last = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let value = message
                    .headers()
                    .and_then(|h| h.iter().find(|x| x.key == header).and_then(|x| x.value))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                out.push((value, message.payload().unwrap_or_default().to_vec()));
                last = Instant::now();
            }
            _ if out.len() >= minimum && last.elapsed() > idle => break,
            _ => {}
        }
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() { f64::NAN } else { sorted[((sorted.len() - 1) as f64 * p).round() as usize] }
}

/// The time of the first line containing `needle` after `since`, in a processor's text log.
fn logged_after(log: &Path, needle: &str, since: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().filter(|line| line.contains(needle)).find_map(|line| {
        let stamp = chrono::DateTime::parse_from_rfc3339(line.split_whitespace().next()?).ok()?.with_timezone(&chrono::Utc);
        (stamp > since).then_some(stamp)
    })
}

fn main() {
    biometric_bridge::connections::http::install_tls_provider();
    let rate: f64 = env_or("CHAOS_RATE", 150.0);
    let minimum = Duration::from_secs(env_or("CHAOS_SECS", 150));
    let bootstrap: String = env_or("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19192,127.0.0.1:19292,127.0.0.1:19392".to_owned());
    let cluster = Cluster { brokers: bootstrap.split(',').count(), restarting: Mutex::default() };
    assert!(
        cluster.brokers >= 3 && cluster.all_up(),
        "the chaos run needs `scripts/stack up --brokers 3` (KAFKA_BOOTSTRAP_SERVERS={bootstrap})"
    );
    let namespace = format!("chaos-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let out = std::env::temp_dir().join(&namespace);
    std::fs::create_dir_all(&out).unwrap();

    let text = biometric_bridge::topology::without_dedup_store(biometric_bridge::topology::DEFAULT_TOPOLOGY);
    let topology_path = out.join("topology.toml");
    std::fs::write(&topology_path, &text).unwrap();
    let topology = Topology::parse_namespaced(&text, "chaos", Some(&namespace)).unwrap();
    assert!(topology.dedup.is_none());
    let kafka = KafkaArgs::plaintext(bootstrap.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = runtime.block_on(biometric_bridge::kafka::admin::ensure_topics(&kafka, &topology.topics)).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let raw = topology.ingress_topic().to_owned();
    let events = topology.route(Vendor::Terra).to_owned();

    // The ingress, on a free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut ingress = Command::new(root().join("target/release/biometric-bridge"))
        .args(["ingress", "--http-addr", &addr, "--namespace", &namespace, "--topology"])
        .arg(&topology_path)
        .env("TERRA_SIGNING_SECRET", SECRET)
        .env("RUST_LOG", "info,rdkafka=warn")
        // Sealed at rest, as in production, under the stack's key (scripts/chaos makes it).
        .env("DATA_ENCRYPTION_KEY_FILE", data_encryption_key_file())
        // The load comes from one address: the per-client share of the in-flight limit (meant
        // for many senders) would refuse it for overload while a write waits on a failover.
        .env("MAX_IN_FLIGHT_PER_CLIENT", "0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(out.join("ingress.log")).unwrap())
        .spawn()
        .unwrap();
    let processors =
        Processors { namespace: namespace.clone(), topology: topology_path.clone(), out: out.clone(), children: Mutex::default() };
    processors.start("chaos-a");
    processors.start("chaos-b");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ingress_ready(&addr) {
        assert!(Instant::now() < deadline, "the ingress did not become ready; see {}", out.join("ingress.log").display());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(5)); // the processors join and restore

    println!(
        "chaos: {rate}/s signed Terra webhooks for at least {} s; {} brokers, RF 3, min ISR 2; ingress + 2 processors; logs in {}",
        minimum.as_secs(),
        cluster.brokers,
        out.display()
    );
    let started = Instant::now();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = runtime.spawn(load(addr.clone(), rate, stop.clone(), started, answers.clone()));

    // The fault schedule: (seconds after the start, action); a broker fault waits for all
    // brokers to be back first.
    let mut faults: Vec<Fault> = Vec::new();
    let wait_until = |at: u64| {
        while started.elapsed() < Duration::from_secs(at) {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let wait_all_brokers = || {
        while !cluster.all_up() {
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    std::thread::scope(|scope| {
        let schedule: [(u64, &str, usize); 6] = [
            (10, "kill-broker", 2),
            (30, "kill-processor", 0),
            (55, "kill-broker", 3),
            (80, "kill-processor", 1),
            (100, "term-broker", 1),
            (125, "kill-processor", 0),
        ];
        let mut restarts = Vec::new();
        for (at, action, target) in schedule {
            wait_until(at);
            match action {
                "kill-broker" | "term-broker" => {
                    wait_all_brokers();
                    let signal = if action == "kill-broker" { "-KILL" } else { "-TERM" };
                    faults.push(Fault { what: format!("{} kafka{target}", &signal[1..]), at: started.elapsed(), processor_log: None });
                    cluster.restarting.lock().unwrap().insert(target);
                    cluster.signal(target, signal);
                    let cluster = &cluster;
                    restarts.push(scope.spawn(move || {
                        // SIGKILL: down ~15 s; SIGTERM: a restart as soon as it has stopped.
                        let down = Instant::now();
                        while cluster.running(target) {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        if signal == "-KILL" {
                            std::thread::sleep(Duration::from_secs(15).saturating_sub(down.elapsed()));
                        }
                        cluster.restart(target);
                        cluster.restarting.lock().unwrap().remove(&target);
                    }));
                }
                _ => {
                    let instance = ["chaos-a", "chaos-b"][target];
                    faults.push(Fault {
                        what: format!("KILL processor {instance}"),
                        at: started.elapsed(),
                        processor_log: Some((processors.log(instance), chrono::Utc::now())),
                    });
                    processors.kill(instance);
                    processors.start(instance);
                }
            }
        }
        for restart in restarts {
            restart.join().unwrap();
        }
    });
    let last_fault = faults.last().map_or(Duration::ZERO, |f| f.at);
    let duration = minimum.max(last_fault + Duration::from_secs(20));
    wait_until(duration.as_secs());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total = runtime.block_on(sent).unwrap();
    let load_ended = Instant::now();
    let answers = answers.lock().unwrap().clone();

    // Per fault: what the vendors saw until the next fault.
    println!(
        "\n{:<24} {:>7} {:>10} {:>10} {:>8} {:>9}  non-2xx by code",
        "fault", "at (s)", "first (s)", "last (s)", "non-2xx", "p99 (ms)"
    );
    let mut verdicts = Vec::new();
    for (n, fault) in faults.iter().enumerate() {
        let end = faults.get(n + 1).map_or(duration, |next| next.at);
        let window: Vec<&Answer> = answers.iter().map(|(_, a)| a).filter(|a| a.sent >= fault.at && a.sent < end).collect();
        let refused: Vec<&&Answer> = window.iter().filter(|a| !(200..300).contains(&a.status)).collect();
        let first = refused.iter().map(|a| (a.sent + a.latency).saturating_sub(fault.at)).min();
        let last = refused.iter().map(|a| (a.sent + a.latency).saturating_sub(fault.at)).max();
        let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
        for answer in &refused {
            *by_code.entry(format!("{} {}", answer.status, answer.code)).or_default() += 1;
        }
        let mut latencies: Vec<f64> = window.iter().map(|a| a.latency.as_secs_f64() * 1000.0).collect();
        latencies.sort_by(f64::total_cmp);
        let secs = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64()));
        println!(
            "{:<24} {:>7.1} {:>10} {:>10} {:>8} {:>9.0}  {:?}",
            fault.what,
            fault.at.as_secs_f64(),
            secs(first),
            secs(last),
            refused.len(),
            percentile(&latencies, 0.99),
            by_code
        );
        let window_secs = match (first, last) {
            (Some(first), Some(last)) => (last - first).as_secs_f64(),
            _ => 0.0,
        };
        if fault.what.starts_with("KILL kafka") {
            let ok = last.is_none_or(|last| last <= FENCING + Duration::from_secs(5));
            verdicts.push(format!(
                "{}: 2xx again {} s after the kill (target: fencing {} s + 5 s): {}",
                fault.what,
                secs(last),
                FENCING.as_secs(),
                if ok { "met" } else { "NOT met" }
            ));
        } else if fault.what.starts_with("TERM kafka") {
            let ok = window_secs <= 1.0;
            verdicts.push(format!(
                "{}: refusal window {window_secs:.1} s (target ≤ 1 s): {}",
                fault.what,
                if ok { "met" } else { "NOT met" }
            ));
        } else if let Some((log, since)) = &fault.processor_log {
            let assigned = logged_after(log, "Tasks assigned.", *since);
            let took = assigned.map(|at| (at - *since).num_milliseconds() as f64 / 1000.0);
            verdicts.push(format!(
                "{}: the restarted instance held tasks again after {} s",
                fault.what,
                took.map_or("?".to_owned(), |t| format!("{t:.1}"))
            ));
        }
    }

    // The proof.
    let acknowledged: Vec<usize> = answers.iter().filter(|(_, a)| (200..300).contains(&a.status)).map(|(i, _)| *i).collect();
    let raw_records = read_all(&bootstrap, &[&raw], "delivery-id", acknowledged.len(), Duration::from_secs(10), Duration::from_secs(300));
    let mut raw_counts: HashMap<String, usize> = HashMap::new();
    let mut expected_events: Vec<String> = Vec::new();
    let opener = opener();
    for (delivery, body) in &raw_records {
        *raw_counts.entry(delivery.clone()).or_default() += 1;
        let body = match opener.read(body) {
            Ok(at_rest::Reading::Opened(opened)) => opened.body,
            Ok(at_rest::Reading::Plain) => body.clone(),
            Ok(at_rest::Reading::Erased { key_id }) => panic!("delivery {delivery}: data key {key_id} was erased"),
            Err(error) => panic!("delivery {delivery}: {error}"),
        };
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(summary) = json["data"][0]["metadata"]["summary_id"].as_str() {
            expected_events.push(biometric_bridge::vendors::event_id(Vendor::Terra, EventKind::Sleep, summary));
        }
    }
    let acknowledged_ids: std::collections::HashSet<String> = acknowledged.iter().map(|i| format!("chaos-delivery-{i}")).collect();
    let lost = acknowledged_ids.iter().filter(|id| !raw_counts.contains_key(*id)).count();
    let duplicated_ids: Vec<(&String, &usize)> = raw_counts.iter().filter(|(_, n)| **n > 1).collect();
    let acknowledged_duplicated = duplicated_ids.iter().filter(|(id, _)| acknowledged_ids.contains(*id)).count();
    let refused_duplicated = duplicated_ids.len() - acknowledged_duplicated;
    let landed_after_refusal = raw_counts.keys().filter(|id| !acknowledged_ids.contains(*id)).count();
    std::fs::write(out.join("raw-duplicates.txt"), format!("{duplicated_ids:?}\n")).unwrap();

    let event_records =
        read_all(&bootstrap, &[&events], "event-id", expected_events.len(), Duration::from_secs(15), Duration::from_secs(600));
    let caught_up = load_ended.elapsed();
    // Exactly once per raw record: an event id appears as often as raw records carry its summary.
    let mut wanted: HashMap<String, usize> = HashMap::new();
    for id in &expected_events {
        *wanted.entry(id.clone()).or_default() += 1;
    }
    let mut event_counts: HashMap<String, usize> = HashMap::new();
    for (id, _) in &event_records {
        *event_counts.entry(id.clone()).or_default() += 1;
    }
    let missing = wanted.iter().filter(|(id, n)| event_counts.get(*id).copied().unwrap_or(0) < **n).count();
    let events_duplicated = wanted.iter().filter(|(id, n)| event_counts.get(*id).copied().unwrap_or(0) > **n).count();
    let unexpected = event_counts.keys().filter(|id| !wanted.contains_key(*id)).count();

    let _ = ingress.kill();
    let _ = ingress.wait();
    drop(processors);

    println!();
    for verdict in &verdicts {
        println!("{verdict}");
    }
    println!(
        "\nsent {total}, acknowledged (2xx) {}, refused {}; raw-webhooks holds {} records ({} written although refused, e.g. a 503 after the broker took it)",
        acknowledged.len(),
        answers.len() - acknowledged.len(),
        raw_records.len(),
        landed_after_refusal
    );
    println!(
        "raw: {lost} acknowledged deliveries lost, {acknowledged_duplicated} acknowledged deliveries written twice; {refused_duplicated} refused (503) deliveries written twice"
    );
    println!(
        "events: {} read, {missing} raw records without their event, {events_duplicated} with more than one, {unexpected} unexpected (read back {:.0} s after the load ended)",
        event_records.len(),
        caught_up.as_secs_f64()
    );
    let pass = lost == 0 && acknowledged_duplicated == 0 && missing == 0 && events_duplicated == 0 && unexpected == 0;
    println!("{}", if pass { "PASS: nothing acknowledged lost or duplicated; every raw record has exactly one event" } else { "FAIL" });
    if !pass {
        std::process::exit(1);
    }
}

/// Whether `GET /ready` of the ingress answers 200 (a tiny HTTP/1.0 exchange, blocking).
fn ingress_ready(addr: &str) -> bool {
    use std::io::{Read, Write};
    let exchange = || -> std::io::Result<bool> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /ready HTTP/1.0\r\nhost: chaos\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(&head[9..12] == b"200")
    };
    exchange().unwrap_or(false)
}
