//! One exactly-once loop: its consumer group membership, its transactional producer, its engine
//! and the OS thread that runs it. A processor runs two kinds:
//!
//! - **tasks**, once per stream thread (`PROCESSOR_THREADS`): the group `<application_id>`
//!   subscribed to the ingress topic alone; partition p is task p, assigned with its
//!   co-partitions (repartition, pending-fetch and fetch-retry p) and its stores. Each thread is
//!   its own member with its own producer (`thread_member`).
//! - **rekey**: the group `<application_id>-rekey` subscribed to the sources that are re-keyed
//!   (Terra's direct topic): stateless, it writes each record to the repartition topic, keyed by
//!   user, where task p reads it.
//!
//! Why two groups: a group's assignor balances the partitions its members subscribe to, not the
//! tasks behind them. With both topics in one subscription, cooperative-sticky gave one of two
//! instances all ten `raw-webhooks` partitions — every task and store — and the other all of
//! `terra-direct`, in 4 of 5 runs (ARCHITECTURE.md, "Balanced tasks"). Subscribed alone, the
//! ingress topic's partitions *are* the tasks, and the assignor's balance is the tasks' balance.
//! Each loop has its own transactional id (`<member>`, `<member>-<t>` and `<member>-rekey`), so a
//! restart fences all of its predecessors, and one loop's abort never touches another's records.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::context::RuntimeContext;
use super::engine::Engine;
use super::store;
use crate::config::KafkaArgs;
use crate::kafka::client_log::Throttled;
use crate::shutdown::CancellationToken;

/// The transactional producer of a stream loop; its client logs are rate-limited.
pub type TxProducer = BaseProducer<Throttled>;

/// librdkafka's `fetch.queue.backoff.ms` (default 1 000): how long a consumer waits to fetch again
/// once its prefetch queue is full. With 4.7 KB records the 64 MiB queue fills at about 13 600
/// records, and a backlogged processor then idled for a second at a time. `scripts/bench-processor`
/// at 100 000 records (BENCHMARKS.md, "Scale"): stateless 20 666 → 47 769 records/s, shipped
/// topology 20 272 → 28 467, restore of 100 000 baselines 1 455 → 960 ms, with 1 000 and 10 ms.
/// Overridable with `KAFKA_OPTIONS=fetch.queue.backoff.ms=…`.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// librdkafka's `queued.max.messages.kbytes` (default 65 536): the consumer's prefetch queue.
/// Each loop has a consumer and a restore consumer, and at the default their queues were most of
/// the instance's memory: `scripts/bench-processor` at 100 000 records (BENCHMARKS.md, "Per-record
/// cost"), the instance holding 100 000 users' baselines peaked at 231 MB with 64 MiB and 181 MB
/// with 16 MiB, the shipped topology ran at 36 700 and 37 167 records/s, the stateless one at
/// 59 878 and 55 863 (within the run-to-run noise). 16 MiB is still ~3 400 records of 4.7 KB,
/// refilled every 10 ms (`FETCH_QUEUE_BACKOFF_MS`). Overridable with `KAFKA_OPTIONS`.
pub const QUEUED_MAX_MESSAGES_KBYTES: &str = "16384";

/// librdkafka's `heartbeat.interval.ms` (default 3 000). A member learns of a rebalance from a
/// heartbeat's answer, and a cooperative rebalance takes two rounds, so with 3 s a second
/// instance joining waited 6 s before its tasks moved (`scripts/bench-processor`, 2 instances:
/// assigned 3.0 s and 2.9 s apart in the logs). One heartbeat a second per consumer costs the
/// coordinator nothing that matters. A third of the session timeout if that is shorter (as
/// librdkafka advises). Overridable with `KAFKA_OPTIONS`.
pub const HEARTBEAT_INTERVAL_MS: u64 = 1_000;

/// What distinguishes one loop from the other.
pub struct LoopSpec {
    /// `tasks` (`tasks-<t>` for stream thread t > 0) or `rekey`: the thread's name and the logs'
    /// `loop` field.
    pub name: String,
    pub group: String,
    /// Static membership id and transactional id.
    pub member: String,
    pub topics: Vec<String>,
}

/// The clients of one loop, created and with transactions initialised (which fences an earlier
/// producer with the same transactional id).
pub struct LoopClients {
    pub consumer: BaseConsumer<RuntimeContext>,
    pub producer: TxProducer,
    pub restorer: BaseConsumer<store::RestoreContext>,
}

