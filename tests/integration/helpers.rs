//! Test harness: the real stack (Kafka, schema registry, PostgreSQL, Redis from
//! `scripts/stack up`), isolated per test by unique topic names, application id and group.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use biometric_bridge::config::KafkaArgs;
use biometric_bridge::event::BiometricEvent;
use biometric_bridge::topology::Topology;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn bootstrap() -> String {
    env_or("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
}
pub fn registry_url() -> String {
    env_or("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7")
}
pub fn database_url() -> String {
    env_or("DATABASE_URL", "postgres://bridge:bridge@127.0.0.1:5432/biometric_bridge")
}
pub fn redis_url() -> String {
    env_or("REDIS_URL", "redis://127.0.0.1:6379")
}

pub fn kafka_args() -> KafkaArgs {
    KafkaArgs::plaintext(bootstrap())
}

/// Fails the test at once, saying how to start the stack, when a component does not answer.
/// Never a silent skip: CI must not pass without testing.
pub fn require_stack() {
    // reqwest (the registry client, vendor APIs) runs on rustls with the `ring` provider, which
    // `main` installs; test processes must too.
    biometric_bridge::connections::http::install_tls_provider();
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let mut missing = Vec::new();
        let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("client");
        if let Err(error) = consumer.fetch_metadata(None, Duration::from_secs(5)) {
            missing.push(format!("Kafka at {} ({error})", bootstrap()));
        }
        let registry = format!("{}/subjects", registry_url());
        if std::process::Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", "--max-time", "5", &registry])
            .status()
            .map_or(true, |s| !s.success())
        {
            missing.push(format!("schema registry at {}", registry_url()));
        }
        for (name, addr) in [("PostgreSQL", "127.0.0.1:5432"), ("Redis", "127.0.0.1:6379")] {
            if std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_err() {
                missing.push(format!("{name} at {addr}"));
            }
        }
        if missing.is_empty() { Ok(()) } else { Err(missing.join(", ")) }
    });
    if let Err(missing) = result {
        panic!(
            "the local stack is not up: {missing} did not answer. Start it with `scripts/stack up` (or run `scripts/test`, which does)."
        );
    }
}

/// Runs `biometric-bridge <args>` against the stack's database with `env` and `stdin`; returns
/// (success, stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"));
    command.args(args).env("DATABASE_URL", database_url()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("run the CLI");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
}

/// A fresh 32-byte key as 64 hex characters (TOKEN_ENCRYPTION_KEY, PSEUDONYM_KEY).
pub fn random_key() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The stack's one `DATA_ENCRYPTION_KEY` (`.stack/data-encryption-key`, shared with
/// `scripts/demo` and `scripts/bench-ingress`, created by whichever comes first): every data key
/// in the stack's database is wrapped by it, and a process started with another key refuses to
/// start. A test that needs other keys (rotation) uses a database of its own.
pub fn stack_data_key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".stack/data-encryption-key");
        if let Ok(key) = std::fs::read_to_string(&path)
            && !key.trim().is_empty()
        {
            return key.trim().to_owned();
        }
        let key = random_key();
        let fresh = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut file = std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().write(true).create(true).truncate(true), 0o600)
            .open(&fresh)
            .unwrap();
        std::io::Write::write_all(&mut file, format!("{key}\n").as_bytes()).unwrap();
        // Whoever links first wins; a loser reads the winner's key.
        match std::fs::hard_link(&fresh, &path) {
            Ok(()) => {
                std::fs::remove_file(&fresh).ok();
                key
            }
            Err(_) => {
                std::fs::remove_file(&fresh).ok();
                std::fs::read_to_string(&path).unwrap().trim().to_owned()
            }
        }
    })
    .clone()
}

/// Writes one history row (`biometric_events`) for `user`, measured at `measured_at` (RFC 3339).
pub async fn insert_history_row(pool: &sqlx::PgPool, user: &str, measured_at: &str) {
    sqlx::query(
        "INSERT INTO biometric_events (event_id, user_id, vendor, vendor_user_id, kind, measured_at, received_at, priority,
                                       source_topic, source_partition, source_offset)
         VALUES ($1, $2, 'TERRA', 'v', 'SLEEP', $3::timestamptz, now(), 'NORMAL', 'test-rows', 0, 0)",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(user)
    .bind(measured_at)
    .execute(pool)
    .await
    .expect("insert a history row");
}

