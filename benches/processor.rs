//! Processor benchmark (not a test): records/s and end-to-end latency of the exactly-once
//! processor, stateless, stateful and stateful as two instances, side by side **in the same
//! run** with a raw rdkafka consume→produce pipe on the same broker (no transform, no
//! transactions: the physical limit of this machine), plus the restore time of 100 000 users'
//! baselines.
//!
//! Run with `scripts/bench-processor` (stack up, release build, then this). Knobs:
//! BENCH_RECORDS (default 20 000), BENCH_PARTITIONS (4), BENCH_RATE (latency phase, records/s,
//! default 500), BENCH_RESTORE_USERS (100 000), BENCH_ROWS (the rows to run, comma-separated, of
//! `raw,stateless,stateful,stateful-2t,stateful2,restore`; default all: the raw pipe always runs,
//! as every other row is a share of it). `KAFKA_OPTIONS` reaches the processors (not the raw
//! pipe), which is how client settings are compared: interleaved runs, one setting each.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use biometric_bridge::config::KafkaArgs;
use biometric_bridge::event::avro::{EventCodec, split_wire_format};
use biometric_bridge::processor::baseline::BaselineState;
use biometric_bridge::topology::Topology;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Whether BENCH_ROWS selects the row labelled `label`.
fn row_selected(label: &str) -> bool {
    std::env::var("BENCH_ROWS").map_or(true, |rows| rows.split(',').any(|row| row.trim() == label))
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The realistic Terra sleep fixture (4.7 KB, detailed samples) with its own summary id.
struct Payloads {
    template: String,
}

impl Payloads {
    fn new() -> Self {
        let template = std::fs::read_to_string(root().join("tests/fixtures/terra/sleep.json")).unwrap();
        Payloads { template }
    }
    fn body(&self, index: usize, users: usize) -> (String, Vec<u8>) {
        let user = format!("bench-user-{}", index % users);
        let body = self
            .template
            .replace("2-7f3a9c1d2e4b5a6c8d9e0f1a2b3c4d5e6f", &format!("bench-summary-{index}"))
            .replace("5c0e8c1e-3f5a-4b7e-9d6b-2f1f6c3a9e11", &user)
            .replace("athlete-0042", &format!("athlete-{}", index % users));
        (format!("terra:{user}"), body.into_bytes())
    }
}

fn producer() -> BaseProducer {
    producer_with_linger(20)
}

fn producer_with_linger(linger_ms: u32) -> BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", "snappy")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

fn send(producer: &BaseProducer, topic: &str, key: &str, body: &[u8], received_at_ms: i64, index: usize) {
    let received = received_at_ms.to_string();
    let delivery = format!("bench-{index}");
    let headers = OwnedHeaders::new()
        .insert(Header { key: "vendor", value: Some("terra") })
        .insert(Header { key: "received-at", value: Some(received.as_str()) })
        .insert(Header { key: "delivery-id", value: Some(delivery.as_str()) })
        .insert(Header { key: "terra-signature", value: Some("t=1795218931,v1=bench") });
    let mut record = BaseRecord::to(topic).key(key).payload(body).headers(headers);
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((_, returned)) => {
                producer.poll(Duration::from_millis(10));
                record = returned;
            }
        }
    }
    producer.poll(Duration::ZERO);
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn preload(topic: &str, records: usize, payloads: &Payloads) {
    let producer = producer();
    for index in 0..records {
        let (key, body) = payloads.body(index, 1_000);
        send(&producer, topic, &key, &body, now_ms(), index);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

fn reader(topic: &str, from: &str) -> BaseConsumer {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("bench-reader-{}", uuid::Uuid::new_v4()))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", from)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// A reader already assigned and fetching `topic` (from `from`: earliest or latest), created
/// before the pipeline starts so that the first output is seen when it is written, not when the
/// reader has finished joining its group.
fn ready_reader(topic: &str, from: &str) -> BaseConsumer {
    let consumer = reader(topic, from);
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.assignment().map_or(0, |a| a.count()) == 0 && Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    for _ in 0..10 {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    consumer
}

/// Collects `expected` records; returns (first arrival, last arrival, latencies ms).
fn collect(
    consumer: &BaseConsumer,
    topic: &str,
    expected: usize,
    timeout: Duration,
    latency_of: fn(&rdkafka::message::BorrowedMessage) -> Option<i64>,
) -> (Instant, Instant, Vec<i64>) {
    collect_from_first(consumer, topic, expected, timeout, latency_of, &mut || {})
}

/// [`collect`], calling `at_first` when the first record arrives.
fn collect_from_first(
    consumer: &BaseConsumer,
    topic: &str,
    expected: usize,
    timeout: Duration,
    latency_of: fn(&rdkafka::message::BorrowedMessage) -> Option<i64>,
    at_first: &mut dyn FnMut(),
) -> (Instant, Instant, Vec<i64>) {
    let deadline = Instant::now() + timeout;
    let (mut first, mut last, mut count, mut latencies) = (None, Instant::now(), 0usize, Vec::new());
    while count < expected && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let at = Instant::now();
            if first.is_none() {
                at_first();
            }
            first.get_or_insert(at);
            last = at;
            count += 1;
            if let Some(latency) = latency_of(&message) {
                latencies.push(latency);
            }
        }
    }
    assert_eq!(count, expected, "{topic}: only {count} of {expected} records arrived");
    (first.unwrap(), last, latencies)
}

fn rate(records: usize, first: Instant, last: Instant) -> f64 {
    records as f64 / (last - first).as_secs_f64().max(1e-9)
}

/// The process's CPU time so far (utime + stime from /proc), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_sec() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The process's peak resident set (VmHWM), in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap();
    kb / 1024.0
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

// ---- the raw pipe ----

/// consume -> produce, no transform, no transactions: copies key, value and headers.
/// The raw pipe in a process of its own (this binary, `--raw-pipe <in> <out>`), so its CPU time
/// is its own and not the measuring reader's; it runs until killed.
fn spawn_raw_pipe(input: &str, output: &str) -> Processor {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--raw-pipe", input, output])
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Processor(child)
}

fn raw_pipe(input: &str, output: &str, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("bench-pipe-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        // The processor's consumer tuning (runtime/stream_loop.rs), so the ratio compares like with like.
        .set("fetch.queue.backoff.ms", biometric_bridge::runtime::FETCH_QUEUE_BACKOFF_MS)
        .set("queued.max.messages.kbytes", biometric_bridge::runtime::QUEUED_MAX_MESSAGES_KBYTES)
        .create()
        .unwrap();
    consumer.subscribe(&[input]).unwrap();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "snappy")
        .create()
        .unwrap();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            let mut record = BaseRecord::to(output).payload(message.payload().unwrap_or_default());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(headers) = message.headers() {
                record = record.headers(headers.detach());
            }
            while let Err((_, returned)) = producer.send(record) {
                producer.poll(Duration::from_millis(5));
                record = returned;
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

// ---- the processor (release binary as a child process) ----

struct Processor(Child);

impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_processor(topology_file: &Path, namespace: &str, instance: &str, threads: usize, log: &Path) -> Processor {
    let binary = root().join("target/release/biometric-bridge");
    assert!(binary.exists(), "build the release binary first: cargo build --release");
    let log_file = std::fs::File::create(log).unwrap();
    let child = Command::new(binary)
        .args(["process", "--instance-id", instance, "--metrics-addr", "127.0.0.1:0", "--namespace", namespace, "--topology"])
        .arg(topology_file)
        .env("RUST_LOG", "info")
        .env("PROCESSOR_THREADS", threads.to_string())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    Processor(child)
}

/// The shipped topology without the de-duplication and baseline processors and their stores
/// (edited as TOML, so the comments and parameters of the shipped file can change freely).
fn stateless_topology() -> String {
    let text = std::fs::read_to_string(root().join("topologies/biometric.toml")).unwrap();
    let mut topology: toml::Table = text.parse().unwrap();
    let stateful = |entry: &toml::Value| matches!(entry.get("name").and_then(|n| n.as_str()), Some("dedup" | "hrv-baseline"));
    for list in ["processors", "stores"] {
        if let Some(toml::Value::Array(entries)) = topology.get_mut(list) {
            entries.retain(|entry| !stateful(entry));
        }
    }
    toml::to_string(&topology).unwrap()
}

fn prepare(text: &str, namespace: &str, partitions: usize) -> (PathBuf, Topology) {
    let text = text.replace("partitions = 10", &format!("partitions = {partitions}"));
    let path = std::env::temp_dir().join(format!("bench-topology-{namespace}.toml"));
    std::fs::write(&path, &text).unwrap();
    let topology = Topology::parse_namespaced(&text, "bench", Some(namespace)).unwrap();
    let kafka = KafkaArgs::plaintext(bootstrap());
    tokio::runtime::Runtime::new().unwrap().block_on(biometric_bridge::kafka::admin::ensure_topics(&kafka, &topology.topics)).unwrap();
    (path, topology)
}

fn event_latency(message: &rdkafka::message::BorrowedMessage) -> Option<i64> {
    let (id, _) = split_wire_format(message.payload()?).ok()?;
    let event = EventCodec::new(id).decode(message.payload()?).ok()?;
    Some(now_ms() - event.received_at)
}

fn header_latency(message: &rdkafka::message::BorrowedMessage) -> Option<i64> {
    let headers = message.headers()?;
    let received = headers.iter().find(|h| h.key == "received-at")?.value?;
    Some(now_ms() - std::str::from_utf8(received).ok()?.parse::<i64>().ok()?)
}

struct Row {
    name: &'static str,
    records_per_sec: f64,
    p50: i64,
    p99: i64,
    /// CPU time of the pipeline's processes from its first output to its last, per record.
    cpu_us_per_record: f64,
    /// The largest peak RSS of its processes (per instance).
    peak_rss_mb: f64,
}

/// Throughput on a preloaded backlog, then latency at a steady rate, for one pipeline.
fn measure(
    name: &'static str,
    input: &str,
    output: &str,
    records: usize,
    rate_per_sec: usize,
    start: &mut dyn FnMut() -> Vec<u32>,
    latency_of: fn(&rdkafka::message::BorrowedMessage) -> Option<i64>,
) -> Row {
    let payloads = Payloads::new();
    preload(input, records, &payloads);
    let throughput_reader = ready_reader(output, "earliest");
    let pids = start();
    let ticks_of = || pids.iter().map(|pid| cpu_ticks(*pid)).sum::<u64>();
    // CPU from the first output on: start-up (registry, group join, restore) is not per record.
    let mut ticks_at_first = 0;
    let (first, last, _) =
        collect_from_first(&throughput_reader, output, records, Duration::from_secs(600), |_| None, &mut || ticks_at_first = ticks_of());
    let ticks = ticks_of() - ticks_at_first;
    let throughput = rate(records, first, last);
    // The first record's own work is before the first sample: records - 1 were measured.
    let cpu_us_per_record = ticks as f64 / clock_ticks_per_sec() * 1e6 / (records.max(2) - 1) as f64;

    // Latency: a paced stream on the now idle pipeline.
    let paced = rate_per_sec * 10;
    // No batching delay on the paced input: the latency measured is the pipeline's.
    let producer = producer_with_linger(0);
    let reader = ready_reader(output, "latest");
    let began = Instant::now();
    let writer = std::thread::scope(|scope| {
        let handle = scope.spawn(|| collect(&reader, output, paced, Duration::from_secs(120), latency_of));
        for index in 0..paced {
            let due = began + Duration::from_secs_f64(index as f64 / rate_per_sec as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (key, body) = payloads.body(records + index, 1_000);
            send(&producer, input, &key, &body, now_ms(), records + index);
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        handle.join().unwrap()
    });
    let mut latencies: Vec<i64> = writer.2;
    latencies.sort_unstable();
    let peak_rss_mb = pids.iter().map(|pid| peak_rss_mb(*pid)).fold(0.0, f64::max);
    println!(
        "{name}: {throughput:.0} records/s, {cpu_us_per_record:.1} CPU-us per record, peak RSS {peak_rss_mb:.0} MB, latency p50 {} ms, p99 {} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Row {
        name,
        records_per_sec: throughput,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        cpu_us_per_record,
        peak_rss_mb,
    }
}

/// Restore time of `users` baselines (30 days of readings each) written straight to a changelog,
/// and the handover time: from starting an instance on that state to its first processed record
/// (process start, registry, group join, restore, first transaction).
fn restore_time(users: usize, partitions: usize) -> (u64, usize, u128, f64) {
    let namespace = format!("bench-restore-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let text = std::fs::read_to_string(root().join("topologies/biometric.toml")).unwrap();
    let (path, topology) = prepare(&text, &namespace, partitions);
    let changelog = topology.changelog_topic("hrv-baseline").unwrap().to_owned();
    let producer = producer();
    let params = topology.baseline.unwrap();
    for user in 0..users {
        let mut state = BaselineState::default();
        for day in 0..30 {
            state.add(20_000 + day, day as u64, 40.0 + (day % 7) as f64, &params);
        }
        let key = format!("user-{user}|hrv_rmssd_ms|TERRA|GARMIN|NIGHTLY_MEAN");
        let value = serde_json::to_vec(&state).unwrap();
        let partition = (user % partitions) as i32;
        let mut record = BaseRecord::to(&changelog).key(&key).payload(&value).partition(partition);
        while let Err((_, returned)) = producer.send(record) {
            producer.poll(Duration::from_millis(10));
            record = returned;
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    // One webhook waiting for the instance: its event is the first record processed.
    let input = topology.source_topics()[0].to_owned();
    let output = topology.route(biometric_bridge::event::Vendor::Terra).to_owned();
    let (key, body) = Payloads::new().body(0, 1);
    send(&producer, &input, &key, &body, now_ms(), 0);
    producer.flush(Duration::from_secs(30)).unwrap();
    let reader = ready_reader(&output, "earliest");
    let log = std::env::temp_dir().join(format!("{namespace}.log"));
    let started = Instant::now();
    let processor = spawn_processor(&path, &namespace, "bench", 1, &log);
    let (_, _, _) = collect(&reader, &output, 1, Duration::from_secs(300), |_| None);
    let handover_ms = started.elapsed().as_millis();
    // Every user's state is in memory once the first record is processed.
    let rss_mb = peak_rss_mb(processor.0.id());
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("Stores restored") && l.contains("hrv-baseline")) {
            let plain: String = strip_ansi(line);
            let ms = plain.split("elapsed_ms=").nth(1).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap();
            let entries = plain.split("entries=").nth(1).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap();
            return (ms, entries, handover_ms, rss_mb);
        }
        assert!(Instant::now() < deadline, "no restore line in {}", log.display());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut in_escape = false;
    for c in line.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--raw-pipe") {
        // The child of `spawn_raw_pipe`: copies until it is killed.
        let never = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        return raw_pipe(&args[at + 1], &args[at + 2], never);
    }
    let records = env_num("BENCH_RECORDS", 20_000);
    let partitions = env_num("BENCH_PARTITIONS", 4);
    let rate_per_sec = env_num("BENCH_RATE", 500);
    let restore_users = env_num("BENCH_RESTORE_USERS", 100_000);
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    println!(
        "processor benchmark: {records} records of {} bytes, {partitions} partitions, latency at {rate_per_sec}/s",
        Payloads::new().template.len()
    );

    let mut rows = Vec::new();

    // 1. The raw pipe: the same topics shape, copied by a plain consumer/producer.
    let (_, pipe) = prepare(&stateless_topology(), &format!("bench-pipe-{run}"), partitions);
    let pipe_in = pipe.source_topics()[0].to_owned();
    let pipe_out = pipe.route(biometric_bridge::event::Vendor::Terra).to_owned();
    let mut pipe = None;
    rows.push(measure(
        "raw rdkafka pipe (no transform, no transactions)",
        &pipe_in,
        &pipe_out,
        records,
        rate_per_sec,
        &mut || {
            let child = spawn_raw_pipe(&pipe_in, &pipe_out);
            let pid = child.0.id();
            pipe = Some(child);
            vec![pid]
        },
        header_latency,
    ));
    drop(pipe);

    // 2. to 5. The exactly-once processor, stateless and with its stores and changelogs, and
    // the latter with two stream threads and as two instances in one group (each thread and
    // instance its own tasks and transactional producer).
    let shipped = std::fs::read_to_string(root().join("topologies/biometric.toml")).unwrap();
    for (name, text, label, instances, threads) in [
        ("EOS processor, stateless (normalize, thresholds, route)", stateless_topology(), "stateless", 1, 1),
        ("EOS processor, stateful (+ dedup and baseline stores, changelogs)", shipped.clone(), "stateful", 1, 1),
        ("EOS processor, stateful, 2 stream threads", shipped.clone(), "stateful-2t", 1, 2),
        ("EOS processor, stateful, 2 instances", shipped, "stateful2", 2, 1),
    ] {
        if !row_selected(label) {
            continue;
        }
        let namespace = format!("bench-{label}-{run}");
        let (path, topology) = prepare(&text, &namespace, partitions);
        let input = topology.source_topics()[0].to_owned();
        let output = topology.route(biometric_bridge::event::Vendor::Terra).to_owned();
        let mut processors = Vec::new();
        rows.push(measure(
            name,
            &input,
            &output,
            records,
            rate_per_sec,
            &mut || {
                (0..instances)
                    .map(|instance| {
                        let log = std::env::temp_dir().join(format!("{namespace}-{instance}.log"));
                        let child = spawn_processor(&path, &namespace, &format!("bench-{instance}"), threads, &log);
                        let pid = child.0.id();
                        processors.push(child);
                        pid
                    })
                    .collect()
            },
            event_latency,
        ));
        drop(processors);
    }

    let restore = row_selected("restore").then(|| restore_time(restore_users, partitions));
    if let Some((restore_ms, entries, handover_ms, restore_rss_mb)) = restore {
        println!("restore: {entries} baselines in {restore_ms} ms; peak RSS of the instance holding them {restore_rss_mb:.0} MB");
        println!("handover: a new instance on {entries} baselines processed its first record {handover_ms} ms after it was started");
    }

    let raw = rows[0].records_per_sec;
    println!();
    let raw_cpu = rows[0].cpu_us_per_record;
    println!("| pipeline | records/s | vs raw pipe | CPU per record | vs raw pipe | peak RSS per instance | latency p50 | latency p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.0} | {:.0} % | {:.1} µs | {:.1}× | {:.0} MB | {} ms | {} ms |",
            row.name,
            row.records_per_sec,
            100.0 * row.records_per_sec / raw,
            row.cpu_us_per_record,
            row.cpu_us_per_record / raw_cpu,
            row.peak_rss_mb,
            row.p50,
            row.p99
        );
    }
    if let Some((restore_ms, entries, _, restore_rss_mb)) = restore {
        println!();
        println!(
            "Restore of {entries} users' baselines (hrv-baseline changelog, {partitions} partitions): {restore_ms} ms; the instance's peak RSS {restore_rss_mb:.0} MB"
        );
    }
}
