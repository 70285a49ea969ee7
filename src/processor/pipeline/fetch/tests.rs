//! The fetch stage's logic without Kafka or HTTP: what `pending-fetch` and retry-topic records
//! plan ([`Pipeline::plan_fetch`]), and what every fetch outcome turns into
//! ([`Pipeline::fetched`]): events, retry records with their chain headers, dead letters.

use std::collections::HashMap;

use rdkafka::message::{Headers, OwnedHeaders};

use super::*;
use crate::event::avro::EventCodec;
use crate::event::{BiometricEvent, Priority};
use crate::processor::baseline::BaselineState;
use crate::processor::dedup::Seen;
use crate::processor::store::{KeyValueStore, MemoryStore};
use crate::topology::Topology;
use crate::vendors::IdentityChange;

const TOPOLOGY: &str = include_str!("../../../../topologies/biometric.toml");
const PENDING_FETCH: &str = "pending-fetch";
const RETRY_TOPIC: &str = "biometric-bridge-fetch-retry";
const DLQ: &str = "raw-webhooks.dlq";
const EVENTS: &str = "biometric-events";
const OURA_USER: &str = "d2f6a1c4b7e9-5a3c0f8e2d1b4a6c9e7f3b1";
const OURA_SLEEP_ID: &str = "2-5d8f3e1a9c0b7d2e4f6a8c1b3d5e7f9a0b";
const WHOOP_USER: &str = "10129457";
const WHOOP_SLEEP_ID: &str = "3b9e2f1c-7a4d-4c8e-b5f0-2d6a8c1e9f37";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const KEY: &[u8] = b"oura:d2f6a1c4b7e9-5a3c0f8e2d1b4a6c9e7f3b1";
const NOW_MS: i64 = 1_795_660_100_000;
/// The shipped topology's first retry delay and retry budget.
const FIRST_DELAY_MS: i64 = 30_000;
const MAX_RETRIES: u32 = 6;

fn pipeline() -> Pipeline {
    let topology = Topology::parse(TOPOLOGY, "biometric.toml").unwrap();
    let ids: HashMap<String, u32> = topology.event_sinks.iter().map(|t| (t.clone(), 7)).collect();
    Pipeline::new(topology, &ids)
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Identity links in a map.
#[derive(Default)]
struct Links(HashMap<(Vendor, String), String>);

impl Identities for Links {
    fn resolve(&mut self, vendor: Vendor, vendor_user_id: &str) -> Result<Option<String>, crate::processor::LookupError> {
        Ok(self.0.get(&(vendor, vendor_user_id.to_owned())).cloned())
    }
    fn apply(&mut self, _change: &IdentityChange) -> Result<(), crate::processor::LookupError> {
        unreachable!("the fetch stage never changes identities")
    }
}

/// The headers of a notification as the normalizer forwards it to `pending-fetch`, plus `extra`.
fn notification_headers(vendor: &str, extra: &[(&str, &str)]) -> OwnedHeaders {
    let mut h = OwnedHeaders::new();
    h = headers::with(h, headers::VENDOR, vendor);
    h = headers::with(h, headers::RECEIVED_AT, "1795660000000");
    h = headers::with(h, headers::DELIVERY_ID, "delivery-1");
    h = headers::with(h, headers::TRACE_ID, TRACE_ID);
    h = headers::with(h, headers::FETCH_PATH, "/v2/usercollection/sleep/x");
    for (k, v) in extra {
        h = headers::with(h, k, v);
    }
    h
}

/// The headers of a retry-topic record after `attempt` failed passes, due at `not_before`.
fn retry_headers(vendor: &str, attempt: u32, not_before: i64) -> OwnedHeaders {
    notification_headers(
        vendor,
        &[
            (headers::FETCH_ATTEMPT, &attempt.to_string()),
            (headers::FETCH_NOT_BEFORE, &not_before.to_string()),
            (headers::FETCH_LAST_ERROR, "timeout"),
        ],
    )
}

fn record<'a>(topic: &'a str, headers: &'a OwnedHeaders, body: &'a [u8]) -> Record<'a> {
    Record {
        topic,
        partition: 3,
        offset: 42,
        key: Some(KEY),
        payload: Some(body),
        headers: Some(headers.as_borrowed()),
        timestamp_ms: Some(1_795_660_000_000),
        at_rest: None,
    }
}

