//! The sink loop: consume into a batch, write the batch and its offsets in one transaction when
//! it is full (`SINK_BATCH_SIZE`) or old enough (`SINK_BATCH_MS`), repeat.
//!
//! - PostgreSQL unavailable: the partitions are paused and nothing more is consumed; the *same*
//!   batch is retried with exponential backoff until it commits, then consumption resumes where it
//!   stopped. Without group membership (see `consumer.rs`) nothing needs polling meanwhile.
//! - The schema registry unavailable: the record being decoded waits the same way.
//! - Another instance moved the offsets (fenced): the batch is dropped and the consumer is
//!   re-positioned from `sink_offsets`, the single source of truth.
//! - Shutdown: the open batch is written if PostgreSQL takes it at once, otherwise dropped — it
//!   was not committed, so the next start reads it again. Either way the process exits 0.
//! - Idle: the consumer position can move past transaction markers with no record to write; an
//!   offset-only transaction then stores it, so a caught-up sink's offsets are the end offsets.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use sqlx::PgPool;

use super::Backoff;
use super::SinkArgs;
use super::batch::{Batch, Offsets, TopicPartition};
use super::consumer::{self, SinkConsumer};
use super::decode::EventDecoder;
use super::offsets;
use super::write::{self, WriteError};
use crate::shutdown::CancellationToken;

/// How often the topics' partition lists are re-read, to notice partitions added to a topic.
const PARTITION_REFRESH: Duration = Duration::from_secs(30);

pub struct Settings {
    pub sink: String,
    pub topics: Vec<String>,
    pub batch_size: usize,
    pub batch_wait: Duration,
}

pub struct Worker {
    settings: Settings,
    consumer: SinkConsumer,
    pool: PgPool,
    decoder: EventDecoder,
    /// What `sink_offsets` holds for this sink, as of this instance's last commit.
    committed: Offsets,
    assigned: BTreeSet<TopicPartition>,
}

