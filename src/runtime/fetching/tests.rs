//! The fetch stage's queue discipline, without Kafka or HTTP: results in offset order per
//! partition, independent partitions, delayed heads that hold their partition, forgetting
//! queues, and the saturation thresholds.
//!
//! The stage spawns its fetches on a current-thread runtime, which runs them only while the test
//! drives it ([`Harness::run_fetches`]): until then every fetch is still running. The fetcher has
//! no vendor clients, so each fetch answers `Retry { reason: "vendor_not_configured" }` at once.

use futures::future::BoxFuture;
use rdkafka::Timestamp;
use rdkafka::message::OwnedHeaders;

use super::*;
use crate::connections::{AccessToken, TokenError};
use crate::event::Vendor;
use crate::fetch::{FetchArgs, TokenSource};

const PENDING: &str = "pending-fetch";
const RETRY: &str = "biometric-bridge-fetch-retry";
const DUE_MS: i64 = 1_795_660_100_000;

/// Tokens are never asked for: no vendor has a client.
struct FakeTokens;

impl TokenSource for FakeTokens {
    fn token<'a>(&'a self, _vendor: Vendor, _vendor_user_id: &'a str) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(async { Err(TokenError::NoConnection) })
    }
    fn after_unauthorized<'a>(
        &'a self,
        _vendor: Vendor,
        _vendor_user_id: &'a str,
        _rejected: &'a AccessToken,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(async { Err(TokenError::NoConnection) })
    }
    fn mark_needs_reauth<'a>(
        &'a self,
        _vendor: Vendor,
        _vendor_user_id: &'a str,
        _reason: &'a str,
    ) -> BoxFuture<'a, Result<(), TokenError>> {
        Box::pin(async { Ok(()) })
    }
}

struct Harness {
    stage: FetchStage,
    runtime: tokio::runtime::Runtime,
}

impl Harness {
    fn new(max_pending: usize) -> Harness {
        let args = FetchArgs {
            fetch_attempts: 1,
            fetch_timeout_ms: 1_000,
            fetch_backoff_ms: 0,
            fetch_concurrency: 1,
            fetch_max_wait_ms: 0,
            oura_rate_limit: "5000/300".to_owned(),
            whoop_rate_limit: "100/60".to_owned(),
            downloads: crate::fetch::download::DownloadArgs {
                terra_payload_hosts: vec![".amazonaws.com".to_owned()],
                insecure_terra_payload_http: false,
                terra_download_concurrency: 1,
                terra_download_timeout_ms: 1_000,
            },
        };
        let fetcher = Arc::new(Fetcher::new(&args, &[], Arc::new(FakeTokens)).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stage = FetchStage::new([PENDING.to_owned(), RETRY.to_owned()], fetcher, runtime.handle().clone(), max_pending, usize::MAX);
        Harness { stage, runtime }
    }

    /// Lets the spawned fetches run to their (immediate) outcome.
    fn run_fetches(&self) {
        self.runtime.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(10)).await });
    }

    /// The next finished head as (topic, partition, offset) and what it finished with.
    fn next(&mut self) -> Option<(String, i32, i64, Finished)> {
        self.stage.next_finished().map(|(message, finished)| (message.topic().to_owned(), message.partition(), message.offset(), finished))
    }

    /// The (partition, offset) of every finished head, in the order they come out.
    fn drain(&mut self) -> Vec<(i32, i64)> {
        std::iter::from_fn(|| self.next()).map(|(_, partition, offset, _)| (partition, offset)).collect()
    }
}

fn message(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
    let mut headers = OwnedHeaders::new();
    headers = crate::kafka::headers::with(headers, crate::kafka::headers::VENDOR, "oura");
    OwnedMessage::new(
        Some(b"{}".to_vec()),
        Some(b"oura:u".to_vec()),
        topic.to_owned(),
        Timestamp::CreateTime(1),
        partition,
        offset,
        Some(headers),
    )
}

fn request() -> PendingFetch {
    PendingFetch {
        vendor: Vendor::Oura,
        vendor_user_id: "u".to_owned(),
        data_type: "sleep".to_owned(),
        object_id: "s1".to_owned(),
        api_path: "/v2/usercollection/sleep/s1".to_owned(),
        expires_at_ms: None,
    }
}

