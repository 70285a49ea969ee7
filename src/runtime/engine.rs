//! The exactly-once engine: one transactional producer, the open transaction, and the tasks.
//!
//! Every consumed record is processed inside the open transaction: its outputs, the changelog
//! records of the stores it changed, and (at commit) the input offsets — sent with the consumer
//! group's metadata, so the group coordinator fences a zombie that lost its partitions (KIP-447).
//! Either all of that becomes visible to read_committed readers, or none of it.
//!
//! Errors follow librdkafka's classes: retriable -> retry the same call; abortable -> abort, rewind
//! every partition to its committed offset and rebuild the stores from their changelogs (the
//! in-memory tables may hold aborted changes); fatal (fenced, invalid producer id mapping) ->
//! stop, so a supervisor restarts the instance with a fresh producer.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig};
use rdkafka::{Offset, TopicPartitionList};

use super::fetching::FetchStage;
use super::identities::BlockingIdentities;
use super::store;
use super::stream_loop::TxProducer;
use super::task::Task;
use crate::processor::{InfraError, Output, Pipeline, Record, TaskStores, TopicLimits};

mod fetch;

/// Timeout of each blocking transactional call.
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often dedup stores drop expired ids.
const PURGE_EVERY_MS: i64 = 60_000;
/// How often clock-driven work runs.
const TIMER_EVERY: Duration = Duration::from_secs(1);

/// Why a transaction step failed, by what must happen next.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// Abort, rewind, continue.
    #[error("transaction must be aborted: {0}")]
    Abortable(String),
    /// The producer cannot continue (fenced by a newer instance, or broken): stop.
    #[error("fatal producer error: {0}")]
    Fatal(String),
}

/// Classifies a Kafka error from a transactional call.
fn classify(error: &KafkaError) -> (bool, TxnError) {
    let text = error.to_string();
    if let Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerIdMapping) =
        error.rdkafka_error_code()
    {
        return (false, TxnError::Fatal(text));
    }
    if let KafkaError::Transaction(rd) = error {
        if rd.is_fatal() {
            return (false, TxnError::Fatal(text));
        }
        if rd.txn_requires_abort() {
            return (false, TxnError::Abortable(text));
        }
        if rd.is_retriable() {
            return (true, TxnError::Abortable(text));
        }
    }
    (false, TxnError::Abortable(text))
}

/// Why the loop must leave its rhythm.
#[derive(Debug)]
pub enum Interrupt {
    /// A dependency is down: nothing of the record at `at` (topic, partition, offset) was
    /// written; it must be consumed again once the dependency is back.
    Outage { infra: InfraError, at: (String, i32, i64) },
    /// The transaction failed.
    Txn(TxnError),
}

impl From<TxnError> for Interrupt {
    fn from(error: TxnError) -> Self {
        Interrupt::Txn(error)
    }
}

/// Settings of the commit cadence.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub interval: Duration,
    pub max_records: usize,
}

/// The open transaction's bookkeeping.
#[derive(Default)]
struct OpenTxn {
    started: Option<Instant>,
    records: usize,
    /// Next offset to consume per input partition (last processed + 1).
    offsets: HashMap<(String, i32), i64>,
    /// `received_at` of the events in this transaction, for the end-to-end latency metric.
    received_at: Vec<i64>,
}

pub struct Engine {
    producer: TxProducer,
    pipeline: Pipeline,
    identities: BlockingIdentities,
    /// Consumer used only to restore stores from changelogs.
    restorer: BaseConsumer<store::RestoreContext>,
    tasks: BTreeMap<i32, Task>,
    txn: OpenTxn,
    cadence: Cadence,
    /// Topics whose partition p belongs to task p.
    task_topics: Vec<String>,
    /// Topics assigned alongside the group-assigned leader topic (repartition topics).
    co_topics: Vec<String>,
    leader_topic: String,
    /// Set when an abort happened inside a callback: the loop must rewind before processing.
    pub needs_rewind: bool,
    /// Set when a callback hit a fatal error: the loop must stop.
    pub fatal: Option<TxnError>,
    /// The fetch stage, when this processor fetches from vendor APIs.
    pub fetch: Option<FetchStage>,
    /// The largest record each output topic takes: outputs are checked against it before sending.
    limits: TopicLimits,
    /// When the clock-driven work last ran ([`Engine::run_timers`]).
    timers_at: Instant,
    /// Consumer lag per assigned partition, from what this engine committed.
    pub lag: super::lag::Lag,
    /// Opens sealed records (`DATA_ENCRYPTION_KEY`); without a key a sealed record is an outage.
    at_rest: crate::at_rest::BlockingReader,
    /// This thread's part of the instance's gauges.
    pub gauges: super::gauges::ThreadGauges,
}

