//! `sink postgres` against the real stack, as a child process: rows equal the events column by
//! column, a re-delivered or updated event rewrites its row instead of adding one, aborted and
//! undecodable records are not written, the stored offsets end at the topics' end offsets, a
//! restart resumes from them, and a PostgreSQL outage pauses the sink without losing anything.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use biometric_bridge::event::BiometricEvent;

use super::helpers::{self, ProcessorGuard, TestTopology};
use super::sink_support::{EventProducer, Out, TestDb, assert_row_matches, event, log_text, spawn_sink, terminate, wait_caught_up};

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn caught_up(db: &TestDb, sink: &str, topics: &[String], process: &ProcessorGuard) {
    if let Err((stored, ends)) = wait_caught_up(db, sink, topics, Duration::from_secs(90)).await {
        panic!("sink_offsets {stored:?} never reached the end offsets {ends:?}; sink log:\n{}", log_text(process));
    }
}

async fn assert_rows(db: &TestDb, expected: &BTreeMap<String, BiometricEvent>) {
    assert_eq!(db.count().await, expected.len() as i64, "one row per event id");
    for (id, event) in expected {
        assert_row_matches(&db.row(id).await.unwrap_or_else(|| panic!("no row for {id}")), event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_match_events_field_by_field_and_a_redelivery_updates_its_row() {
    let topology = TestTopology::create(2).await;
    let topics = topology.topology.event_sinks.clone();
    let (terra, other) = (topology.topic("terra-biometric-events"), topology.topic("biometric-events"));
    let db = TestDb::create().await;
    let sink = helpers::unique("sink-rows");
    let producer = EventProducer::new(&topics).await;

    // 20 events over both topics; then an aborted transaction; then a record that is not an
    // event and an update of the first event.
    let mut expected = BTreeMap::new();
    let mut firsts = Vec::new();
    for n in 0..20 {
        let event = event(&new_id(), &format!("user-{}", n % 4), 1 + n);
        expected.insert(event.event_id.clone(), event.clone());
        firsts.push(Out::Event(if n < 10 { terra.clone() } else { other.clone() }, event));
    }
    producer.transaction(&firsts, true);
    let aborted = event(&new_id(), "user-0", 99);
    producer.transaction(&[Out::Event(terra.clone(), aborted.clone())], false);
    let Out::Event(_, first) = &firsts[0] else { unreachable!() };
    let updated = event(&first.event_id, &first.user_id, 50);
    // Not wire format; a schema id the registry does not know; a datum cut short.
    let mut unknown_schema = vec![0, 0x7f, 0xff, 0xff, 0xf0];
    unknown_schema.extend_from_slice(b"junk");
    let truncated = producer.encode(&terra, &updated)[..20].to_vec();
    producer.transaction(
        &[
            Out::Garbage(terra.clone(), b"not an avro value".to_vec()),
            Out::Garbage(terra.clone(), unknown_schema),
            Out::Garbage(terra.clone(), truncated),
            Out::Event(terra.clone(), updated.clone()),
        ],
        true,
    );
    expected.insert(updated.event_id.clone(), updated);

    let mut process = spawn_sink(&topology, &db, &sink, 500);
    caught_up(&db, &sink, &topics, &process).await;
    assert_rows(&db, &expected).await;
    assert!(db.row(&aborted.event_id).await.is_none(), "an aborted event is never written");
    let log = log_text(&process);
    for reason in ["not a Confluent wire-format value", "is unknown to the registry", "avro (schema id"] {
        assert!(log.contains(reason), "a skipped record is logged with its reason ({reason}):\n{log}");
    }

    // While it runs: one event delivered again unchanged, another updated.
    let Out::Event(_, again) = &firsts[12] else { unreachable!() };
    let Out::Event(_, second) = &firsts[1] else { unreachable!() };
    let changed = event(&second.event_id, &second.user_id, 70);
    producer.transaction(&[Out::Event(other.clone(), again.clone()), Out::Event(terra.clone(), changed.clone())], true);
    expected.insert(changed.event_id.clone(), changed);
    caught_up(&db, &sink, &topics, &process).await;
    assert_rows(&db, &expected).await;

    // SIGTERM: exit 0. A restart resumes from sink_offsets: nothing is written again.
    let stopping = Instant::now();
    assert!(terminate(&mut process).success(), "graceful shutdown exits 0:\n{}", log_text(&process));
    assert!(stopping.elapsed() < Duration::from_secs(10), "shutdown took {:?}", stopping.elapsed());
    let last_write: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(written_at) FROM biometric_events").fetch_one(&db.pool).await.unwrap();
    let late = event(&new_id(), "user-9", 3);
    producer.transaction(&[Out::Event(other.clone(), late.clone())], true);
    expected.insert(late.event_id.clone(), late);
    let process = spawn_sink(&topology, &db, &sink, 500);
    caught_up(&db, &sink, &topics, &process).await;
    assert_rows(&db, &expected).await;
    let rewritten: i64 = sqlx::query_scalar("SELECT count(*) FROM biometric_events WHERE written_at > $1")
        .bind(last_write)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rewritten, 1, "after the restart only the new event is written");

    // Another writer under the same sink name moves the offsets (simulated by hand): the sink's
    // next batch is refused, dropped, and reading resumes from what sink_offsets now says.
    sqlx::query("UPDATE sink_offsets SET next_offset = next_offset - 1 WHERE sink = $1 AND topic = $2")
        .bind(&sink)
        .bind(&terra)
        .execute(&db.pool)
        .await
        .unwrap();
    let fenced = event(&new_id(), &first.user_id, 5);
    producer.transaction(&[Out::Event(terra.clone(), fenced.clone())], true);
    expected.insert(fenced.event_id.clone(), fenced);
    caught_up(&db, &sink, &topics, &process).await;
    assert_rows(&db, &expected).await;
    let log = log_text(&process);
    assert!(log.contains("another instance writes as this sink") && log.contains("Batch dropped"), "{log}");
    drop(process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_pauses_the_sink_and_it_resumes_where_sink_offsets_says() {
    let topology = TestTopology::create(2).await;
    let topics = topology.topology.event_sinks.clone();
    let terra = topology.topic("terra-biometric-events");
    let db = TestDb::create().await;
    let sink = helpers::unique("sink-outage");
    let producer = EventProducer::new(&topics).await;
    let mut expected = BTreeMap::new();
    let mut produce = |count: usize, from: usize| {
        for chunk in (from..from + count).collect::<Vec<_>>().chunks(50) {
            let records: Vec<Out> = chunk
                .iter()
                .map(|n| {
                    let event = event(&new_id(), &format!("user-{}", n % 7), *n as i64);
                    expected.insert(event.event_id.clone(), event.clone());
                    Out::Event(terra.clone(), event)
                })
                .collect();
            producer.transaction(&records, true);
        }
    };
    produce(200, 0);
    let process = spawn_sink(&topology, &db, &sink, 50);
    caught_up(&db, &sink, &topics, &process).await;

    // The outage: this database refuses connections and the sink's sessions are cut.
    db.admin(format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", db.name)).await;
    db.admin(format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'", db.name)).await;
    produce(300, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log_text(&process).contains("PostgreSQL unavailable; consumption paused") {
        assert!(Instant::now() < deadline, "the sink never noticed the outage:\n{}", log_text(&process));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // a few retries
    db.admin(format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", db.name)).await;

    caught_up(&db, &sink, &topics, &process).await;
    assert_rows(&db, &expected).await;
    let log = log_text(&process);
    assert!(log.contains("PostgreSQL is back; consumption resumed"), "{log}");
    assert!(!log.contains("Exiting with an error"), "{log}");
    drop(process);
}

/// `USER_ERASED` (written by `users erase`): the sink deletes the person's rows already in the
/// table and never writes the erase as a row; an upload after the erase is kept, and so is
/// everybody else's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_erased_event_deletes_the_person_s_rows_and_only_theirs() {
    let topology = TestTopology::create(1).await;
    let topics = topology.topology.event_sinks.clone();
    let terra = topology.topic("terra-biometric-events");
    let db = TestDb::create().await;
    let sink = helpers::unique("sink-erase");
    let producer = EventProducer::new(&topics).await;
    let (gone, kept) = (event(&new_id(), "erased-user", 1), event(&new_id(), "other-user", 1));
    let gone_too = event(&new_id(), "erased-user", 2);
    producer.transaction(&[Out::Event(terra.clone(), gone.clone()), Out::Event(terra.clone(), kept.clone())], true);

    let process = spawn_sink(&topology, &db, &sink, 500);
    caught_up(&db, &sink, &topics, &process).await;
    assert_eq!(db.count().await, 2, "both people's rows are written first");

    // One batch: another row of the person, their erase, then a new upload of theirs.
    let erased = BiometricEvent::user_erased("erased-user", biometric_bridge::event::Vendor::Terra, 3);
    let after = event(&new_id(), "erased-user", 4);
    producer.transaction(
        &[Out::Event(terra.clone(), gone_too.clone()), Out::Event(terra.clone(), erased.clone()), Out::Event(terra.clone(), after.clone())],
        true,
    );
    caught_up(&db, &sink, &topics, &process).await;
    let left: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT event_id, user_id FROM biometric_events ORDER BY user_id").fetch_all(&db.pool).await.unwrap();
    let expected: Vec<(uuid::Uuid, String)> =
        [&after, &kept].iter().map(|event| (event.event_id.parse().unwrap(), event.user_id.clone())).collect();
    assert_eq!(left, expected, "only the upload after the erase, and the other person's row");
    assert!(db.row(&erased.event_id).await.is_none(), "the erase itself is no row");
    drop(process);
}