/// The topology text without the de-duplication processor and its store (see
/// [`biometric_bridge::topology::without_dedup_store`]).
pub fn without_dedup_store(text: String) -> String {
    biometric_bridge::topology::without_dedup_store(&text)
}

/// A variable `scripts/stack env` prints (the SASL_SSL listener, its CA, the users' passwords).
pub fn stack_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run under `eval \"$(scripts/stack env)\"` (scripts/test does)"))
}

/// Runs `command` (stdout discarded, stderr kept) until it exits by itself; panics if it still
/// runs after `within`. Returns its exit status and stderr.
pub fn run_until_exit(command: &mut Command, within: Duration) -> (std::process::ExitStatus, String) {
    let stderr_path = std::env::temp_dir().join(unique("stderr"));
    let mut child = command.stdout(Stdio::null()).stderr(std::fs::File::create(&stderr_path).unwrap()).spawn().unwrap();
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            // The arguments, not the whole command: its environment may hold secrets.
            let args: Vec<_> = command.get_args().collect();
            panic!("{args:?} still runs after {within:?}:\n{}", std::fs::read_to_string(&stderr_path).unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(&stderr_path).unwrap())
}

/// The last `error: …` line a command printed, the one line a misconfiguration must give.
pub fn last_error_line(stderr: &str) -> String {
    stderr.lines().rev().find(|line| line.starts_with("error:")).unwrap_or_else(|| panic!("no error line:\n{stderr}")).to_owned()
}

/// A free port on 127.0.0.1, closed: a dependency "down" until [`open_proxy`] opens it.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A TCP proxy on `port` to `upstream` (host:port): the dependency behind it comes "up".
pub async fn open_proxy(port: u16, upstream: String) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the reserved port is free again");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(upstream.as_str()).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    })
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A copy of the shipped topology with every topic and the application id made unique.
pub struct TestTopology {
    pub id: String,
    pub path: PathBuf,
    pub topology: Topology,
}

impl TestTopology {
    pub async fn create(partitions: i32) -> TestTopology {
        Self::create_with(partitions, |text| text).await
    }

    /// `edit` may change the topology text further (thresholds, stores) before names are made unique.
    pub async fn create_with(partitions: i32, edit: impl FnOnce(String) -> String) -> TestTopology {
        require_stack();
        let id = unique("t");
        let mut text = edit(biometric_bridge::topology::DEFAULT_TOPOLOGY.to_owned());
        text = text.replace("application_id = \"biometric-bridge\"", &format!("application_id = \"bb-{id}\""));
        for topic in ["raw-webhooks.dlq", "raw-webhooks", "terra-direct", "terra-biometric-events", "biometric-events", "pending-fetch"] {
            text = text.replace(&format!("topic = \"{topic}\""), &format!("topic = \"{topic}-{id}\""));
            text = text.replace(&format!("[topics.{topic}]"), &format!("[topics.\"{topic}-{id}\"]"));
            text = text.replace(&format!("[topics.\"{topic}\"]"), &format!("[topics.\"{topic}-{id}\"]"));
        }
        text = text.replace("partitions = 10", &format!("partitions = {partitions}"));
        let path = std::env::temp_dir().join(format!("bb-topology-{id}.toml"));
        std::fs::write(&path, &text).unwrap();
        let topology = Topology::load(&path).unwrap();
        biometric_bridge::kafka::admin::ensure_topics(&kafka_args(), &topology.topics).await.expect("create test topics");
        TestTopology { id, path, topology }
    }

    pub fn topic(&self, base: &str) -> String {
        format!("{base}-{}", self.id)
    }
}

/// A processor child process, killed when dropped.
pub struct ProcessorGuard {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for ProcessorGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProcessorGuard {
    /// The processor's `/metrics` text (its address is read from its log).
    pub async fn metrics(&self) -> String {
        let addr = self.metrics_addr().await;
        reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap()
    }