fn fetch() -> FetchPlan {
    FetchPlan::Fetch { request: request(), attempt: 0 }
}

/// Outputs ready at once, to a topic that names the record's offset.
fn done(offset: i64) -> FetchPlan {
    FetchPlan::Done(vec![Output {
        topic: format!("out-{offset}"),
        key: None,
        payload: Vec::new(),
        headers: OwnedHeaders::new(),
        received_at_ms: None,
        seal_for: None,
    }])
}

fn wait() -> FetchPlan {
    FetchPlan::Wait { until_ms: DUE_MS }
}

fn key(topic: &str, partition: i32) -> PartitionKey {
    (topic.to_owned(), partition)
}

/// A `plan_heads` planner that must not be asked.
fn no_plan(message: &OwnedMessage) -> FetchPlan {
    panic!("nothing is due, yet offset {} was planned", message.offset())
}

/// A `plan_heads` planner answering [`done`], recording which offsets it was asked for.
fn planner(asked: &std::cell::RefCell<Vec<i64>>) -> impl Fn(&OwnedMessage) -> FetchPlan + '_ {
    move |message| {
        asked.borrow_mut().push(message.offset());
        done(message.offset())
    }
}

#[test]
fn a_later_ready_record_waits_for_the_earlier_fetch_of_its_partition() {
    let mut h = Harness::new(100);
    h.stage.enqueue(message(PENDING, 0, 10), fetch());
    h.stage.enqueue(message(PENDING, 0, 11), done(11));
    assert!(h.next().is_none(), "offset 11 is ready, but 10 is still fetching");
    assert_eq!(h.stage.waiting(), 2);

    h.run_fetches();
    let Some((topic, 0, 10, Finished::Fetched { request: fetched, attempt: 0, outcome })) = h.next() else { panic!("offset 10 first") };
    assert_eq!(topic, PENDING);
    assert_eq!(fetched, request());
    assert_eq!(outcome, FetchOutcome::Retry { reason: "vendor_not_configured".to_owned(), retry_after: None });
    let Some((_, 0, 11, Finished::Outputs(outputs))) = h.next() else { panic!("then offset 11") };
    assert_eq!(outputs[0].topic, "out-11");
    assert!(h.next().is_none());
    assert_eq!(h.stage.waiting(), 0);
}

#[test]
fn a_running_fetch_does_not_hold_other_partitions() {
    let mut h = Harness::new(100);
    h.stage.enqueue(message(PENDING, 0, 10), fetch());
    h.stage.enqueue(message(PENDING, 1, 20), done(20));
    h.stage.enqueue(message(RETRY, 0, 30), done(30));
    let mut ready = h.drain();
    ready.sort_unstable(); // no order across partitions
    assert_eq!(ready, vec![(0, 30), (1, 20)], "pending-fetch 1 and the retry topic's 0 are their own queues");
    h.run_fetches();
    assert_eq!(h.drain(), vec![(0, 10)]);
    assert_eq!(h.stage.waiting(), 0);
}

#[test]
fn a_delayed_head_holds_its_partition_until_due() {
    let mut h = Harness::new(100);
    let delayed = key(RETRY, 0);
    h.stage.enqueue(message(RETRY, 0, 5), wait());
    assert_eq!(h.stage.to_pause, vec![delayed.clone()]);
    h.stage.to_pause.clear(); // as the loop applies it
    assert!(h.stage.delayed(&delayed));
    assert!(h.stage.blocked(RETRY, 0));
    assert!(!h.stage.blocked(RETRY, 1) && !h.stage.blocked(PENDING, 0), "other partitions flow");

    // The loop holds what it consumes behind the delayed head.
    h.stage.hold(message(RETRY, 0, 6));
    h.stage.hold(message(RETRY, 0, 7));
    assert_eq!(h.stage.waiting(), 3);
    assert!(h.next().is_none());

    h.stage.plan_heads(DUE_MS - 1, no_plan);
    assert!(h.stage.to_resume.is_empty());
    assert!(h.next().is_none());

    let asked = std::cell::RefCell::new(Vec::new());
    h.stage.plan_heads(DUE_MS, planner(&asked));
    assert_eq!(asked.take(), vec![5], "only the head is planned");
    assert_eq!(h.stage.to_resume, vec![delayed.clone()]);
    assert!(!h.stage.delayed(&delayed));
    assert!(h.stage.blocked(RETRY, 0), "records behind are still held");
    assert_eq!(h.drain(), vec![(0, 5)], "a held record is not written before it is planned");

    // Each held record is planned when it reaches the head, without a pause or resume.
    h.stage.to_resume.clear();
    h.stage.plan_heads(DUE_MS, planner(&asked));
    assert_eq!(h.drain(), vec![(0, 6)]);
    h.stage.plan_heads(DUE_MS, planner(&asked));
    assert_eq!(h.drain(), vec![(0, 7)]);
    assert_eq!(asked.take(), vec![6, 7]);
    assert!(h.stage.to_resume.is_empty() && h.stage.to_pause.is_empty());
    assert!(!h.stage.blocked(RETRY, 0));
    assert_eq!(h.stage.waiting(), 0);
}