impl Engine {
    pub fn new(
        producer: TxProducer,
        pipeline: Pipeline,
        identities: BlockingIdentities,
        restorer: BaseConsumer<store::RestoreContext>,
        cadence: Cadence,
        fetch: Option<FetchStage>,
        limits: TopicLimits,
    ) -> Engine {
        let topology = pipeline.topology().clone();
        let leader_topic = topology
            .sources
            .iter()
            .find(|s| s.format == crate::topology::SourceFormat::Ingress)
            .map(|s| s.topic.clone())
            .expect("validated topology has an ingress source");
        let mut co_topics: Vec<String> = topology.sources.iter().filter_map(|s| s.repartition_topic.clone()).collect();
        if fetch.is_some() {
            co_topics.push(topology.pending_fetch_topic.clone());
            co_topics.push(topology.fetch.retry_topic.clone());
        }
        let mut task_topics = vec![leader_topic.clone()];
        task_topics.extend(co_topics.iter().cloned());
        Engine {
            producer,
            pipeline,
            identities,
            restorer,
            tasks: BTreeMap::new(),
            txn: OpenTxn::default(),
            cadence,
            task_topics,
            co_topics,
            leader_topic,
            needs_rewind: false,
            fatal: None,
            fetch,
            limits,
            timers_at: Instant::now(),
            lag: super::lag::Lag::default(),
            at_rest: crate::at_rest::BlockingReader { keys: None, handle: tokio::runtime::Handle::current() },
            gauges: Default::default(),
        }
    }

    /// Opens sealed records with `keys`.
    pub fn with_data_keys(mut self, keys: Option<std::sync::Arc<crate::at_rest::DataKeys>>) -> Engine {
        self.at_rest.keys = keys;
        self
    }

    pub fn identities(&self) -> &BlockingIdentities {
        &self.identities
    }

    pub fn txn_open(&self) -> bool {
        self.txn.started.is_some()
    }

    /// Whether the open transaction is due to commit.
    pub fn commit_due(&self) -> bool {
        self.txn.started.is_some_and(|started| started.elapsed() >= self.cadence.interval || self.txn.records >= self.cadence.max_records)
    }

    /// How long the loop may block in poll before the open transaction is due (or, while
    /// fetches run, before their results should be looked at).
    pub fn poll_timeout(&self) -> Duration {
        if self.fetch.as_ref().is_some_and(|fetch| fetch.waiting() > 0) {
            return Duration::from_millis(2);
        }
        match self.txn.started {
            Some(started) => self.cadence.interval.saturating_sub(started.elapsed()).max(Duration::from_millis(1)),
            None => Duration::from_millis(100),
        }
    }

    /// Adds the co-partitions (repartition topic p for leader topic p) to an assignment change.
    pub fn add_co_partitions(&self, tpl: &mut TopicPartitionList) {
        let leader_partitions: Vec<i32> = tpl.elements().iter().filter(|e| e.topic() == self.leader_topic).map(|e| e.partition()).collect();
        for partition in leader_partitions {
            for topic in &self.co_topics {
                if tpl.find_partition(topic, partition).is_none() {
                    tpl.add_partition(topic, partition);
                }
            }
        }
    }

