//! The engine's side of the fetch stage: a consumed fetch-stage record starts its fetch (or waits
//! behind a delayed retry head), and finished fetches are written in offset order inside the open
//! transaction. The queue discipline itself is in `runtime/fetching.rs`.

use rdkafka::message::BorrowedMessage;

use super::{Engine, Interrupt, task_stores};
use crate::processor::Record;
use crate::runtime::fetching::{Finished, record_of};

impl Engine {
    pub(super) fn start_fetch(&mut self, message: &BorrowedMessage<'_>, record: &Record<'_>) -> Result<(), Interrupt> {
        let fetch = self.fetch.as_mut().expect("checked by the caller");
        if fetch.blocked(record.topic, record.partition) {
            fetch.hold(message.detach());
        } else {
            let plan = self.pipeline.plan_fetch(record, chrono::Utc::now().timestamp_millis());
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
            fetch.plan_heads(now_ms, |message| pipeline.plan_fetch(&record_of(message), now_ms));
            let Some((message, finished)) = fetch.next_finished() else { return Ok(()) };
            let record = record_of(&message);
            let outputs = match finished {
                Finished::Outputs(outputs) => Ok(outputs),
                Finished::Fetched { request, attempt, outcome } => {
                    // Fetch-stage topics are task topics: partition p meets task p's stores.
                    let stores = task_stores(&mut self.tasks, record.partition, true);
                    self.pipeline.fetched(&record, &request, attempt, outcome, now_ms, &mut self.identities, stores)
                }
            };
            match outputs {
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
