//! The fetch stage inside the exactly-once loop: vendor API calls run concurrently on the tokio
//! runtime while the loop keeps consuming, and their results are written in offset order.
//!
//! A record of `pending-fetch` or the retry topic is not processed when polled: its fetch is
//! started and the record waits in its partition's queue. Each turn of the loop writes the
//! queue heads whose fetch has finished, inside the open transaction, and only then moves that
//! partition's offset past them. So the committed offset of a fetch partition never passes a
//! record whose result was not written in the same transaction: a crash, an abort or a rebalance
//! loses the unfinished fetches, and the records are consumed and fetched again (fetching is a
//! read; de-duplication drops what a re-fetch emits twice).
//!
//! Bounds: requests in flight are limited per vendor (`FETCH_CONCURRENCY`, in `fetch/`), and
//! when `max_pending` records are in progress (fetching, or fetched and waiting to be written),
//! the fetch partitions are paused until half have been written. A retry record that is not yet due stays at the head of its partition's queue
//! (records consumed behind it are held, unplanned) and the partition is paused until it is due:
//! the retry topic is roughly in due order, so waiting on the head is what a delay queue does.
//! Nothing is sought back: the records stay in memory, their offsets uncommitted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::fetch::{FetchOutcome, Fetcher};
use crate::processor::{FetchPlan, Output, Record};
use crate::vendors::PendingFetch;

type PartitionKey = (String, i32);

/// A consumed fetch-stage record waiting to be written.
pub struct Waiting {
    pub message: OwnedMessage,
    pub state: State,
}

pub enum State {
    /// Its outputs are known (a dead letter).
    Ready(Vec<Output>),
    /// Its fetch is running.
    Fetching { request: PendingFetch, attempt: u32, result: oneshot::Receiver<FetchOutcome>, task: tokio::task::AbortHandle },
    /// Its fetch has finished.
    Done { request: PendingFetch, attempt: u32, outcome: FetchOutcome },
    /// A retry record not due before `until_ms`.
    Delayed { until_ms: i64 },
    /// Consumed behind a delayed record: planned once it is the head.
    Held,
}

/// Whether the queue's head can be written, collecting a finished fetch's outcome.
fn head_finished(queue: &mut VecDeque<Waiting>) -> bool {
    let Some(head) = queue.front_mut() else { return false };
    if matches!(head.state, State::Delayed { .. } | State::Held) {
        return false;
    }
    if let State::Fetching { result, .. } = &mut head.state {
        let outcome = match result.try_recv() {
            Ok(outcome) => outcome,
            Err(oneshot::error::TryRecvError::Empty) => return false,
            // The fetch task died (a panic): retry later rather than lose the record.
            Err(oneshot::error::TryRecvError::Closed) => FetchOutcome::Retry { reason: "internal".to_owned(), retry_after: None },
        };
        let State::Fetching { request, attempt, .. } = std::mem::replace(&mut head.state, State::Ready(Vec::new())) else {
            unreachable!("matched above")
        };
        head.state = State::Done { request, attempt, outcome };
    }
    true
}

/// A queue head whose result is in, ready to be written.
pub enum Finished {
    Outputs(Vec<Output>),
    Fetched { request: PendingFetch, attempt: u32, outcome: FetchOutcome },
}

pub struct FetchStage {
    /// `pending-fetch` and the retry topic.
    topics: [String; 2],
    fetcher: Arc<Fetcher>,
    runtime: tokio::runtime::Handle,
    queues: BTreeMap<PartitionKey, VecDeque<Waiting>>,
    max_pending: usize,
    /// Bytes of fetched bodies waiting to be written before the fetch partitions pause (Terra
    /// payloads are ~10 MB each: a count alone would not bound memory).
    max_pending_bytes: usize,
    /// Partitions to pause (a delayed head) / resume (it became due), for the loop to apply.
    pub to_pause: Vec<PartitionKey>,
    pub to_resume: Vec<PartitionKey>,
    /// Whether the fetch partitions are paused because too many records wait.
    pub saturated: bool,
    /// Set by [`FetchStage::clear`]: every fetch partition must be resumed.
    pub resume_all: bool,
}