/// Creates the loop's consumer, producer and restore consumer.
pub fn clients(
    kafka: &KafkaArgs,
    spec: &LoopSpec,
    application_id: &str,
    session_timeout_ms: u64,
    transaction_timeout_ms: u64,
    max_message_bytes: usize,
) -> anyhow::Result<LoopClients> {
    let (session_timeout, transaction_timeout) = (session_timeout_ms.to_string(), transaction_timeout_ms.to_string());
    let heartbeat = HEARTBEAT_INTERVAL_MS.min(session_timeout_ms / 3).max(1).to_string();
    let consumer: BaseConsumer<RuntimeContext> = kafka
        .config_with(&[
            ("group.id", &spec.group),
            ("group.instance.id", &spec.member),
            ("client.id", &spec.member),
            ("isolation.level", "read_committed"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("session.timeout.ms", &session_timeout),
            ("heartbeat.interval.ms", &heartbeat),
            ("statistics.interval.ms", "5000"),
            ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS),
            ("queued.max.messages.kbytes", QUEUED_MAX_MESSAGES_KBYTES),
        ])?
        .create_with_context(RuntimeContext { engine: Arc::new(Mutex::new(None)) })?;
    let producer: TxProducer = kafka
        .config_with(&[
            ("transactional.id", &spec.member),
            ("client.id", &spec.member),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("transaction.timeout.ms", &transaction_timeout),
            // Measured against 20 ms (BENCHMARKS.md, "Client settings"): no more records/s
            // within 100 ms transactions, and 25 ms more latency at p50.
            ("linger.ms", "5"),
            ("compression.type", "snappy"),
            ("message.max.bytes", &max_message_bytes.to_string()),
        ])?
        .create_with_context(Throttled)?;
    let restorer: BaseConsumer<store::RestoreContext> = kafka
        .config_with(&[
            ("group.id", &format!("{application_id}-restore")),
            ("client.id", &format!("{}-restore", spec.member)),
            ("isolation.level", "read_committed"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "50"),
            ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS),
            ("queued.max.messages.kbytes", QUEUED_MAX_MESSAGES_KBYTES),
        ])?
        .create_with_context(store::RestoreContext)?;
    Ok(LoopClients { consumer, producer, restorer })
}

/// `init_transactions`, retried while Kafka is unavailable (on a blocking thread).
pub async fn init_transactions(producer: TxProducer, shutdown: &CancellationToken) -> anyhow::Result<TxProducer> {
    let shutdown = shutdown.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<TxProducer> {
        let mut delay = Duration::from_millis(250);
        loop {
            match producer.init_transactions(Duration::from_secs(30)) {
                Ok(()) => return Ok(producer),
                Err(error) if shutdown.is_cancelled() => return Err(error.into()),
                Err(error) => {
                    crate::metrics::INFRA_RETRIES.with_label_values(&["kafka"]).inc();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "Could not initialise transactions; retrying.");
                    std::thread::sleep(delay);
                    delay = crate::startup::next_delay(delay);
                }
            }
        }
    })
    .await?
}

/// Subscribes and runs the loop on its own thread. When it ends, for whatever reason, it cancels
/// `shutdown`, so the other loop commits and stops too: the process lives and dies as one.
pub fn spawn(
    spec: &LoopSpec,
    consumer: BaseConsumer<RuntimeContext>,
    engine: Engine,
    shutdown: &CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    let shared = consumer.context().engine.clone();
    *shared.lock().expect("engine lock") = Some(engine);
    let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(r#loop = %spec.name, group = %spec.group, topics = ?spec.topics, "Subscribed.");
    let shutdown = shutdown.clone();
    let name = spec.name.clone();
    Ok(std::thread::Builder::new().name(format!("eos-{name}")).spawn(move || {
        // Every line of the loop, its rebalance callbacks included (they run inside its poll),
        // says which loop it is: with several stream threads, "Tasks assigned" needs an owner.
        let span = tracing::info_span!("stream", r#loop = %name);
        let _entered = span.enter();
        let result = super::eos::run_loop(&consumer, &shared, &shutdown);
        // The error itself is the process's, printed once by main.
        if result.is_err() {
            tracing::warn!(r#loop = %name, "A transaction loop stopped with an error; stopping the others.");
        }
        shutdown.cancel();
        drop(consumer);
        result
    })?)
}

/// Stream thread `thread`'s static member and transactional id. Thread 0 keeps the id of the
/// single loop of earlier versions, so that an upgrade's first start fences that producer and
/// aborts its open transaction at once instead of after `transaction.timeout.ms`.
pub fn thread_member(instance_member: &str, thread: usize) -> String {
    if thread == 0 { instance_member.to_owned() } else { format!("{instance_member}-{thread}") }
}

/// Where the re-key group starts the first time it exists: at the offsets the single group of
/// earlier versions committed for the same topics, so an upgrade neither re-reads Terra's retained
/// pointers nor skips any. A no-op once the re-key group has offsets of its own (or when there is
/// nothing to carry over). Committed while the group is empty, as a simple consumer may.
pub fn carry_over_offsets(kafka: &KafkaArgs, from_group: &str, to_group: &str, topics: &[String]) -> anyhow::Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let timeout = Duration::from_secs(10);
    let probe: BaseConsumer<DefaultConsumerContext> =
        kafka.config_with(&[("group.id", to_group), ("enable.auto.commit", "false")])?.create()?;
    let mut all = TopicPartitionList::new();
    for topic in topics {
        let metadata = probe.fetch_metadata(Some(topic), timeout)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            all.add_partition(topic, partition.id());
        }
    }
    let has_offsets = |list: &TopicPartitionList| list.elements().iter().any(|e| matches!(e.offset(), Offset::Offset(_)));
    if has_offsets(&probe.committed_offsets(all.clone(), timeout)?) {
        return Ok(());
    }
    let old_group: BaseConsumer<DefaultConsumerContext> =
        kafka.config_with(&[("group.id", from_group), ("enable.auto.commit", "false")])?.create()?;
    let previous = old_group.committed_offsets(all, timeout)?;
    if !has_offsets(&previous) {
        return Ok(());
    }
    let mut carried = TopicPartitionList::new();
    for element in previous.elements() {
        if let Offset::Offset(offset) = element.offset() {
            carried.add_partition_offset(element.topic(), element.partition(), Offset::Offset(offset))?;
        }
    }
    probe.commit(&carried, rdkafka::consumer::CommitMode::Sync)?;
    tracing::info!(
        from = from_group,
        to = to_group,
        partitions = carried.count(),
        "Carried the re-keyed sources' offsets over to the re-key group."
    );
    Ok(())
}