#[test]
fn a_held_record_that_is_not_due_pauses_its_partition_again() {
    let mut h = Harness::new(100);
    let delayed = key(RETRY, 2);
    h.stage.enqueue(message(RETRY, 2, 5), wait());
    h.stage.hold(message(RETRY, 2, 6));
    h.stage.to_pause.clear();

    h.stage.plan_heads(DUE_MS, |message| done(message.offset()));
    assert_eq!(h.drain(), vec![(2, 5)]);
    h.stage.to_resume.clear();

    h.stage.plan_heads(DUE_MS, |_| FetchPlan::Wait { until_ms: DUE_MS + 60_000 });
    assert_eq!(h.stage.to_pause, vec![delayed.clone()]);
    assert!(h.stage.to_resume.is_empty());
    assert!(h.stage.delayed(&delayed));
    assert!(h.next().is_none());
}

#[test]
fn a_due_head_that_is_fetched_is_written_once_its_fetch_finishes() {
    let mut h = Harness::new(100);
    h.stage.enqueue(message(RETRY, 0, 5), wait());
    h.stage.plan_heads(DUE_MS, |_| fetch());
    assert_eq!(h.stage.to_resume, vec![key(RETRY, 0)]);
    assert!(h.next().is_none(), "its fetch is running");
    h.run_fetches();
    assert!(matches!(h.next(), Some((_, 0, 5, Finished::Fetched { .. }))));
}

#[test]
fn a_not_due_record_behind_running_fetches_pauses_its_partition() {
    let mut h = Harness::new(100);
    h.stage.enqueue(message(RETRY, 0, 5), fetch());
    h.stage.enqueue(message(RETRY, 0, 6), wait());
    assert_eq!(h.stage.to_pause, vec![key(RETRY, 0)]);
    assert!(h.stage.blocked(RETRY, 0));
    assert!(!h.stage.delayed(&key(RETRY, 0)), "its head is not the delayed one");

    h.run_fetches();
    assert_eq!(h.drain(), vec![(0, 5)]);
    assert!(h.stage.delayed(&key(RETRY, 0)));
    h.stage.plan_heads(DUE_MS, |message| done(message.offset()));
    assert_eq!(h.stage.to_resume, vec![key(RETRY, 0)]);
    assert_eq!(h.drain(), vec![(0, 6)]);
}

#[test]
fn dropping_a_partition_forgets_only_its_records() {
    let mut h = Harness::new(100);
    h.stage.enqueue(message(PENDING, 0, 10), fetch());
    h.stage.enqueue(message(PENDING, 0, 11), done(11));
    h.stage.enqueue(message(PENDING, 1, 20), done(20));
    h.stage.enqueue(message(RETRY, 0, 5), wait());
    h.stage.hold(message(RETRY, 0, 6));
    assert_eq!(h.stage.waiting(), 5);

    assert!(!h.stage.drop_partition(PENDING, 0), "its head was not delayed");
    assert_eq!(h.stage.waiting(), 3);
    assert!(h.stage.drop_partition(RETRY, 0), "a delayed head: the caller resumes the partition");
    assert_eq!(h.stage.waiting(), 1);
    assert!(!h.stage.blocked(RETRY, 0) && !h.stage.delayed(&key(RETRY, 0)));
    assert!(!h.stage.drop_partition(PENDING, 7), "an unknown partition is nothing to drop");

    h.run_fetches();
    assert_eq!(h.drain(), vec![(1, 20)]);
    assert_eq!(h.stage.waiting(), 0);
}