impl FetchStage {
    pub fn new(
        topics: [String; 2],
        fetcher: Arc<Fetcher>,
        runtime: tokio::runtime::Handle,
        max_pending: usize,
        max_pending_bytes: usize,
    ) -> Self {
        FetchStage {
            topics,
            fetcher,
            runtime,
            queues: BTreeMap::new(),
            max_pending: max_pending.max(1),
            max_pending_bytes: max_pending_bytes.max(1),
            to_pause: Vec::new(),
            to_resume: Vec::new(),
            saturated: false,
            resume_all: false,
        }
    }

    pub fn is_stage_topic(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
    }

    /// Records consumed and not yet written, whatever their state.
    pub fn waiting(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// Records in progress: waiting for a fetch or to be written. Records behind a delayed retry
    /// head are not counted: they wait for time, not for work, and counting them would let one
    /// delayed retry partition pause the fresh notifications of every partition for up to an hour.
    fn in_progress(&self) -> usize {
        let blocked: usize = self
            .queues
            .values()
            .filter(|queue| queue.front().is_some_and(|head| matches!(head.state, State::Delayed { .. })))
            .map(VecDeque::len)
            .sum();
        self.waiting() - blocked
    }

    /// Bytes of fetched bodies waiting to be written.
    fn buffered_bytes(&self) -> usize {
        let body = |waiting: &Waiting| match &waiting.state {
            State::Done { outcome: FetchOutcome::Fetched { body, .. }, .. } => body.len(),
            _ => 0,
        };
        self.queues.values().flatten().map(body).sum()
    }

    /// Whether [`super::eos`] has any pause or resume to apply this turn.
    pub fn wants_pause_or_resume(&self) -> bool {
        !self.to_pause.is_empty() || !self.to_resume.is_empty() || self.resume_all || self.should_pause() || self.should_resume()
    }

    pub fn should_pause(&self) -> bool {
        !self.saturated && (self.in_progress() >= self.max_pending || self.buffered_bytes() >= self.max_pending_bytes)
    }

    pub fn should_resume(&self) -> bool {
        self.saturated && self.in_progress() <= self.max_pending / 2 && self.buffered_bytes() <= self.max_pending_bytes / 2
    }

    /// When the oldest Terra pointer still waiting was received (its `received-at`), ms: its URL
    /// expires 300-600 s after that.
    pub fn oldest_terra_pointer_ms(&self) -> Option<i64> {
        self.queues
            .values()
            .flatten()
            .filter(|waiting| match &waiting.state {
                State::Fetching { request, .. } | State::Done { request, .. } => request.vendor == crate::event::Vendor::Terra,
                _ => false,
            })
            .filter_map(|waiting| {
                let headers = waiting.message.headers().map(|h| h.as_borrowed());
                crate::kafka::headers::get(headers, crate::kafka::headers::RECEIVED_AT)?.parse().ok()
            })
            .min()
    }

    /// Whether records of this partition must wait behind a delayed retry record.
    pub fn blocked(&self, topic: &str, partition: i32) -> bool {
        self.queues
            .get(&(topic.to_owned(), partition))
            .is_some_and(|queue| queue.iter().any(|w| matches!(w.state, State::Delayed { .. } | State::Held)))
    }

    /// Whether the partition's head is a retry record that is not due (its partition is paused).
    pub fn delayed(&self, key: &PartitionKey) -> bool {
        self.queues.get(key).and_then(VecDeque::front).is_some_and(|w| matches!(w.state, State::Delayed { .. }))
    }

    /// Queues a consumed record behind a delayed one, unplanned.
    pub fn hold(&mut self, message: OwnedMessage) {
        self.push(message, State::Held);
    }

    /// Queues a consumed record according to its plan.
    pub fn enqueue(&mut self, message: OwnedMessage, plan: FetchPlan) {
        let state = self.start(&message, plan);
        if matches!(state, State::Delayed { .. }) {
            self.to_pause.push((message.topic().to_owned(), message.partition()));
        }
        self.push(message, state);
    }

    fn push(&mut self, message: OwnedMessage, state: State) {
        let key = (message.topic().to_owned(), message.partition());
        self.queues.entry(key).or_default().push_back(Waiting { message, state });
    }

    /// The state a plan starts in: its fetch spawned, its outputs ready, or delayed.
    fn start(&self, message: &OwnedMessage, plan: FetchPlan) -> State {
        match plan {
            FetchPlan::Done(outputs) => State::Ready(outputs),
            FetchPlan::Wait { until_ms } => State::Delayed { until_ms },
            FetchPlan::Fetch { request, attempt } => {
                let (sender, result) = oneshot::channel();
                let fetcher = self.fetcher.clone();
                let trace_id = crate::kafka::headers::get(message.headers().map(|h| h.as_borrowed()), crate::kafka::headers::TRACE_ID)
                    .unwrap_or_default()
                    .to_owned();
                let span = tracing::info_span!("fetch", vendor = request.vendor.slug(), data_type = %request.data_type, attempt, trace_id = %trace_id);
                let owned = request.clone();
                let task = self
                    .runtime
                    .spawn(
                        async move {
                            let outcome = fetcher.fetch(&owned).await;
                            let _ = sender.send(outcome);
                        }
                        .instrument(span),
                    )
                    .abort_handle();
                State::Fetching { request, attempt, result, task }
            }
        }
    }

    /// Plans the heads that wait to be planned: held records that reached the head, and delayed
    /// ones that are due. `plan` is the pipeline's [`FetchPlan`] for a record at `now_ms`.
    pub fn plan_heads(&mut self, now_ms: i64, plan: impl Fn(&OwnedMessage) -> FetchPlan) {
        let keys: Vec<PartitionKey> = self.queues.keys().cloned().collect();
        for key in keys {
            let Some(head) = self.queues.get(&key).and_then(VecDeque::front) else { continue };
            let was_delayed = match head.state {
                State::Held => false,
                State::Delayed { until_ms } if until_ms <= now_ms => true,
                _ => continue,
            };
            let planned = plan(&head.message);
            let state = self.start(&head.message, planned);
            let now_delayed = matches!(state, State::Delayed { .. });
            self.queues.get_mut(&key).and_then(VecDeque::front_mut).expect("head exists").state = state;
            match (was_delayed, now_delayed) {
                (true, false) => self.to_resume.push(key),
                (false, true) => self.to_pause.push(key),
                _ => {}
            }
        }
    }

    /// Takes the next finished queue head, in offset order per partition.
    pub fn next_finished(&mut self) -> Option<(OwnedMessage, Finished)> {
        let queue = self.queues.values_mut().find_map(|queue| head_finished(queue).then_some(queue))?;
        let waiting = queue.pop_front().expect("a finished head");
        let finished = match waiting.state {
            State::Ready(outputs) => Finished::Outputs(outputs),
            State::Done { request, attempt, outcome } => Finished::Fetched { request, attempt, outcome },
            State::Fetching { .. } | State::Delayed { .. } | State::Held => unreachable!("head_finished settled it"),
        };
        Some((waiting.message, finished))
    }

    /// Forgets the waiting records of one partition (they will be consumed again); returns
    /// whether its head was delayed (the partition is paused: the caller resumes it).
    pub fn drop_partition(&mut self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_owned(), partition);
        let was_delayed = self.delayed(&key);
        if let Some(queue) = self.queues.remove(&key) {
            for waiting in queue {
                if let State::Fetching { task, .. } = waiting.state {
                    task.abort();
                }
            }
        }
        was_delayed
    }

    /// Forgets every waiting record (after an abort: the rewind brings them back). Partitions
    /// paused for a delayed head are queued for resumption, the saturation pause is lifted.
    pub fn clear(&mut self) {
        let keys: Vec<PartitionKey> = self.queues.keys().cloned().collect();
        for key in keys {
            if self.drop_partition(&key.0, key.1) {
                self.to_resume.push(key);
            }
        }
        self.to_pause.clear();
        self.saturated = false;
        self.resume_all = true;
    }
}

/// A [`Record`] view of an owned message.
pub fn record_of(message: &OwnedMessage) -> Record<'_> {
    Record {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key(),
        payload: message.payload(),
        headers: message.headers().map(|headers| headers.as_borrowed()),
        timestamp_ms: message.timestamp().to_millis(),
        at_rest: None,
    }
}

#[cfg(test)]
mod tests;
