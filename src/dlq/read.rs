//! Reading a topic with a bounded end, for the DLQ tools: every partition assigned (no group, no
//! offset commits: a tool must not disturb anyone's position), read_committed, from a start up to
//! the end offsets as they were when reading began — so `list` and `replay` finish even while the
//! processor keeps dead-lettering, and never show a record of an aborted transaction.
//!
//! Blocking (librdkafka's poll): callers run it in `spawn_blocking`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use super::letter::DeadLetter;
use crate::config::KafkaArgs;
use crate::shutdown::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Give up when the broker delivers nothing (no record, no end of partition) for this long.
const STALL: Duration = Duration::from_secs(30);

/// Where reading starts in every partition.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    Beginning,
    /// The first record with a timestamp at or after this, ms since the epoch.
    Timestamp(i64),
}

/// Keeps the end-of-partition events this reader asks for out of the error log: librdkafka also
/// reports them as "global errors" when they arrive after reading stopped (at close).
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!(%error, reason, "Kafka client error.");
        }
    }
}

impl ConsumerContext for ReaderContext {}

type Reader = BaseConsumer<ReaderContext>;

fn consumer(kafka: &KafkaArgs) -> anyhow::Result<Reader> {
    Ok(kafka
        .config_with(&[
            ("group.id", "biometric-bridge-dlq-tool"),
            ("isolation.level", "read_committed"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
        ])?
        .create_with_context(ReaderContext)?)
}

fn partitions(consumer: &Reader, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT).with_context(|| format!("metadata of {topic}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(!partitions.is_empty(), "topic {topic} does not exist");
    Ok(partitions)
}

/// Hands every committed record of `topic` from `start` to the current end to `visit`.
pub fn read_to_end(
    kafka: &KafkaArgs,
    topic: &str,
    start: Start,
    shutdown: &CancellationToken,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> anyhow::Result<()> {
    let consumer = consumer(kafka)?;
    let mut starts = TopicPartitionList::new();
    // Partition -> end offset (exclusive), for partitions with something left to read.
    let mut ends = HashMap::new();
    for partition in partitions(&consumer, topic)? {
        let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT).with_context(|| format!("end offsets of {topic}"))?;
        if high > low {
            ends.insert(partition, high);
        }
        let offset = match start {
            Start::Beginning => Offset::Beginning,
            Start::Timestamp(ms) => Offset::Offset(ms),
        };
        starts.add_partition_offset(topic, partition, offset)?;
    }
    if let Start::Timestamp(_) = start {
        starts = consumer.offsets_for_times(starts, TIMEOUT).with_context(|| format!("offsets by time of {topic}"))?;
        for element in starts.elements() {
            if !matches!(element.offset(), Offset::Offset(_)) {
                ends.remove(&element.partition()); // nothing at or after that time
            }
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer.assign(&starts)?;
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        anyhow::ensure!(!shutdown.is_cancelled(), "interrupted");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let Some(&end) = ends.get(&message.partition()) else { continue };
                if message.offset() < end {
                    visit(&message);
                }
                if message.offset() + 1 >= end {
                    ends.remove(&message.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                last_progress = Instant::now();
                ends.remove(&partition);
            }
            Some(Err(error)) => return Err(error).with_context(|| format!("reading {topic}")),
            None => anyhow::ensure!(last_progress.elapsed() < STALL, "reading {topic}: nothing from the broker for {} s", STALL.as_secs()),
        }
    }
    Ok(())
}

/// The dead letter at `partition/offset` of `topic`.
pub fn read_one(kafka: &KafkaArgs, topic: &str, partition: i32, offset: i64) -> anyhow::Result<DeadLetter> {
    let consumer = consumer(kafka)?;
    anyhow::ensure!(partitions(&consumer, topic)?.contains(&partition), "{topic} has no partition {partition}");
    let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
    anyhow::ensure!(
        (low..high).contains(&offset),
        "{partition}/{offset} is not in {topic}: partition {partition} holds offsets {low} to {}",
        high - 1
    );
    let mut start = TopicPartitionList::new();
    start.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&start)?;
    let deadline = Instant::now() + STALL;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.offset() == offset => return Ok(DeadLetter::from_message(&message)),
            Some(Ok(message)) => anyhow::bail!(
                "no committed record at {partition}/{offset} (a transaction marker or an aborted record); the next is {partition}/{}",
                message.offset()
            ),
            Some(Err(KafkaError::PartitionEOF(_))) => anyhow::bail!("no committed record at {partition}/{offset}"),
            Some(Err(error)) => return Err(error).with_context(|| format!("reading {topic}")),
            None => {}
        }
    }
    anyhow::bail!("reading {topic}: nothing from the broker for {} s", STALL.as_secs())
}
