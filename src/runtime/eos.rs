//! The consume-transform-produce loop, on its own OS thread (transactional calls block).
//!
//! poll -> process inside the open transaction -> commit every `COMMIT_INTERVAL_MS` or
//! `COMMIT_MAX_RECORDS`. Three things interrupt the rhythm:
//! - an abortable transaction error: abort, rewind to the committed offsets, rebuild the stores;
//! - a dependency outage (PostgreSQL): commit what is done, seek back to the record that could not
//!   be processed, pause every partition and retry with exponential backoff — the record is
//!   neither skipped nor dead-lettered, and group membership stays alive because we keep polling;
//! - shutdown: commit the open transaction and return; a fatal error: return it (exit non-zero);
//! - the fetch stage (`fetching.rs`): each turn writes the fetches that finished; a retry record
//!   not yet due is put back and its partition paused till then; too many waiting fetches pause
//!   the fetch partitions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::context::RuntimeContext;
use super::engine::{Engine, Interrupt, TxnError};
use super::fetching::FetchStage;
use crate::processor::InfraError;
use crate::shutdown::CancellationToken;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until `shutdown` or a fatal error.
pub fn run_loop(
    consumer: &BaseConsumer<RuntimeContext>,
    shared: &Arc<Mutex<Option<Engine>>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let lock = || shared.lock().expect("engine lock");
    loop {
        if shutdown.is_cancelled() {
            let mut guard = lock();
            let engine = guard.as_mut().expect("engine is set");
            match engine.commit(consumer) {
                Ok(()) => tracing::info!("Shutdown: open transaction committed."),
                Err(error) => {
                    tracing::warn!(%error, "Shutdown: commit failed; aborting (the records will be reprocessed).");
                    let _ = engine.abort("shutdown");
                }
            }
            return Ok(());
        }

        let timeout = lock().as_ref().expect("engine is set").poll_timeout();
        let polled = consumer.poll(timeout);

        let mut guard = lock();
        let engine = guard.as_mut().expect("engine is set");
        if let Some(fatal) = engine.fatal.take() {
            return Err(anyhow::anyhow!("{fatal}"));
        }
        if engine.needs_rewind {
            // A message polled together with an abort may lie past aborted records: drop it, the
            // rewind makes it come again.
            engine.rewind(consumer).map_err(|error| anyhow::anyhow!("rewind failed: {error}"))?;
            continue;
        }

        let processed = match polled {
            Some(Ok(message)) => {
                let result = engine.process(&message);
                drop(message);
                result
            }
            // Fenced by a newer member with our instance id (we are a zombie), or another
            // unrecoverable consumer state: stop, so the supervisor restarts a clean instance.
            Some(Err(error @ rdkafka::error::KafkaError::MessageConsumptionFatal(_))) => {
                crate::metrics::ERRORS.with_label_values(&["processor", "consumer_fatal"]).inc();
                let _ = engine.abort("consumer_fatal");
                return Err(anyhow::anyhow!("fatal consumer error (fenced by a newer instance?): {error}"));
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "Consumer error.");
                crate::metrics::ERRORS.with_label_values(&["processor", "consumer_error"]).inc();
                Ok(())
            }
            None => Ok(()),
        };
        let result = processed.and_then(|()| engine.write_finished_fetches());
        match result {
            Ok(()) => {}
            Err(Interrupt::Outage { infra, at }) => {
                drop(guard);
                wait_out_outage(consumer, shared, &infra, (&at.0, at.1, at.2), shutdown)?;
                continue;
            }
            Err(Interrupt::Txn(txn)) => {
                handle_txn_error(engine, consumer, txn)?;
                continue;
            }
        }
        pace_fetches(engine, consumer)?;
        if let Err(error) = engine.run_timers() {
            handle_txn_error(engine, consumer, error)?;
            continue;
        }

        if engine.commit_due()
            && let Err(error) = engine.commit(consumer)
        {
            handle_txn_error(engine, consumer, error)?;
        }
    }
}

