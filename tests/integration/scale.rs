//! Scaling out: tasks, not topic partitions, are what is balanced. Ten task partitions on two
//! instances are 5 + 5; when one is killed the survivor holds all 10 within the session timeout;
//! when it comes back they are 5 + 5 again — and every record comes out exactly once throughout
//! (without the de-duplication store, so only the transactions stand between a crash and a
//! duplicate).

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};

use super::crash::{count_event_ids, ingress_headers, sleep_payload};
use super::helpers::{self, ProcessorGuard, TestTopology};

const PARTITIONS: i32 = 10;
const PER_ROUND: usize = 600;

/// The number of tasks an instance holds, from its `/metrics`.
async fn tasks(processor: &ProcessorGuard) -> Option<i64> {
    let addr = processor.metrics_addr().await;
    let text = reqwest::get(format!("http://{addr}/metrics")).await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix("biometric_bridge_tasks ")).and_then(|v| v.parse().ok())
}

async fn wait_for_tasks(what: &str, wanted: &[(&ProcessorGuard, i64)], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut held = Vec::new();
        for (processor, _) in wanted {
            held.push(tasks(processor).await);
        }
        if wanted.iter().zip(&held).all(|((_, want), got)| *got == Some(*want)) {
            return started.elapsed();
        }
        let logs: Vec<String> = wanted.iter().map(|(p, _)| p.log_tail()).collect();
        assert!(started.elapsed() < within, "{what}: tasks held {held:?} after {within:?}\n{}", logs.join("\n----\n"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn produce(producer: &FutureProducer, topic: &str, from: usize) {
    for index in from..from + PER_ROUND {
        let (_, body) = sleep_payload(index);
        let key = format!("terra:crash-user-{}", index % 50);
        let record = FutureRecord::to(topic).key(&key).payload(&body).headers(ingress_headers(index));
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_tasks_and_hand_them_over_exactly_once() {
    let topology = TestTopology::create_with(PARTITIONS, helpers::without_dedup_store).await;
    let raw = topology.topic("raw-webhooks");
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).set("enable.idempotence", "true").create().unwrap();
    let session = [("SESSION_TIMEOUT_MS", "6000")];

    produce(&producer, &raw, 0).await;
    let mut a = helpers::spawn_processor(&topology, "scale-a", &session);
    let b = helpers::spawn_processor(&topology, "scale-b", &session);
    wait_for_tasks("two instances at start", &[(&a, 5), (&b, 5)], Duration::from_secs(60)).await;

    produce(&producer, &raw, PER_ROUND).await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let took = wait_for_tasks("the survivor takes over", &[(&b, 10)], Duration::from_secs(30)).await;
    eprintln!("survivor held all {PARTITIONS} tasks {took:?} after the kill (session timeout 6 s)");

    produce(&producer, &raw, 2 * PER_ROUND).await;
    let a = helpers::spawn_processor(&topology, "scale-a", &session);
    let back = wait_for_tasks("the returning instance takes its share", &[(&a, 5), (&b, 5)], Duration::from_secs(60)).await;
    eprintln!("the returning instance held its {} tasks {back:?} after it was started", PARTITIONS / 2);
    produce(&producer, &raw, 3 * PER_ROUND).await;

    let total = 4 * PER_ROUND;
    let out = topology.topic("terra-biometric-events");
    let counts = tokio::task::spawn_blocking(move || count_event_ids(&out, total, Duration::from_secs(120))).await.unwrap();
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(counts.len(), total, "every record became one event\na:\n{}\nb:\n{}", a.log_tail(), b.log_tail());
    assert!(doubled.is_empty(), "duplicated events: {doubled:?}");
}

/// Upgrading from the single-group processor: the re-key group starts where the old group had
/// committed Terra's topic, so retained pointers are neither read again nor skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rekey_group_takes_over_the_old_groups_offsets() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};

    let topology = TestTopology::create(2).await;
    let terra = topology.topic("terra-direct");
    let repartition = topology.topology.sources.iter().find_map(|s| s.repartition_topic.clone()).expect("terra-direct is re-keyed");
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).create().unwrap();
    let healthcheck = br#"{"type":"healthcheck","status":"ok"}"#;
    for _ in 0..4 {
        producer.send(FutureRecord::<(), _>::to(&terra).partition(0).payload(&healthcheck[..]), Duration::from_secs(10)).await.unwrap();
    }
    // What a processor of the earlier version committed: all four read.
    let old: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", helpers::bootstrap())
        .set("group.id", &topology.topology.application_id)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut committed = TopicPartitionList::new();
    committed.add_partition_offset(&terra, 0, Offset::Offset(4)).unwrap();
    old.commit(&committed, rdkafka::consumer::CommitMode::Sync).unwrap();
    drop(old);

    let processor = helpers::spawn_processor(&topology, "upgrade", &[]);
    wait_for_tasks("the processor runs", &[(&processor, 2)], Duration::from_secs(60)).await;
    producer.send(FutureRecord::<(), _>::to(&terra).partition(0).payload(&healthcheck[..]), Duration::from_secs(10)).await.unwrap();

    let rekeyed = tokio::task::spawn_blocking(move || helpers::read_raw(&repartition, 10, Duration::from_secs(15))).await.unwrap();
    assert_eq!(rekeyed.len(), 1, "only the record after the carried-over offset is re-keyed\n{}", processor.log_tail());
    assert!(std::fs::read_to_string(&processor.log).unwrap().contains("Carried the re-keyed sources' offsets over"));
}