    /// Creates and restores the tasks of newly assigned leader partitions.
    pub fn on_assigned(&mut self, assigned: &TopicPartitionList) -> Result<(), store::RestoreError> {
        let topology = self.pipeline.topology().clone();
        let new: Vec<i32> = assigned
            .elements()
            .iter()
            .filter(|e| e.topic() == self.leader_topic && !self.tasks.contains_key(&e.partition()))
            .map(|e| e.partition())
            .collect();
        // The re-key loop's engine is never assigned a task partition: nothing to say for it.
        if new.is_empty() {
            return Ok(());
        }
        let mut tasks: Vec<Task> = new.into_iter().map(|partition| Task::new(&topology, partition)).collect();
        restore_tasks(&self.restorer, &mut tasks)?;
        self.tasks.extend(tasks.into_iter().map(|task| (task.partition, task)));
        self.publish_store_sizes();
        self.gauges.tasks(self.tasks.len());
        tracing::info!(tasks = ?self.tasks.keys().collect::<Vec<_>>(), "Tasks assigned.");
        Ok(())
    }

    /// Drops the tasks of revoked leader partitions (and the fetches waiting on them).
    pub fn on_revoked(&mut self, revoked: &TopicPartitionList) {
        self.lag.revoked(revoked.elements().iter().map(|e| (e.topic(), e.partition())));
        if !revoked.elements().iter().any(|e| e.topic() == self.leader_topic) {
            return;
        }
        for element in revoked.elements() {
            if let Some(fetch) = self.fetch.as_mut() {
                // Revoked: no need to resume it.
                fetch.drop_partition(element.topic(), element.partition());
            }
            if element.topic() == self.leader_topic {
                self.tasks.remove(&element.partition());
            }
        }
        self.publish_store_sizes();
        self.gauges.tasks(self.tasks.len());
        tracing::info!(tasks = ?self.tasks.keys().collect::<Vec<_>>(), "Tasks revoked.");
    }

    /// Rebuilds every task's stores from the changelogs (after an abort).
    pub fn restore_all(&mut self) -> Result<(), store::RestoreError> {
        let topology = self.pipeline.topology().clone();
        let mut tasks: Vec<Task> = self.tasks.keys().map(|partition| Task::new(&topology, *partition)).collect();
        restore_tasks(&self.restorer, &mut tasks)?;
        self.tasks = tasks.into_iter().map(|task| (task.partition, task)).collect();
        self.publish_store_sizes();
        Ok(())
    }

    fn publish_store_sizes(&mut self) {
        let mut totals: HashMap<&str, usize> = HashMap::new();
        for task in self.tasks.values() {
            for (name, size) in task.sizes() {
                *totals.entry(name).or_default() += size;
            }
        }
        self.gauges.store_entries(&totals);
    }

    fn begin_if_needed(&mut self) -> Result<(), TxnError> {
        if self.txn.started.is_none() {
            self.producer.begin_transaction().map_err(|error| classify(&error).1)?;
            self.txn.started = Some(Instant::now());
        }
        Ok(())
    }

    /// Processes one record inside the open transaction (a fetch-stage record: starts its fetch;
    /// [`Engine::write_finished_fetches`] writes the result later).
    pub fn process(&mut self, message: &BorrowedMessage<'_>) -> Result<(), Interrupt> {
        let record = Record {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            payload: message.payload(),
            headers: message.headers(),
            timestamp_ms: message.timestamp().to_millis(),
            at_rest: None,
        };
        let at = || (record.topic.to_owned(), record.partition, record.offset);
        let opening = super::sealed::open(&self.at_rest, &record).map_err(|infra| Interrupt::Outage { infra, at: at() })?;
        if matches!(opening, super::sealed::Opening::Erased) {
            // A fetch-stage record keeps its place in its partition's queue: its offset must not
            // be committed past records still fetching ahead of it.
            if self.fetch.is_some() && self.pipeline.is_fetch_topic(record.topic) {
                return self.start_fetch(message, None);
            }
            return Ok(self.write(&record, Vec::new(), false)?);
        }
        if record.payload.is_none() && crate::kafka::headers::get(record.headers, crate::kafka::headers::ERASE_USER).is_some() {
            // An erase deleted data keys: none cached here may be used again.
            self.at_rest.forget_cached();
        }
        let record = super::sealed::view(record, &opening);
        if self.fetch.is_some() && self.pipeline.is_fetch_topic(record.topic) {
            return self.start_fetch(message, Some(&record));
        }
        let stateful = self.task_topics.iter().any(|t| t == record.topic);
        let stores = task_stores(&mut self.tasks, record.partition, stateful);
        let outputs = self
            .pipeline
            .process(&record, &mut self.identities, stores)
            .and_then(|outputs| super::sealed::seal_outputs(&self.at_rest, outputs))
            .map_err(|infra| Interrupt::Outage { infra, at: at() })?;
        self.write(&record, outputs, stateful)?;
        Ok(())
    }