fn oura_request() -> PendingFetch {
    PendingFetch {
        vendor: Vendor::Oura,
        vendor_user_id: OURA_USER.to_owned(),
        data_type: "sleep".to_owned(),
        object_id: OURA_SLEEP_ID.to_owned(),
        api_path: format!("/v2/usercollection/sleep/{OURA_SLEEP_ID}"),
        expires_at_ms: None,
    }
}

fn whoop_recovery_request() -> PendingFetch {
    PendingFetch {
        vendor: Vendor::Whoop,
        vendor_user_id: WHOOP_USER.to_owned(),
        data_type: "recovery".to_owned(),
        object_id: WHOOP_SLEEP_ID.to_owned(),
        api_path: format!("/v2/activity/sleep/{WHOOP_SLEEP_ID}"),
        expires_at_ms: None,
    }
}

fn fetched(data_type: &str, body: Vec<u8>) -> FetchOutcome {
    FetchOutcome::Fetched { data_type: data_type.to_owned(), body, user_id: "user-from-connection".to_owned() }
}

fn retry(reason: &str, retry_after: Option<Duration>) -> FetchOutcome {
    FetchOutcome::Retry { reason: reason.to_owned(), retry_after }
}

/// `fetched` for an Oura sleep notification on `pending-fetch`, without identity links or stores.
fn oura_outcome(attempt: u32, outcome: FetchOutcome) -> Vec<Output> {
    let headers = notification_headers("oura", &[]);
    let body = fixture("oura/webhook_sleep_create.json");
    run_fetched(&record(PENDING_FETCH, &headers, &body), &oura_request(), attempt, outcome, &mut Links::default(), None)
}

fn run_fetched(
    record: &Record<'_>,
    request: &PendingFetch,
    attempt: u32,
    outcome: FetchOutcome,
    links: &mut Links,
    dedup: Option<&mut MemoryStore<Seen>>,
) -> Vec<Output> {
    let mut baseline = MemoryStore::<BaselineState>::default();
    let stores =
        TaskStores { dedup: dedup.map(|store| store as &mut dyn KeyValueStore<Seen>), baseline: Some(&mut baseline), backfill: None };
    pipeline().fetched(record, request, attempt, outcome, NOW_MS, links, stores).unwrap()
}

