//! `dlq list | show | replay` against the real stack and processor, as child processes of the
//! built binary: a poison pill goes to the DLQ with its bytes and the dead-letter headers, the
//! tools show it exactly, a replay re-injects the original bytes and headers plus
//! `replayed-from`, the processor dead-letters it again carrying that header, and replaying the
//! same dead letter a second time is skipped and said so.

use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::helpers::{self, RawRecord, TestTopology};

const POISON: &[u8] = br#"{"type":"sleep","data":["#;
const BINARY_HEADER: &[u8] = &[0xff, 0x00, 0x01];

/// Runs `biometric-bridge dlq <args>` on the test topology; fails the test on a non-zero exit.
fn dlq(topology: &TestTopology, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"))
        .arg("dlq")
        .args(args)
        .arg("--topology")
        .arg(&topology.path)
        .env("KAFKA_BOOTSTRAP_SERVERS", helpers::bootstrap())
        .env("DATABASE_URL", helpers::database_url())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run biometric-bridge dlq");
    assert!(output.status.success(), "dlq {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// Reads `topic` until it holds `expected` records.
fn records(topic: &str, expected: usize, processor: &helpers::ProcessorGuard) -> Vec<RawRecord> {
    let records = helpers::read_raw(topic, expected, Duration::from_secs(45));
    assert_eq!(records.len(), expected, "records in {topic}; processor log:\n{}", processor.log_tail());
    records
}

/// Checks that `topic` holds `count` records and no more.
fn no_more_than(topic: &str, count: usize) {
    assert_eq!(helpers::read_raw(topic, count + 1, Duration::from_secs(3)).len(), count, "records in {topic}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_shown_and_replayed_once_with_its_original_bytes() {
    let topology = TestTopology::create(1).await;
    let (raw, dead) = (topology.topic("raw-webhooks"), topology.topic("raw-webhooks.dlq"));
    let processor = helpers::spawn_processor(&topology, "dlq", &[]);
    let delivery_id = helpers::unique("dlq-delivery");
    let headers = OwnedHeaders::new()
        .insert(Header { key: "vendor", value: Some("terra") })
        .insert(Header { key: "received-at", value: Some("1764144000000") })
        .insert(Header { key: "delivery-id", value: Some(delivery_id.as_str()) })
        .insert(Header { key: "x-binary", value: Some(BINARY_HEADER) });
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).create().unwrap();
    producer.send(FutureRecord::to(&raw).key("terra:dlq-user").payload(POISON).headers(headers), Duration::from_secs(10)).await.unwrap();

    // The processor dead-letters it: original bytes and headers, plus why and where from.
    let letter = &records(&dead, 1, &processor)[0];
    assert_eq!(letter.payload, POISON);
    assert_eq!(letter.key.as_deref(), Some(&b"terra:dlq-user"[..]));
    assert_eq!(letter.headers["vendor"], "terra");
    assert_eq!(letter.headers["delivery-id"], delivery_id);
    assert_eq!(letter.headers["error-class"], "invalid_json");
    assert_eq!((letter.headers["source-topic"].as_str(), letter.headers["source-partition"].as_str()), (raw.as_str(), "0"));
    assert_eq!(letter.headers["source-offset"], "0");

    // list: one line with every column.
    let listed = stdout(&dlq(&topology, &["list"]));
    assert_eq!(listed.lines().count(), 1, "{listed}");
    for part in ["0/0  ", "  invalid_json  ", &format!("from={raw}/0/0"), "vendor=terra", &format!("delivery-id={delivery_id}"), "  24B  "]
    {
        assert!(listed.contains(part), "{part:?} in {listed}");
    }
    assert_eq!(stdout(&dlq(&topology, &["list", "--error-class", "invalid_shape"])), "");
    assert_eq!(stdout(&dlq(&topology, &["list", "--since", "2999-01-01T00:00:00Z"])), "");

    // show: every header, the payload exactly; --raw: only the payload's bytes.
    let shown = stdout(&dlq(&topology, &["show", "0/0"]));
    for line in [
        &format!("dead letter  {dead}/0/0\n"),
        "key          terra:dlq-user\n",
        "  x-binary: hex:ff0001\n",
        "  error-class: invalid_json\n",
        &format!("  source-topic: {raw}\n"),
        "payload      24 bytes, UTF-8 text, exactly:\n{\"type\":\"sleep\",\"data\":[\n",
    ] {
        assert!(shown.contains(line), "{line:?} in {shown}");
    }
    assert_eq!(dlq(&topology, &["show", "0/0", "--raw"]).stdout, POISON);

    // replay --dry-run produces nothing.
    let dry = stdout(&dlq(&topology, &["replay", "--dry-run"]));
    assert!(dry.contains(&format!("would   0/0 -> {raw}")) && dry.contains("dry run: would replay 1 of 1"), "{dry}");
    no_more_than(&raw, 1);

    // replay: the original key, bytes and headers, without the dead-letter ones, plus replayed-from.
    let replayed = stdout(&dlq(&topology, &["replay"]));
    assert!(replayed.contains("replayed 1 of 1 selected"), "{replayed}");
    // ...and audited: who, which DLQ, how many.
    let database = biometric_bridge::config::DatabaseArgs { database_url: helpers::database_url(), database_max_connections: 1 };
    let audited: (String, serde_json::Value) =
        sqlx::query_as("SELECT outcome, detail FROM audit_log WHERE action = 'dlq.replay' AND target = $1 ORDER BY id DESC LIMIT 1")
            .bind(&dead)
            .fetch_one(&database.pool().unwrap())
            .await
            .expect("the replay is audited");
    assert_eq!((audited.0.as_str(), &audited.1["replayed"], &audited.1["skipped"]), ("ok", &1.into(), &0.into()), "{audited:?}");
    let again = &records(&raw, 2, &processor)[1];
    let marker = format!("{dead}/0/0");
    assert_eq!((again.payload.as_slice(), again.key.as_deref()), (POISON, Some(&b"terra:dlq-user"[..])));
    let mut keys: Vec<&str> = again.headers.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["delivery-id", "received-at", "replayed-from", "vendor", "x-binary"]);
    assert_eq!(again.headers["replayed-from"], marker);
    assert_eq!(again.headers["x-binary"], String::from_utf8_lossy(BINARY_HEADER));
    assert_eq!(again.headers["delivery-id"], delivery_id);

    // Still broken, so dead-lettered again: same bytes, now carrying replayed-from.
    let second = &records(&dead, 2, &processor)[1];
    assert_eq!(second.payload, POISON);
    assert_eq!(second.headers["replayed-from"], marker);
    assert_eq!(second.headers["source-offset"], "1");
    let listed = stdout(&dlq(&topology, &["list"]));
    assert!(listed.lines().nth(1).is_some_and(|line| line.contains(&format!("replayed-from={marker}"))), "{listed}");

    // The same selection again: skipped and said so; nothing produced.
    let twice = stdout(&dlq(&topology, &["replay", "--limit", "1"]));
    assert!(twice.contains(&format!("skip    0/0 -> {raw}: already replayed")), "{twice}");
    assert!(twice.contains("replayed 0 of 1 selected dead letter(s); skipped 1 already replayed"), "{twice}");
    no_more_than(&raw, 2);
    drop(processor);
}