impl Worker {
    /// Waits for PostgreSQL (migrations, stored offsets) and the topics, then assigns every
    /// partition at its stored offset. `None` when shut down while waiting.
    pub async fn start(args: &SinkArgs, settings: Settings, shutdown: &CancellationToken) -> anyhow::Result<Option<Worker>> {
        let consumer = consumer::create(&args.kafka, &settings.sink)?;
        let decoder = EventDecoder::new(args.registry.settings()?);
        let mut backoff = Backoff::new();
        let (pool, committed) = loop {
            let attempt = async {
                let pool = args.database.migrated_pool().await?;
                let committed = offsets::load(&pool, &settings.sink).await?;
                anyhow::Ok((pool, committed))
            };
            match attempt.await {
                Ok(ready) => break ready,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = backoff.delay_ms(),
                        "PostgreSQL unavailable at start; retrying."
                    );
                    if !backoff.wait("postgresql", shutdown).await {
                        return Ok(None);
                    }
                }
            }
        };
        let mut backoff = Backoff::new();
        let assigned = loop {
            match tokio::task::block_in_place(|| consumer::partitions(&consumer, &settings.topics)) {
                Ok(found) => break found,
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = backoff.delay_ms(), "Event topics not readable yet; retrying.");
                    if !backoff.wait("kafka", shutdown).await {
                        return Ok(None);
                    }
                }
            }
        };
        consumer.assign(&consumer::positioned(&assigned, &committed))?;
        tracing::info!(partitions = assigned.len(), stored = committed.len(), "Assigned every partition at its stored offset.");
        Ok(Some(Worker { settings, consumer, pool, decoder, committed, assigned }))
    }

    /// Runs until shutdown.
    pub async fn run(mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut batch = Batch::default();
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut idle = tokio::time::interval(self.settings.batch_wait);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + PARTITION_REFRESH, PARTITION_REFRESH);
        loop {
            let due = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.flush(&mut batch, shutdown).await;
                    tracing::info!(sink = %self.settings.sink, "Sink stopped.");
                    return Ok(());
                }
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        if !self.add(&mut batch, &message, shutdown).await {
                            // Shut down while the registry was away. No flush: the consumer
                            // position is already past the record that was not added.
                            tracing::info!(records = batch.records(), "Shutting down with an uncommitted batch; it is read again at the next start.");
                            return Ok(());
                        }
                        false
                    }
                    Err(error) => {
                        crate::metrics::ERRORS.with_label_values(&["sink", "consumer_error"]).inc();
                        tracing::warn!(%error, "Consumer error.");
                        false
                    }
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => true,
                _ = idle.tick(), if deadline.is_none() => true,
                _ = refresh.tick() => {
                    self.refresh_partitions();
                    false
                }
            };
            if deadline.is_none() && batch.records() > 0 {
                deadline = Some(tokio::time::Instant::now() + self.settings.batch_wait);
            }
            if due || batch.records() >= self.settings.batch_size {
                self.flush(&mut batch, shutdown).await;
                deadline = None;
            }
        }
    }

    /// Decodes `message` into the batch (a row, or a skipped record that still moves the offset).
    /// `false` when shut down while waiting for the registry.
    async fn add(&self, batch: &mut Batch, message: &BorrowedMessage<'_>, shutdown: &CancellationToken) -> bool {
        let mut backoff = Backoff::new();
        let decoded = loop {
            match self.decoder.decode(message.payload()).await {
                Ok(decoded) => break decoded,
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = backoff.delay_ms(), "Cannot decode events without the schema registry; retrying.");
                    if !backoff.wait("schema_registry", shutdown).await {
                        return false;
                    }
                }
            }
        };
        let row = decoded
            .map_err(|skipped| {
                crate::metrics::ERRORS.with_label_values(&["sink", skipped.code]).inc();
                tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    error = %skipped,
                    "Event record skipped: it cannot be written."
                );
            })
            .ok();
        batch.push(message.topic(), message.partition(), message.offset(), row);
        true
    }

    /// Writes `batch` with its offsets, retrying while PostgreSQL is unavailable; afterwards the
    /// batch is empty (written, or dropped on fencing or shutdown).
    async fn flush(&mut self, batch: &mut Batch, shutdown: &CancellationToken) {
        // Every record consumed is in the batch, so the position is the batch's end — or past
        // it, over transaction markers and aborted records that follow the last record.
        match self.consumer.position() {
            Ok(positions) => {
                for element in positions.elements() {
                    if let Offset::Offset(next) = element.offset() {
                        batch.advance(element.topic(), element.partition(), next);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "Could not read the consumer position."),
        }
        batch.drop_unmoved(&self.committed);
        if batch.is_empty() {
            return;
        }
        let mut backoff = Backoff::new();
        let mut paused = false;
        loop {
            let started = Instant::now();
            match write::write(&self.pool, &self.settings.sink, batch, &self.committed).await {
                Ok(written) => {
                    crate::metrics::SINK_ROWS.inc_by(written.rows as u64);
                    crate::metrics::SINK_BATCH_DURATION.observe(started.elapsed().as_secs_f64());
                    tracing::debug!(records = batch.records(), rows = written.rows, refused = written.rejected, "Batch committed.");
                    self.committed.extend(batch.offsets().iter().map(|(tp, next)| (tp.clone(), *next)));
                    break;
                }
                Err(WriteError::Fenced(fenced)) => {
                    crate::metrics::ERRORS.with_label_values(&["sink", "fenced"]).inc();
                    tracing::error!(error = %fenced, "Batch dropped; re-reading positions from sink_offsets.");
                    *batch = Batch::default();
                    if paused {
                        self.set_paused(false);
                    }
                    self.reposition(shutdown).await;
                    return;
                }
                Err(WriteError::Database(error)) => {
                    if !paused {
                        self.set_paused(true);
                        paused = true;
                    }
                    tracing::warn!(%error, records = batch.records(), retry_in_ms = backoff.delay_ms(), "PostgreSQL unavailable; consumption paused, retrying the batch.");
                    if !backoff.wait("postgresql", shutdown).await {
                        tracing::info!(
                            records = batch.records(),
                            "Shutting down with an uncommitted batch; it is read again at the next start."
                        );
                        *batch = Batch::default();
                        return;
                    }
                }
            }
        }
        if paused {
            self.set_paused(false);
            tracing::info!("PostgreSQL is back; consumption resumed.");
        }
        *batch = Batch::default();
    }

    fn set_paused(&self, pause: bool) {
        let partitions = consumer::list(&self.assigned);
        let result = if pause { self.consumer.pause(&partitions) } else { self.consumer.resume(&partitions) };
        if let Err(error) = result {
            tracing::warn!(%error, pause, "Could not pause or resume the partitions.");
        }
    }

    /// Re-assigns every partition at the offsets `sink_offsets` holds now.
    async fn reposition(&mut self, shutdown: &CancellationToken) {
        let mut backoff = Backoff::new();
        loop {
            match offsets::load(&self.pool, &self.settings.sink).await {
                Ok(stored) => {
                    match self.consumer.assign(&consumer::positioned(&self.assigned, &stored)) {
                        Ok(()) => self.committed = stored,
                        Err(error) => tracing::error!(%error, "Could not re-assign the partitions."),
                    }
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = backoff.delay_ms(), "PostgreSQL unavailable; retrying.");
                    if !backoff.wait("postgresql", shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Adds partitions that appeared in the topics since the last look.
    fn refresh_partitions(&mut self) {
        let found = match tokio::task::block_in_place(|| consumer::partitions(&self.consumer, &self.settings.topics)) {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "Could not re-read the topics' partitions.");
                return;
            }
        };
        let new: BTreeSet<TopicPartition> = found.difference(&self.assigned).cloned().collect();
        if new.is_empty() {
            return;
        }
        match self.consumer.incremental_assign(&consumer::positioned(&new, &self.committed)) {
            Ok(()) => {
                tracing::info!(partitions = ?new, "New partitions assigned.");
                self.assigned.extend(new);
            }
            Err(error) => tracing::error!(%error, "Could not assign new partitions."),
        }
    }
}