    /// Waits until `/metrics` holds the sample line `sample` (e.g. `name 3`), failing after `within`.
    pub async fn wait_for_metric(&self, sample: &str, within: Duration) {
        let line = format!("{sample}\n");
        let deadline = Instant::now() + within;
        while !self.metrics().await.contains(&line) {
            assert!(Instant::now() < deadline, "no {sample:?} in /metrics: {}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The address of the processor's HTTP server (`/metrics`, `/health`, `/ready`), from its log.
    pub async fn metrics_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            // The last start's line: a restarted processor appends to the same log.
            let found = log.lines().rev().find(|line| line.contains("Serving metrics.")).and_then(|line| {
                let start = line.find("addr=")? + 5;
                Some(line[start..].split_whitespace().next()?.to_owned())
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(Instant::now() < deadline, "the processor never served metrics:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

pub fn spawn_processor(topology: &TestTopology, instance: &str, extra_env: &[(&str, &str)]) -> ProcessorGuard {
    let log = std::env::temp_dir().join(format!("bb-processor-{}-{instance}.log", topology.id));
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"));
    command
        .args(["process", "--topology"])
        .arg(&topology.path)
        .args(["--instance-id", instance, "--metrics-addr", "127.0.0.1:0"])
        .env("RUST_LOG", std::env::var("TEST_PROCESSOR_LOG").unwrap_or_else(|_| "info".into()))
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap())
        .env("SCHEMA_REGISTRY_URL", registry_url())
        .env("DATABASE_URL", database_url())
        .stdout(Stdio::null())
        .stderr(file);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    ProcessorGuard { child: command.spawn().expect("spawn processor"), log }
}

/// A decoded output event with its record metadata.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: Option<String>,
    pub headers: HashMap<String, String>,
    pub event: BiometricEvent,
    pub schema_id: u32,
}

/// Reads `topics` from the beginning with a read_committed consumer, decoding through the
/// registry, until `expected` events arrived or `timeout` passed.
pub async fn read_events(topics: &[String], expected: usize, timeout: Duration) -> Vec<Received> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("test-reader"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs).unwrap();
    biometric_bridge::connections::http::install_tls_provider();
    let decoder = AvroDecoder::new(SrSettings::new(registry_url()));
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        let polled = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(200)));
        let Some(Ok(message)) = polled else { continue };
        let payload = message.payload().unwrap().to_vec();
        let decoded = decoder.decode(Some(&payload)).await.expect("decodes through the registry");
        let event: BiometricEvent = apache_avro::from_value(&decoded.value).expect("decodes into BiometricEvent");
        let headers = message
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect())
            .unwrap_or_default();
        out.push(Received {
            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            event,
            schema_id: u32::from_be_bytes(payload[1..5].try_into().unwrap()),
        });
    }
    out
}

/// Raw records (any topic) read_committed from the beginning.
pub struct RawRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

pub fn read_raw(topic: &str, expected: usize, timeout: Duration) -> Vec<RawRecord> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("test-raw-reader"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else { continue };
        out.push(RawRecord {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: message
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect())
                .unwrap_or_default(),
        });
    }
    out
}

/// `t=<now>,v1=<hex hmac>` over `t.body`.
pub fn terra_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

pub const TERRA_SECRET: &str = "terra_test_signing_secret_DO_NOT_USE";

/// Decodes a Confluent wire-format value with Python fastavro (tests/tools/decode_confluent.py).
/// `scripts/test` provides the interpreter in BRIDGE_TEST_PYTHON; without it the test fails with
/// instructions (never skips).
pub fn decode_with_fastavro(value: &[u8]) -> serde_json::Value {
    let python = std::env::var("BRIDGE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = Command::new(&python).args(["-c", "import fastavro"]).status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "fastavro is not importable by {python}: run the tests with `scripts/test` (it installs it in .stack/venv), \
         or set BRIDGE_TEST_PYTHON to a Python with fastavro"
    );
    let path = std::env::temp_dir().join(format!("bb-value-{}.bin", uuid::Uuid::new_v4()));
    std::fs::write(&path, value).unwrap();
    let script = format!("{}/tests/tools/decode_confluent.py", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(&python).arg(script).arg(&path).arg(registry_url()).output().expect("run python");
    let _ = std::fs::remove_file(&path);
    assert!(output.status.success(), "fastavro decode failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("decoder prints JSON")
}