    /// Sends `outputs` of `record` in the open transaction and moves its partition's offset on
    /// (and, for a task's record, the task's stream time).
    fn write(&mut self, record: &Record<'_>, outputs: Vec<Output>, stateful: bool) -> Result<(), TxnError> {
        // Checked before anything is sent: one output the broker would refuse would abort the
        // whole transaction, again and again.
        let outputs = self.pipeline.fit_outputs(record, outputs, &self.limits);
        self.begin_if_needed()?;
        for output in outputs {
            if let Some(received_at) = output.received_at_ms {
                self.txn.received_at.push(received_at);
            }
            self.send(output)?;
        }
        if let Some(task) = self.tasks.get_mut(&record.partition).filter(|_| stateful)
            && let Some(received_at) =
                crate::kafka::headers::get(record.headers, crate::kafka::headers::RECEIVED_AT).and_then(|v| v.parse().ok())
        {
            task.stream_time_ms = task.stream_time_ms.max(received_at);
        }
        self.txn.offsets.insert((record.topic.to_owned(), record.partition), record.offset + 1);
        self.txn.records += 1;
        Ok(())
    }

    fn send(&self, output: Output) -> Result<(), TxnError> {
        let mut record = BaseRecord::<Vec<u8>, Vec<u8>>::to(&output.topic).payload(&output.payload).headers(output.headers);
        if let Some(key) = &output.key {
            record = record.key(key);
        }
        send_with_backpressure(&self.producer, record)
    }

    /// Expires old dedup ids, then sends every store's changed keys to its changelog (inside the
    /// open transaction, just before the offsets).
    fn flush_stores(&mut self) -> Result<(), TxnError> {
        if let Some(params) = self.pipeline.topology().dedup {
            self.purge_expired(params.window_ms);
        }

        let changelog: Vec<_> = self.tasks.values_mut().flat_map(Task::drain_changelog).collect();
        for (topic, partition, (key, value)) in changelog {
            send_changelog(&self.producer, &topic, partition, &key, value.as_deref())?;
        }
        Ok(())
    }

    /// Work that is due by the clock rather than by a record: the Terra backfills that stopped
    /// short of their expected chunks are dead-lettered (checked every second, whether or not
    /// records arrive: an idle partition must still report them).
    pub fn run_timers(&mut self) -> Result<(), TxnError> {
        if self.timers_at.elapsed() < TIMER_EVERY {
            return Ok(());
        }
        self.timers_at = Instant::now();
        let letters = self.expire_backfills();
        if !letters.is_empty() {
            self.begin_if_needed()?;
            for letter in letters {
                self.send(letter)?;
            }
        }
        Ok(())
    }

    /// Dead letters for the Terra backfills that stopped short of their expected chunks.
    fn expire_backfills(&mut self) -> Vec<Output> {
        let Some(params) = self.pipeline.topology().backfill else { return Vec::new() };
        let (mut letters, now_ms) = (Vec::new(), chrono::Utc::now().timestamp_millis());
        for task in self.tasks.values_mut() {
            if let Some(store) = task.backfill.as_mut() {
                for (key, state) in crate::processor::backfill::expire(store, now_ms, params.timeout_ms) {
                    tracing::warn!(backfill = %key, received = state.chunks.len(), expected = ?state.expected, "Terra large request incomplete after its timeout.");
                    letters.push(self.pipeline.backfill_incomplete(&key, &state));
                }
            }
        }
        letters
    }

