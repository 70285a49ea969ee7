//! The engine's side of the fetch stage: a consumed fetch-stage record starts its fetch (or waits
//! behind a delayed retry head), and finished fetches are written in offset order inside the open
//! transaction. The queue discipline itself is in `runtime/fetching.rs`.

use rdkafka::message::{BorrowedMessage, Message};

use super::{Engine, Interrupt, task_stores};
use crate::processor::{FetchPlan, Record};
use crate::runtime::fetching::{Finished, record_of};
use crate::runtime::sealed::{self, Opening};

/// How long a fetch-stage record whose data key cannot be read waits before it is planned again.
const KEY_STORE_WAIT_MS: i64 = 5_000;

impl Engine {
    /// `record`: the opened record; `None` when it was sealed under an erased key (then nothing
    /// is fetched or written for it, but it still passes through its partition's queue in order).
    pub(super) fn start_fetch(&mut self, message: &BorrowedMessage<'_>, record: Option<&Record<'_>>) -> Result<(), Interrupt> {
        let fetch = self.fetch.as_mut().expect("checked by the caller");
        if fetch.blocked(message.topic(), message.partition()) {
            fetch.hold(message.detach());
        } else {
            let plan = match record {
                Some(record) => self.pipeline.plan_fetch(record, chrono::Utc::now().timestamp_millis()),
                None => FetchPlan::Done(Vec::new()),
            };
            fetch.enqueue(message.detach(), plan);
        }
        Ok(())
    }

    /// Writes every fetch-stage record whose result is in, in offset order per partition.
    pub fn write_finished_fetches(&mut self) -> Result<(), Interrupt> {
        loop {
            let Some(fetch) = self.fetch.as_mut() else { return Ok(()) };
            let pipeline = &self.pipeline;
            let now_ms = chrono::Utc::now().timestamp_millis();
            let at_rest = &self.at_rest;
            fetch.plan_heads(now_ms, |message| {
                let record = record_of(message);
                match sealed::open(at_rest, &record) {
                    Ok(Opening::Erased) => FetchPlan::Done(Vec::new()),
                    Ok(opening) => pipeline.plan_fetch(&sealed::view(record, &opening), now_ms),
                    // The key store is down: planned again once this wait is over.
                    Err(_) => FetchPlan::Wait { until_ms: now_ms + KEY_STORE_WAIT_MS },
                }
            });
            let Some((message, finished)) = fetch.next_finished() else { return Ok(()) };
            let record = record_of(&message);
            let at = || (record.topic.to_owned(), record.partition, record.offset);
            let opening = sealed::open(&self.at_rest, &record).map_err(|infra| Interrupt::Outage { infra, at: at() })?;
            let record = sealed::view(record, &opening);
            let outputs = match finished {
                Finished::Outputs(outputs) => Ok(outputs),
                Finished::Fetched { request, attempt, outcome } => {
                    // Fetch-stage topics are task topics: partition p meets task p's stores.
                    let stores = task_stores(&mut self.tasks, record.partition, true);
                    self.pipeline.fetched(&record, &request, attempt, outcome, now_ms, &mut self.identities, stores)
                }
            };
            match outputs.and_then(|outputs| sealed::seal_outputs(&self.at_rest, outputs)) {
                Ok(outputs) => self.write(&record, outputs, true)?,
                Err(infra) => {
                    // This record and the ones queued behind it will be consumed again.
                    let at = (record.topic.to_owned(), record.partition, record.offset);
                    if let Some(fetch) = self.fetch.as_mut()
                        && fetch.drop_partition(&at.0, at.1)
                    {
                        fetch.to_resume.push((at.0.clone(), at.1));
                    }
                    return Err(Interrupt::Outage { infra, at });
                }
            }
        }
    }
}