fn header(output: &Output, name: &str) -> Option<String> {
    output.headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

fn header_count(output: &Output, name: &str) -> usize {
    output.headers.iter().filter(|h| h.key == name).count()
}

fn decode(output: &Output) -> BiometricEvent {
    EventCodec::new(7).decode(&output.payload).unwrap()
}

/// The one output, which must be a dead letter of `class`; returned for further checks.
fn single_dead_letter(outputs: Vec<Output>, class: &str) -> Output {
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    let out = outputs.into_iter().next().unwrap();
    assert_eq!(out.topic, DLQ);
    assert_eq!(header(&out, headers::ERROR_CLASS).as_deref(), Some(class));
    assert!(header(&out, headers::ERROR_MESSAGE).is_some_and(|m| !m.is_empty()));
    out
}

fn planned_dead_letter(plan: FetchPlan, class: &str) -> Output {
    match plan {
        FetchPlan::Done(outputs) => single_dead_letter(outputs, class),
        other => panic!("expected a dead letter `{class}`, got {other:?}"),
    }
}

// ---- plan_fetch ----

#[test]
fn both_fetch_topics_belong_to_the_stage() {
    let pipeline = pipeline();
    assert!(pipeline.is_fetch_topic(PENDING_FETCH));
    assert!(pipeline.is_fetch_topic(RETRY_TOPIC));
    assert!(!pipeline.is_fetch_topic("raw-webhooks"));
}

#[test]
fn an_oura_notification_is_fetched_on_its_first_pass() {
    let headers = notification_headers("oura", &[]);
    let body = fixture("oura/webhook_sleep_create.json");
    match pipeline().plan_fetch(&record(PENDING_FETCH, &headers, &body), NOW_MS) {
        FetchPlan::Fetch { request, attempt } => {
            assert_eq!(request, oura_request());
            assert_eq!(attempt, 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn data_types_without_a_mapping_are_not_fetched() {
    // An Oura subscription to a type we do not map (stress, tags, ...): no API call, no event, no
    // dead letter.
    let headers = notification_headers("oura", &[]);
    let sleep = fixture("oura/webhook_sleep_create.json");
    for data_type in ["daily_stress", "tag", "vo2_max"] {
        let body =
            String::from_utf8(sleep.clone()).unwrap().replace("\"data_type\": \"sleep\"", &format!("\"data_type\": \"{data_type}\""));
        match pipeline().plan_fetch(&record(PENDING_FETCH, &headers, body.as_bytes()), NOW_MS) {
            FetchPlan::Done(outputs) => assert!(outputs.is_empty(), "{data_type}"),
            other => panic!("{data_type}: {other:?}"),
        }
    }
    for (vendor, data_type) in [(Vendor::Oura, "daily_readiness"), (Vendor::Whoop, "recovery"), (Vendor::Whoop, "workout")] {
        assert!(vendors::fetch_is_mapped(vendor, data_type));
    }
    assert!(!vendors::fetch_is_mapped(Vendor::Terra, "sleep"));
}

#[test]
fn a_retry_record_waits_until_its_not_before_time() {
    let until_ms = NOW_MS + 5_000;
    let headers = retry_headers("oura", 2, until_ms);
    let body = fixture("oura/webhook_sleep_create.json");
    match pipeline().plan_fetch(&record(RETRY_TOPIC, &headers, &body), NOW_MS) {
        FetchPlan::Wait { until_ms: planned } => assert_eq!(planned, until_ms),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_due_retry_record_is_fetched_with_its_attempt_count() {
    let headers = retry_headers("oura", 2, NOW_MS - 1);
    let body = fixture("oura/webhook_sleep_create.json");
    for now_ms in [NOW_MS, NOW_MS - 1] {
        match pipeline().plan_fetch(&record(RETRY_TOPIC, &headers, &body), now_ms) {
            FetchPlan::Fetch { request, attempt } => {
                assert_eq!(request, oura_request());
                assert_eq!(attempt, 2, "now {now_ms}");
            }
            other => panic!("now {now_ms}: {other:?}"),
        }
    }
}

#[test]
fn not_before_is_only_honoured_on_the_retry_topic() {
    let headers = notification_headers("oura", &[(headers::FETCH_NOT_BEFORE, &(NOW_MS + 60_000).to_string())]);
    let body = fixture("oura/webhook_sleep_create.json");
    assert!(matches!(pipeline().plan_fetch(&record(PENDING_FETCH, &headers, &body), NOW_MS), FetchPlan::Fetch { attempt: 0, .. }));
}

#[test]
fn a_fetch_record_without_a_known_vendor_is_a_dead_letter() {
    let body = fixture("oura/webhook_sleep_create.json");
    let no_vendor = OwnedHeaders::new();
    let plan = pipeline().plan_fetch(&record(PENDING_FETCH, &no_vendor, &body), NOW_MS);
    let out = planned_dead_letter(plan, "unknown_vendor");
    assert_eq!(out.payload, body);
    assert_eq!(header(&out, headers::SOURCE_TOPIC).as_deref(), Some(PENDING_FETCH));

    let unknown = notification_headers("fitbit", &[]);
    planned_dead_letter(pipeline().plan_fetch(&record(PENDING_FETCH, &unknown, &body), NOW_MS), "unknown_vendor");
}

#[test]
fn a_fetch_record_without_a_value_is_a_dead_letter() {
    let headers = notification_headers("oura", &[]);
    let empty = Record { payload: None, ..record(PENDING_FETCH, &headers, b"") };
    planned_dead_letter(pipeline().plan_fetch(&empty, NOW_MS), "empty_payload");
}

#[test]
fn a_record_that_names_nothing_to_fetch_is_a_dead_letter() {
    let headers = notification_headers("terra", &[]);
    let body = fixture("terra/sleep.json");
    let out = planned_dead_letter(pipeline().plan_fetch(&record(PENDING_FETCH, &headers, &body), NOW_MS), "not_a_notification");
    assert_eq!(out.payload, body, "original bytes kept");
}

#[test]
fn a_garbage_fetch_record_is_a_dead_letter() {
    let headers = notification_headers("oura", &[]);
    let body = fixture("garbage/not_json.txt");
    let out = planned_dead_letter(pipeline().plan_fetch(&record(PENDING_FETCH, &headers, &body), NOW_MS), "invalid_json");
    assert_eq!(out.payload, body);
    assert_eq!(out.key.as_deref(), Some(KEY));
}

// ---- fetched: events ----

#[test]
fn a_fetched_low_hrv_oura_sleep_is_a_critical_event_for_the_connection_user() {
    let outputs = oura_outcome(0, fetched("sleep", fixture("oura/api_sleep_low_hrv.json")));
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    let out = &outputs[0];
    assert_eq!(out.topic, EVENTS);
    assert_eq!(out.key.as_deref(), Some(&b"user-from-connection"[..]));
    assert_eq!(header(out, headers::PRIORITY).as_deref(), Some("CRITICAL"));
    assert_eq!(header(out, headers::USER_ID).as_deref(), Some("user-from-connection"));
    assert_eq!(header(out, headers::TRACE_ID).as_deref(), Some(TRACE_ID));
    let event = decode(out);
    assert_eq!(event.priority, Priority::Critical);
    assert_eq!(event.user_id, "user-from-connection");
    assert_eq!(event.vendor_user_id, OURA_USER);
    assert_eq!(event.hrv_rmssd_ms, Some(19.0));
    assert_eq!(event.received_at, 1_795_660_000_000, "from the notification's received-at");
    assert_eq!((event.lineage.source_partition, event.lineage.source_offset), (3, 42));
}

#[test]
fn an_identity_link_wins_over_the_connection_user() {
    let headers = notification_headers("oura", &[]);
    let body = fixture("oura/webhook_sleep_create.json");
    let mut links = Links::default();
    links.0.insert((Vendor::Oura, OURA_USER.to_owned()), "user-linked".to_owned());
    let outcome = fetched("sleep", fixture("oura/api_sleep_low_hrv.json"));
    let outputs = run_fetched(&record(PENDING_FETCH, &headers, &body), &oura_request(), 0, outcome, &mut links, None);
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].key.as_deref(), Some(&b"user-linked"[..]));
    assert_eq!(decode(&outputs[0]).user_id, "user-linked");
}

#[test]
fn a_fetched_whoop_recovery_is_an_event() {
    let headers = notification_headers("whoop", &[]);
    let body = fixture("whoop/webhook_recovery_updated.json");
    let outcome = fetched("recovery", fixture("whoop/api_recovery.json"));
    let outputs = run_fetched(&record(PENDING_FETCH, &headers, &body), &whoop_recovery_request(), 1, outcome, &mut Links::default(), None);
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    let out = &outputs[0];
    assert_eq!(out.topic, EVENTS);
    assert_eq!(header(out, headers::VENDOR).as_deref(), Some("whoop"));
    assert_eq!(header(out, headers::EVENT_TYPE).as_deref(), Some("RECOVERY"));
    assert_eq!(header(out, headers::PRIORITY).as_deref(), Some("NORMAL"));
    let event = decode(out);
    assert_eq!(event.user_id, "user-from-connection");
    assert_eq!(event.vendor_user_id, WHOOP_USER);
    assert_eq!(event.recovery_score, Some(71.0));
}

#[test]
fn the_same_fetched_record_twice_is_emitted_once() {
    let headers = notification_headers("oura", &[]);
    let body = fixture("oura/webhook_sleep_create.json");
    let mut dedup = MemoryStore::default();
    let emit = |dedup: &mut MemoryStore<Seen>| {
        let outcome = fetched("sleep", fixture("oura/api_sleep.json"));
        run_fetched(&record(PENDING_FETCH, &headers, &body), &oura_request(), 0, outcome, &mut Links::default(), Some(dedup)).len()
    };
    assert_eq!((emit(&mut dedup), emit(&mut dedup)), (1, 0));
}

#[test]
fn a_fetched_body_that_is_not_a_record_is_a_dead_letter() {
    let out = single_dead_letter(oura_outcome(0, fetched("sleep", b"{\"id\": 7}".to_vec())), "invalid_api_response");
    assert_eq!(out.payload, fixture("oura/webhook_sleep_create.json"), "the notification is kept, not the API answer");
    let garbage = oura_outcome(0, fetched("sleep", fixture("garbage/not_json.txt")));
    single_dead_letter(garbage, "invalid_api_response");
}

#[test]
fn a_fetch_for_a_vendor_without_an_api_mapper_is_a_dead_letter() {
    let headers = notification_headers("apple-health", &[]);
    let body = fixture("apple_healthkit/hae_metrics.json");
    let request = PendingFetch { vendor: Vendor::AppleHealth, ..oura_request() };
    let outcome = fetched("sleep", fixture("oura/api_sleep.json"));
    let outputs = run_fetched(&record(PENDING_FETCH, &headers, &body), &request, 0, outcome, &mut Links::default(), None);
    single_dead_letter(outputs, "unsupported_type");
}

#[test]
fn a_record_gone_from_the_api_emits_nothing() {
    assert!(oura_outcome(0, FetchOutcome::Gone).is_empty());
}

// ---- fetched: retries ----

#[test]
fn a_first_failed_pass_goes_to_the_retry_topic_after_the_first_delay() {
    let outputs = oura_outcome(0, retry("http_503", None));
    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    assert_eq!(out.topic, RETRY_TOPIC);
    assert_eq!(out.payload, fixture("oura/webhook_sleep_create.json"), "original payload");
    assert_eq!(out.key.as_deref(), Some(KEY), "original key");
    assert_eq!(header(out, headers::FETCH_ATTEMPT).as_deref(), Some("1"));
    assert_eq!(header(out, headers::FETCH_LAST_ERROR).as_deref(), Some("http_503"));
    assert_eq!(header(out, headers::FETCH_NOT_BEFORE), Some((NOW_MS + FIRST_DELAY_MS).to_string()));
    for (name, value) in [
        (headers::VENDOR, "oura"),
        (headers::RECEIVED_AT, "1795660000000"),
        (headers::DELIVERY_ID, "delivery-1"),
        (headers::TRACE_ID, TRACE_ID),
        (headers::FETCH_PATH, "/v2/usercollection/sleep/x"),
    ] {
        assert_eq!(header(out, name).as_deref(), Some(value), "original header {name}");
    }
    assert_eq!(out.received_at_ms, None);
}

#[test]
fn a_later_failed_pass_replaces_the_chain_headers_and_doubles_the_delay() {
    let headers = retry_headers("oura", 3, NOW_MS - 1);
    let body = fixture("oura/webhook_sleep_create.json");
    let outputs =
        run_fetched(&record(RETRY_TOPIC, &headers, &body), &oura_request(), 3, retry("timeout", None), &mut Links::default(), None);
    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    assert_eq!(out.topic, RETRY_TOPIC);
    for name in [headers::FETCH_ATTEMPT, headers::FETCH_NOT_BEFORE, headers::FETCH_LAST_ERROR] {
        assert_eq!(header_count(out, name), 1, "{name} exactly once");
    }
    assert_eq!(header(out, headers::FETCH_ATTEMPT).as_deref(), Some("4"));
    assert_eq!(header(out, headers::FETCH_NOT_BEFORE), Some((NOW_MS + 240_000).to_string()), "30 s * 2^3");
    assert_eq!(header_count(out, headers::VENDOR), 1);
}

#[test]
fn a_long_retry_after_sets_the_delay() {
    let out = &oura_outcome(0, retry("rate_limited", Some(Duration::from_secs(90))))[0];
    assert_eq!(header(out, headers::FETCH_NOT_BEFORE), Some((NOW_MS + 90_000).to_string()));
    assert_eq!(header(out, headers::FETCH_LAST_ERROR).as_deref(), Some("rate_limited"));
}

#[test]
fn the_last_allowed_pass_still_goes_to_the_retry_topic() {
    let out = &oura_outcome(MAX_RETRIES - 1, retry("http_503", None))[0];
    assert_eq!(out.topic, RETRY_TOPIC);
    assert_eq!(header(out, headers::FETCH_ATTEMPT), Some(MAX_RETRIES.to_string()));
}

/// `outcome` of a pass over an Oura notification on the retry topic that already failed
/// `MAX_RETRIES` passes.
fn after_the_last_pass(outcome: FetchOutcome) -> Vec<Output> {
    let headers = retry_headers("oura", MAX_RETRIES, NOW_MS - 1);
    let body = fixture("oura/webhook_sleep_create.json");
    run_fetched(&record(RETRY_TOPIC, &headers, &body), &oura_request(), MAX_RETRIES, outcome, &mut Links::default(), None)
}

#[test]
fn our_own_outage_is_retried_without_using_up_a_pass() {
    // PostgreSQL or Redis down (no token could be had): never a dead letter, however long.
    let outputs = after_the_last_pass(retry(crate::fetch::TOKEN_UNAVAILABLE, None));
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].topic, RETRY_TOPIC);
    assert_eq!(header(&outputs[0], headers::FETCH_ATTEMPT), Some(MAX_RETRIES.to_string()), "the count stays");
    // A first such pass waits the first delay, like any retry.
    let first = &oura_outcome(0, retry(crate::fetch::TOKEN_UNAVAILABLE, None))[0];
    assert_eq!(header(first, headers::FETCH_ATTEMPT).as_deref(), Some("0"));
    assert_eq!(header(first, headers::FETCH_NOT_BEFORE), Some((NOW_MS + 30_000).to_string()));
}

#[test]
fn a_pass_failing_after_max_retries_is_a_dead_letter_without_chain_headers() {
    let body = fixture("oura/webhook_sleep_create.json");
    let outputs = after_the_last_pass(retry("http_503", None));
    let out = single_dead_letter(outputs, "fetch_failed");
    for name in [headers::FETCH_ATTEMPT, headers::FETCH_NOT_BEFORE, headers::FETCH_LAST_ERROR] {
        assert_eq!(header(&out, name), None, "{name} dropped: a replay starts a fresh chain");
    }
    assert!(header(&out, headers::ERROR_MESSAGE).unwrap().contains("http_503"));
    assert_eq!(header(&out, headers::FETCH_PATH).as_deref(), Some("/v2/usercollection/sleep/x"), "other headers kept");
    assert_eq!(header(&out, headers::SOURCE_TOPIC).as_deref(), Some(RETRY_TOPIC));
    assert_eq!(out.payload, body);
}

// ---- fetched: dead letters ----

#[test]
fn unfetchable_outcomes_are_dead_letters_with_their_class() {
    for (outcome, class) in [
        (FetchOutcome::NeedsReauth { reason: "refresh_refused".into() }, "connection_needs_reauth"),
        (FetchOutcome::NoConnection { reason: "no_connection".into() }, "no_connection"),
        (FetchOutcome::Rejected { reason: "http_400".into() }, "fetch_rejected"),
    ] {
        let out = single_dead_letter(oura_outcome(0, outcome), class);
        assert_eq!(out.payload, fixture("oura/webhook_sleep_create.json"), "{class}");
        assert_eq!(out.key.as_deref(), Some(KEY), "{class}");
        assert_eq!(header(&out, headers::VENDOR).as_deref(), Some("oura"), "{class}");
    }
}

// ---- Terra payload pointers ----

const POINTER: &[u8] = br#"{"status":"success","type":"s3_payload","url":"https://terra.s3.amazonaws.com/p/1","expires_in":600}"#;

/// The download request of [`POINTER`] (received at 1795660000000: it expires 600 s later).
fn pointer_request() -> PendingFetch {
    let input = crate::vendors::test_support::raw_input(Vendor::Terra, POINTER);
    let input = crate::vendors::RawInput { received_at_ms: 1_795_660_000_000, ..input };
    match vendors::terra::normalize(&input).unwrap() {
        Outcome::PendingFetch(request) => request,
        other => panic!("{other:?}"),
    }
}

fn terra_outcome(attempt: u32, outcome: FetchOutcome) -> Vec<Output> {
    let headers = notification_headers("terra", &[(headers::POINTER_ORIGIN, "terra-direct/2/17")]);
    run_fetched(&record(PENDING_FETCH, &headers, POINTER), &pointer_request(), attempt, outcome, &mut Links::default(), None)
}

#[test]
fn a_downloaded_payload_is_written_to_the_raw_topic_keyed_by_its_user() {
    let payload = fixture("terra/sleep.json");
    let outputs = terra_outcome(0, FetchOutcome::Fetched { data_type: "s3_payload".into(), body: payload.clone(), user_id: String::new() });
    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    assert_eq!(out.topic, "raw-webhooks");
    assert!(out.payload == payload, "byte for byte");
    assert_eq!(out.key.as_deref(), Some(&b"terra:5c0e8c1e-3f5a-4b7e-9d6b-2f1f6c3a9e11"[..]));
    assert_eq!(header(out, headers::VENDOR).as_deref(), Some("terra"));
    assert_eq!(header(out, headers::POINTER_ORIGIN).as_deref(), Some("terra-direct/2/17"));
    assert_eq!(header(out, headers::RECEIVED_AT).as_deref(), Some("1795660000000"), "when Terra sent the pointer");
    assert_eq!(header(out, headers::DOWNLOADED_AT).as_deref(), Some(NOW_MS.to_string().as_str()));
    assert_eq!(header(out, headers::DELIVERY_ID), Some(format!("terra-payload:{}", pointer_request().object_id)));
    assert_eq!(header_count(out, headers::DELIVERY_ID), 1);
    assert_eq!(header(out, headers::FETCH_PATH), None);
    let user = "5c0e8c1e-3f5a-4b7e-9d6b-2f1f6c3a9e11".to_owned();
    assert_eq!(out.seal_for, Some(SealFor { vendor: Vendor::Terra, vendor_user_id: user }), "sealed for its user before it is written");
}

#[test]
fn an_expired_pointer_is_a_dead_letter_naming_its_payload() {
    let out = single_dead_letter(terra_outcome(0, FetchOutcome::Expired { reason: "http_403".into() }), "terra_payload_expired");
    assert_eq!(header(&out, headers::TERRA_PAYLOAD_REFERENCE), Some(pointer_request().object_id));
    assert!(out.payload == POINTER, "the pointer itself");
    // Planned after its expiry: dead-lettered without a request.
    let headers = notification_headers("terra", &[]);
    let late = pipeline().plan_fetch(&record(PENDING_FETCH, &headers, POINTER), 1_795_660_000_000 + 600_001);
    planned_dead_letter(late, "terra_payload_expired");
}

#[test]
fn a_failed_download_retries_only_while_the_url_is_valid() {
    // NOW is 100 s after the pointer was sent: a pass 30 s later is still in time.
    let outputs = terra_outcome(0, retry("http_503", None));
    assert_eq!(outputs[0].topic, RETRY_TOPIC);
    // After 5 failed passes the next waits 16 minutes: past the 10-minute expiry.
    assert_eq!(terra_outcome(4, retry("http_503", None))[0].topic, RETRY_TOPIC, "8 minutes: still in time");
    single_dead_letter(terra_outcome(5, retry("http_503", None)), "terra_payload_expired");
}

#[test]
fn a_payload_that_is_a_pointer_again_is_refused() {
    let outcome = FetchOutcome::Fetched { data_type: "s3_payload".into(), body: POINTER.to_vec(), user_id: String::new() };
    single_dead_letter(terra_outcome(0, outcome), "invalid_api_response");
}