    fn purge_expired(&mut self, window_ms: i64) {
        for task in self.tasks.values_mut() {
            if task.stream_time_ms == i64::MIN || task.stream_time_ms.saturating_sub(task.last_purge_ms) < PURGE_EVERY_MS {
                continue;
            }
            task.last_purge_ms = task.stream_time_ms;
            if let Some(store) = task.dedup.as_mut() {
                let purged = crate::processor::dedup::purge(store, task.stream_time_ms, window_ms);
                if purged > 0 {
                    tracing::debug!(partition = task.partition, purged, "Expired de-duplication ids.");
                }
            }
        }
    }

    /// Commits the open transaction (offsets included). Retriable errors are retried here.
    pub fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), TxnError> {
        if self.txn.started.is_none() {
            return Ok(());
        }
        let started = Instant::now();
        self.flush_stores()?;
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.txn.offsets {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|error| TxnError::Abortable(error.to_string()))?;
        }
        let metadata = consumer.group_metadata().ok_or_else(|| TxnError::Abortable("consumer has no group metadata".into()))?;
        let flushed = started.elapsed();
        retry(|| self.producer.send_offsets_to_transaction(&offsets, &metadata, TXN_CALL_TIMEOUT))?;
        let offsets_sent = started.elapsed();
        wait_for_deliveries(&self.producer, TXN_CALL_TIMEOUT);
        retry(|| self.producer.commit_transaction(TXN_CALL_TIMEOUT))?;

        let now = chrono::Utc::now().timestamp_millis();
        for received_at in self.txn.received_at.drain(..) {
            crate::metrics::END_TO_END_LATENCY.observe((now - received_at).max(0) as f64 / 1000.0);
        }
        crate::metrics::TXN_COMMITS.inc();
        crate::metrics::TXN_COMMIT_DURATION.observe(started.elapsed().as_secs_f64());
        self.lag.committed(&self.txn.offsets);
        tracing::debug!(
            records = self.txn.records,
            stores_ms = flushed.as_millis() as u64,
            offsets_ms = (offsets_sent - flushed).as_millis() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Transaction committed."
        );
        self.txn = OpenTxn::default();
        self.publish_store_sizes();
        Ok(())
    }

    /// Aborts the open transaction; the caller must rewind (see [`Engine::rewind`]).
    pub fn abort(&mut self, reason: &str) -> Result<(), TxnError> {
        crate::metrics::TXN_ABORTS.with_label_values(&[reason]).inc();
        let had_txn = self.txn.started.is_some();
        self.txn = OpenTxn::default();
        // Waiting fetches lie past the committed offsets: the rewind brings them back.
        if let Some(fetch) = self.fetch.as_mut() {
            fetch.clear();
        }
        if had_txn {
            tracing::warn!(reason, "Aborting the transaction.");
            // abort_transaction waits for every queued record to be reported, and with the event
            // API only we serve those reports: drop what was never sent, serve the rest, then
            // abort (found by the mock-cluster fault-injection test, which hung here).
            self.producer.purge(PurgeConfig::default().queue());
            wait_for_deliveries(&self.producer, TXN_CALL_TIMEOUT);
            retry(|| self.producer.abort_transaction(TXN_CALL_TIMEOUT))?;
        }
        self.needs_rewind = true;
        Ok(())
    }

    /// Seeks every assigned partition back to its committed offset and rebuilds the stores, so
    /// processing resumes exactly after the last committed transaction.
    pub fn rewind<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), TxnError> {
        let assignment = consumer.assignment().map_err(|e| TxnError::Abortable(e.to_string()))?;
        if assignment.count() > 0 {
            let committed = consumer.committed_offsets(assignment, TXN_CALL_TIMEOUT).map_err(|e| TxnError::Abortable(e.to_string()))?;
            self.lag.assigned(committed_offsets(&committed));
            let mut seek = TopicPartitionList::new();
            for element in committed.elements() {
                let offset = match element.offset() {
                    Offset::Offset(offset) => Offset::Offset(offset),
                    _ => Offset::Beginning,
                };
                seek.add_partition_offset(element.topic(), element.partition(), offset).map_err(|e| TxnError::Abortable(e.to_string()))?;
            }
            consumer.seek_partitions(seek, TXN_CALL_TIMEOUT).map_err(|e| TxnError::Abortable(e.to_string()))?;
        }
        self.restore_all().map_err(|e| TxnError::Abortable(e.to_string()))?;
        self.needs_rewind = false;
        tracing::info!("Rewound to the committed offsets; stores rebuilt from their changelogs.");
        Ok(())
    }
}