/// Applies the fetch stage's pause / resume requests (delayed retry heads), and pauses /
/// resumes the fetch partitions when too many fetched records wait to be written.
fn pace_fetches(engine: &mut Engine, consumer: &BaseConsumer<RuntimeContext>) -> anyhow::Result<()> {
    let Some(fetch) = engine.fetch.as_mut() else { return Ok(()) };
    engine.gauges.fetch_pending(fetch.waiting());
    let oldest = fetch.oldest_terra_pointer_ms().map_or(0, |at| (chrono::Utc::now().timestamp_millis() - at).max(0) / 1000);
    engine.gauges.oldest_pointer_age(oldest);
    // `assignment()` is a round trip to librdkafka's main thread (a queued op and a condition
    // variable): asked on every turn, it cost 4/5 of the throughput (perf: pthread_cond_signal and
    // futex waits on top). Asked only when there is a pause or resume to check against it.
    if !fetch.wants_pause_or_resume() {
        return Ok(());
    }
    let assigned = consumer.assignment()?;
    let owned = |key: &(String, i32)| assigned.find_partition(&key.0, key.1).is_some();
    let mut pause = TopicPartitionList::new();
    for key in fetch.to_pause.drain(..).filter(|key| owned(key)) {
        pause.add_partition(&key.0, key.1);
    }
    let mut resume = TopicPartitionList::new();
    let requested: Vec<(String, i32)> = fetch.to_resume.drain(..).filter(|key| owned(key)).collect();
    if !fetch.saturated {
        for key in &requested {
            resume.add_partition(&key.0, key.1);
        }
    }
    if fetch.should_pause() {
        fetch.saturated = true;
        for element in stage_partitions(consumer, fetch)?.elements() {
            pause.add_partition(element.topic(), element.partition());
        }
        tracing::debug!(waiting = fetch.waiting(), "Too many fetches waiting; fetch partitions paused.");
    } else if fetch.should_resume() || std::mem::take(&mut fetch.resume_all) {
        fetch.saturated = false;
        for element in stage_partitions(consumer, fetch)?.elements() {
            if !fetch.delayed(&(element.topic().to_owned(), element.partition())) {
                resume.add_partition(element.topic(), element.partition());
            }
        }
    }
    if pause.count() > 0 {
        consumer.pause(&pause)?;
    }
    if resume.count() > 0 {
        tracing::debug!(partitions = resume.count(), "Fetch partitions resumed.");
        consumer.resume(&resume)?;
    }
    Ok(())
}

/// The assigned partitions of the fetch stage's topics.
fn stage_partitions(consumer: &BaseConsumer<RuntimeContext>, fetch: &FetchStage) -> anyhow::Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for element in consumer.assignment()?.elements() {
        if fetch.is_stage_topic(element.topic()) {
            tpl.add_partition(element.topic(), element.partition());
        }
    }
    Ok(tpl)
}

/// Commits what is done, puts the failed record back, pauses everything and retries the
/// dependency with exponential backoff until it answers (or shutdown).
fn wait_out_outage(
    consumer: &BaseConsumer<RuntimeContext>,
    engine: &Arc<Mutex<Option<Engine>>>,
    infra: &InfraError,
    (topic, partition, offset): (&str, i32, i64),
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    crate::metrics::INFRA_RETRIES.with_label_values(&[infra.dependency]).inc();
    tracing::warn!(dependency = infra.dependency, error = %infra.message, "Dependency unavailable; pausing consumption until it is back.");
    {
        let mut guard = engine.lock().expect("engine lock");
        let engine = guard.as_mut().expect("engine is set");
        match engine.commit(consumer) {
            Ok(()) => seek_to(consumer, topic, partition, offset)?,
            Err(error) => handle_txn_error(engine, consumer, error)?,
        }
        // Everything is paused now and resumed afterwards, delayed retry partitions included:
        // records arriving behind a delayed head are held, so order is kept; the saturation
        // check starts over.
        if let Some(fetch) = engine.fetch.as_mut() {
            fetch.saturated = false;
        }
    }
    consumer.pause(&consumer.assignment()?)?;
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        // Paused partitions deliver nothing; polling keeps the group membership and serves
        // rebalances. A newly assigned partition is not paused: put its record back, pause it.
        if let Some(Ok(message)) = consumer.poll(backoff) {
            let (t, p, o) = (message.topic().to_owned(), message.partition(), message.offset());
            drop(message);
            seek_to(consumer, &t, p, o)?;
            let mut one = TopicPartitionList::new();
            one.add_partition(&t, p);
            consumer.pause(&one)?;
        }
        let available = engine.lock().expect("engine lock").as_ref().expect("engine is set").identities().available();
        if available {
            break;
        }
        crate::metrics::INFRA_RETRIES.with_label_values(&[infra.dependency]).inc();
        backoff = (backoff * 2).min(MAX_BACKOFF);
        tracing::info!(dependency = infra.dependency, retry_in_ms = backoff.as_millis() as u64, "Still unavailable.");
    }
    consumer.resume(&consumer.assignment()?)?;
    tracing::info!(dependency = infra.dependency, "Dependency is back; resuming consumption.");
    Ok(())
}

fn seek_to(consumer: &BaseConsumer<RuntimeContext>, topic: &str, partition: i32, offset: i64) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.seek_partitions(tpl, Duration::from_secs(10))?;
    Ok(())
}

fn handle_txn_error(engine: &mut Engine, consumer: &BaseConsumer<RuntimeContext>, error: TxnError) -> anyhow::Result<()> {
    match error {
        TxnError::Fatal(reason) => Err(anyhow::anyhow!("fatal transaction error: {reason}")),
        TxnError::Abortable(reason) => {
            tracing::warn!(%reason, "Transaction failed; aborting and rewinding.");
            engine.abort("abortable_error").map_err(|error| anyhow::anyhow!("abort failed: {error}"))?;
            engine.rewind(consumer).map_err(|error| anyhow::anyhow!("rewind failed: {error}"))
        }
    }
}