#[test]
fn clearing_forgets_everything_and_asks_to_resume_all() {
    let mut h = Harness::new(2);
    h.stage.enqueue(message(PENDING, 0, 10), fetch());
    h.stage.enqueue(message(PENDING, 1, 20), done(20));
    h.stage.enqueue(message(RETRY, 3, 5), wait());
    h.stage.hold(message(RETRY, 3, 6));
    h.stage.saturated = true;
    assert_eq!(h.stage.to_pause, vec![key(RETRY, 3)]);

    h.stage.clear();
    assert_eq!(h.stage.waiting(), 0);
    assert!(h.stage.resume_all);
    assert!(!h.stage.saturated);
    assert!(h.stage.to_pause.is_empty(), "nothing left to pause for");
    assert_eq!(h.stage.to_resume, vec![key(RETRY, 3)], "the partition paused for its delayed head");
    assert!(!h.stage.blocked(RETRY, 3));
    h.run_fetches();
    assert!(h.next().is_none());
}

#[test]
fn too_many_waiting_records_pause_until_half_are_written() {
    let mut h = Harness::new(4);
    for offset in 0..3 {
        h.stage.enqueue(message(PENDING, 0, offset), done(offset));
    }
    assert!(!h.stage.should_pause(), "3 of 4");
    h.stage.enqueue(message(PENDING, 0, 3), done(3));
    assert!(h.stage.should_pause(), "4 of 4");
    assert!(!h.stage.should_resume(), "not paused yet");

    h.stage.saturated = true;
    assert!(!h.stage.should_pause(), "already paused");
    h.stage.next_finished().unwrap();
    assert!(!h.stage.should_resume(), "3 waiting");
    h.stage.next_finished().unwrap();
    assert!(h.stage.should_resume(), "2 waiting: half of 4");
}

#[test]
fn records_behind_a_delayed_head_do_not_count_towards_saturation() {
    // A delayed retry partition waits for time, not work: it must not pause fresh notifications.
    let mut h = Harness::new(2);
    h.stage.enqueue(message(RETRY, 0, 5), wait());
    h.stage.hold(message(RETRY, 0, 6));
    h.stage.hold(message(RETRY, 0, 7));
    assert!(!h.stage.should_pause(), "3 waiting, none in progress");
    h.stage.enqueue(message(PENDING, 0, 1), done(1));
    assert!(!h.stage.should_pause(), "1 in progress of 2");
    h.stage.enqueue(message(PENDING, 0, 2), done(2));
    assert!(h.stage.should_pause(), "2 in progress of 2");
}

#[test]
fn max_pending_is_at_least_one() {
    let mut h = Harness::new(0);
    assert!(!h.stage.should_pause());
    h.stage.enqueue(message(PENDING, 0, 1), done(1));
    assert!(h.stage.should_pause());
    h.stage.saturated = true;
    assert!(!h.stage.should_resume(), "1 waiting, half of 1 is 0");
    h.stage.next_finished().unwrap();
    assert!(h.stage.should_resume());
}

#[test]
fn record_of_views_the_owned_message() {
    let message = message(PENDING, 4, 99);
    let record = record_of(&message);
    assert_eq!((record.topic, record.partition, record.offset), (PENDING, 4, 99));
    assert_eq!(record.key, Some(&b"oura:u"[..]));
    assert_eq!(record.payload, Some(&b"{}"[..]));
    assert_eq!(record.timestamp_ms, Some(1));
    assert_eq!(crate::kafka::headers::get(record.headers, crate::kafka::headers::VENDOR), Some("oura"));
}

#[test]
fn only_the_stage_topics_are_stage_topics() {
    let h = Harness::new(1);
    assert!(h.stage.is_stage_topic(PENDING) && h.stage.is_stage_topic(RETRY));
    assert!(!h.stage.is_stage_topic("raw-webhooks"));
}