/// The stores of task `partition` for a record of a task topic; none for a stateless one.
fn task_stores(tasks: &mut BTreeMap<i32, Task>, partition: i32, stateful: bool) -> TaskStores<'_> {
    match tasks.get_mut(&partition).filter(|_| stateful) {
        Some(task) => task.task_stores(),
        None => TaskStores { dedup: None, baseline: None, backfill: None },
    }
}

/// Restores the stores of `tasks` together (one pass per changelog topic).
fn restore_tasks(restorer: &BaseConsumer<store::RestoreContext>, tasks: &mut [Task]) -> Result<(), store::RestoreError> {
    let mut all: Vec<&mut dyn store::Restorable> = tasks.iter_mut().flat_map(Task::restorables).collect();
    store::restore(restorer, &mut all)
}

/// Retries a transactional call while librdkafka says it is retriable.
fn retry(mut call: impl FnMut() -> Result<(), KafkaError>) -> Result<(), TxnError> {
    let mut attempt = 0u32;
    loop {
        match call() {
            Ok(()) => return Ok(()),
            Err(error) => {
                let (retriable, classified) = classify(&error);
                attempt += 1;
                if retriable && attempt < 10 {
                    tracing::warn!(%error, attempt, "Retriable transaction error; retrying.");
                    std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
                    continue;
                }
                if matches!(classified, TxnError::Fatal(_)) {
                    crate::metrics::PRODUCER_FENCED.inc();
                }
                return Err(classified);
            }
        }
    }
}

/// Serves delivery reports until every record of the transaction is acknowledged.
///
/// `BaseProducer::commit_transaction` flushes first, but its flush polls in fixed 100 ms steps,
/// which alone capped the processor at ~10 commits a second; with nothing in flight it returns at
/// once. Nor does this wait in `poll(1 ms)` steps, as it did: rust-rdkafka's `poll(d)` keeps
/// polling until `d` has passed, and once less than a millisecond is left it polls librdkafka
/// with a zero timeout, so every report that arrived early turned the rest of the millisecond
/// into a busy loop (`perf`: 30 % of the processor's samples, in `clock_gettime`). A report is
/// served as soon as it is there; between reports the thread sleeps.
fn wait_for_deliveries(producer: &TxProducer, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut in_flight = producer.in_flight_count();
    while in_flight > 0 && Instant::now() < deadline {
        producer.poll(Duration::ZERO);
        let left = producer.in_flight_count();
        if left == in_flight {
            std::thread::sleep(DELIVERY_WAIT_STEP);
        }
        in_flight = left;
    }
}

/// The sleep between two looks for delivery reports while a commit waits (and while the local
/// queue is full): short against a commit's 4 to 40 ms, long enough not to spin.
const DELIVERY_WAIT_STEP: Duration = Duration::from_micros(250);

fn send_changelog(producer: &TxProducer, topic: &str, partition: i32, key: &str, value: Option<&[u8]>) -> Result<(), TxnError> {
    let mut record = BaseRecord::<str, [u8]>::to(topic).partition(partition).key(key);
    if let Some(value) = value {
        record = record.payload(value);
    }
    send_with_backpressure(producer, record)
}

/// Enqueues a record; a full local queue is waited out by serving delivery reports.
fn send_with_backpressure<K, P>(producer: &TxProducer, mut record: BaseRecord<'_, K, P>) -> Result<(), TxnError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.poll(Duration::ZERO);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                // Room is made by delivery reports (see `wait_for_deliveries` for why not poll(5 ms)).
                producer.poll(Duration::ZERO);
                std::thread::sleep(DELIVERY_WAIT_STEP);
                record = returned;
            }
            Err((error, _)) => return Err(classify(&error).1),
        }
    }
}

/// (topic, partition, committed offset or `None`) of a list from `committed_offsets`.
pub fn committed_offsets(list: &TopicPartitionList) -> Vec<(String, i32, Option<i64>)> {
    list.elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            (e.topic().to_owned(), e.partition(), offset)
        })
        .collect()
}
