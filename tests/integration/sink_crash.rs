//! The sink's exactly-once proof: 3 000 distinct events (plus 300 updates of some of them and a
//! few aborted transactions) produced while the sink is SIGKILLed at random moments and restarted
//! again and again. Afterwards the table holds exactly one row per event id, each with the latest
//! version of its event, and `sink_offsets` equals the topics' end offsets: no row lost, none
//! doubled, no offset stored without its rows or rows without their offset.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row;

use super::helpers::{self, TestTopology};
use super::sink_support::{EventProducer, Out, TestDb, event, spawn_sink, wait_caught_up};

const EVENTS: usize = 3_000;
const UPDATE_EVERY: usize = 10;
const PER_TRANSACTION: usize = 60;
const KILLS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_neither_loses_nor_doubles_a_row() {
    let topology = TestTopology::create(3).await;
    let topics = topology.topology.event_sinks.clone();
    let db = TestDb::create().await;
    let sink = helpers::unique("sink-crash");
    let producer = EventProducer::new(&topics).await;

    // Event n goes to one of the two topics; every 10th is later updated (version 1 -> 2).
    let ids: Vec<String> = (0..EVENTS).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let record = |n: usize, version: i64| {
        let topic = topics[n % topics.len()].clone();
        Out::Event(topic, event(&ids[n], &format!("crash-user-{}", n % 40), version))
    };
    let mut plan: Vec<Out> = (0..EVENTS).map(|n| record(n, 1)).collect();
    plan.extend((0..EVENTS).step_by(UPDATE_EVERY).map(|n| record(n, 2)));

    // Produce in the background, a transaction at a time, so kills land while records arrive.
    let producing = tokio::spawn(async move {
        for (index, chunk) in plan.chunks(PER_TRANSACTION).enumerate() {
            producer.transaction(chunk, true);
            if index % 10 == 5 {
                // An aborted transaction: its records must never become rows.
                let Out::Event(topic, stray) = record_aborted(&chunk[0]) else { unreachable!() };
                producer.transaction(&[Out::Event(topic, stray)], false);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });

    let mut process = spawn_sink(&topology, &db, &sink, 40);
    let mut rows_at_kill = Vec::new();
    for _ in 0..KILLS {
        let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 8; // 0..2 s
        tokio::time::sleep(Duration::from_millis(1_000 + jitter)).await;
        process.child.kill().unwrap(); // SIGKILL
        process.child.wait().unwrap();
        rows_at_kill.push(db.count().await);
        process = spawn_sink(&topology, &db, &sink, 40);
    }
    producing.await.unwrap();

    let caught_up = wait_caught_up(&db, &sink, &topics, Duration::from_secs(180)).await;
    let (count, ids_seen): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT event_id) FROM biometric_events").fetch_one(&db.pool).await.unwrap();
    assert!(
        caught_up.is_ok() && count == EVENTS as i64 && ids_seen == EVENTS as i64,
        "after {KILLS} SIGKILLs (rows at each kill: {rows_at_kill:?}): {count} rows for {EVENTS} event ids; offsets (stored, end): {:?}\nsink log tail:\n{}",
        caught_up.err(),
        process.log_tail()
    );
    let mid_run_kills = rows_at_kill.iter().filter(|rows| (1..EVENTS as i64).contains(rows)).count();
    assert!(mid_run_kills >= 3, "the kills must land while rows are being written: {rows_at_kill:?}");

    // Every row holds the latest version of its event (the lineage offset carries the version).
    let versions: BTreeMap<String, i64> = sqlx::query("SELECT event_id::text AS id, source_offset FROM biometric_events")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get::<String, _>("id"), row.get::<i64, _>("source_offset")))
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let latest = if n % UPDATE_EVERY == 0 { 2 } else { 1 };
        assert_eq!(versions.get(id), Some(&latest), "event {n} ({id})");
    }
    drop(process);
}

/// An event with a fresh id, on the same topic as `like`, for an aborted transaction.
fn record_aborted(like: &Out) -> Out {
    let Out::Event(topic, _) = like else { unreachable!() };
    Out::Event(topic.clone(), event(&uuid::Uuid::new_v4().to_string(), "crash-user-aborted", 9))
}
