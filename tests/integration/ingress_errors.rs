//! Every error class of the webhook route with its status and stable code, each a JSON body that
//! echoes nothing of the request; the in-flight limit (503 + Retry-After) at 1 and at the
//! default 100; and the other end of the size limit: a body of exactly 5 MiB is written whole.

use std::time::Duration;

use super::helpers;
use super::ingress_harness::{CANARY, HeldRequest, Webhook, assert_accepted, assert_error, assert_topic_holds, start, topic_with};
use super::ingress_support::{TestIngress, build_ingress, spawn_ingress, test_secrets};

fn terra_webhook() -> Webhook {
    Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique("errors")).header("x-canary", CANARY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_errors_are_json_404_and_405() {
    let (_topic, ingress) = start(1, &[]).await;
    let client = &ingress.client;

    let unknown_vendor = Webhook { path: format!("/webhooks/{CANARY}"), ..terra_webhook() };
    assert_error(unknown_vendor.send(&ingress).await, 404, "not_found").await;
    let newline_vendor = Webhook { path: "/webhooks/ter%0Ara".to_owned(), ..terra_webhook() };
    assert_error(newline_vendor.send(&ingress).await, 404, "not_found").await;
    assert_error(client.get(ingress.url(&format!("/{CANARY}"))).send().await.unwrap(), 404, "not_found").await;

    assert_error(client.get(ingress.url("/webhooks/terra")).send().await.unwrap(), 405, "method_not_allowed").await;
    assert_error(client.put(ingress.url("/webhooks/terra")).body("{}").send().await.unwrap(), 405, "method_not_allowed").await;
    assert_error(client.delete(ingress.url("/health")).send().await.unwrap(), 405, "method_not_allowed").await;
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_have_their_status_and_code_and_write_nothing() {
    let (topic, ingress) = start(1, &["--max-body-bytes", "8192", "--terra-max-body-bytes", "8192"]).await;

    // 415: not JSON by content type (checked before the body or signature).
    let text = terra_webhook().header("content-type", &format!("text/{CANARY}"));
    assert_error(text.send(&ingress).await, 415, "unsupported_media_type").await;
    let none = terra_webhook().without_header("content-type");
    assert_error(none.send(&ingress).await, 415, "unsupported_media_type").await;

    // 413: declared too large, and too large without a declared length (chunked).
    let mut big = format!("{{\"pad\":\"{CANARY}").into_bytes();
    big.resize(8193, b'x');
    let declared = Webhook::terra(&big, &helpers::unique("big"));
    assert_error(declared.send(&ingress).await, 413, "payload_too_large").await;
    let chunked = HeldRequest::start_chunked(ingress.addr, &declared).await;
    let (status, body) = chunked.response().await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large") && !body.contains(CANARY), "{body}");

    // 400: correctly signed, but not JSON.
    let garbage = format!("{CANARY} this is not JSON {{\"type\": \"sleep\"");
    let malformed = Webhook::terra(garbage.as_bytes(), &helpers::unique("garbage")).header("x-canary", CANARY);
    assert_error(malformed.send(&ingress).await, 400, "malformed_json").await;
    let truncated = Webhook::terra(&helpers::fixture("garbage/truncated_terra_sleep.json"), &helpers::unique("truncated"));
    assert_error(truncated.send(&ingress).await, 400, "malformed_json").await;

    // 401 comes before the JSON check: an unauthenticated body is never parsed.
    let unsigned_garbage = malformed.clone().without_header("terra-signature");
    assert_error(unsigned_garbage.send(&ingress).await, 401, "missing_signature").await;

    let good = terra_webhook();
    assert_accepted(good.send(&ingress).await, 202, "accepted").await;
    assert_topic_holds(&topic, &[&good.body]).await;
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_is_cut_off_with_408() {
    let (_topic, ingress) = start(1, &["--body-read-timeout-ms", "300"]).await;
    let webhook = terra_webhook();
    let held = HeldRequest::start(ingress.addr, &webhook, 10).await;
    let (status, body) = held.response().await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("body_timeout"), "{body}");
    ingress.stop().await;
}

/// Holds `count` requests in flight (head sent, body held back) and returns them once a further
/// request is refused as overloaded (503 + Retry-After). A held request may lose the race for a
/// slot to one of these probes and be refused itself: it is then replaced, until the slots are
/// really taken by held requests.
async fn hold_until_overloaded(ingress: &TestIngress, count: usize) -> Vec<HeldRequest> {
    let webhook = terra_webhook();
    let mut held: Vec<HeldRequest> = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        held.retain(|request| !request.answered());
        while held.len() < count {
            held.push(HeldRequest::start(ingress.addr, &webhook, 10).await);
        }
        let response = terra_webhook().send(ingress).await;
        if response.status() == 503 {
            let headers = assert_error(response, 503, "overloaded").await;
            assert_eq!(headers["retry-after"], "1");
            return held;
        }
        assert_eq!(response.status(), 202, "a request under the limit is served");
        assert!(tokio::time::Instant::now() < deadline, "{count} held requests never filled the in-flight limit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_held_request_fills_a_limit_of_one() {
    // Held bodies wait on the test, not the network: no minimum body rate here.
    let (_topic, ingress) = start(1, &["--max-concurrent-webhooks", "1", "--min-body-bytes-per-sec", "0"]).await;
    let held = hold_until_overloaded(&ingress, 1).await;

    for request in held {
        let (status, body) = request.finish().await;
        assert_eq!(status, 202, "the held request completes: {body}");
    }
    assert_accepted(terra_webhook().send(&ingress).await, 202, "accepted").await;
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limit_refuses_the_101st_concurrent_webhook() {
    let (_topic, ingress) = start(1, &["--min-body-bytes-per-sec", "0", "--max-in-flight-per-client", "0"]).await;
    let mut held = hold_until_overloaded(&ingress, 100).await;

    // One slot freed: the next request is served again.
    let (status, body) = held.pop().unwrap().finish().await;
    assert_eq!(status, 202, "{body}");
    assert_accepted(terra_webhook().send(&ingress).await, 202, "accepted").await;
    drop(held);
    ingress.stop().await;
}

/// A JSON body of exactly `len` bytes whose random-ish content compression cannot shrink much.
fn incompressible_json(len: usize) -> Vec<u8> {
    let mut body = b"{\"type\":\"healthcheck\",\"pad\":\"".to_vec();
    let mut state: u32 = 0x9e37_79b9;
    while body.len() < len - 2 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        body.push(b"abcdefghijklmnopqrstuvwxyz0123456789"[(state % 36) as usize]);
    }
    body.extend_from_slice(b"\"}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_exactly_a_5_mib_limit_is_written_whole() {
    let (topic, ingress) = start(1, &["--terra-max-body-bytes", "5242880"]).await;
    let limit = 5 * 1024 * 1024;
    let body = incompressible_json(limit);
    assert_eq!(body.len(), limit);

    let webhook = Webhook::terra(&body, &helpers::unique("five-mib"));
    assert_accepted(webhook.send(&ingress).await, 202, "accepted").await;
    let found = assert_topic_holds(&topic, &[&body]).await;
    assert_eq!(found[0].payload.len(), limit);

    // One byte more is refused on the declared length alone, before any of the body is read
    // (the head is all that is sent).
    let over = Webhook::terra(&[body.as_slice(), b" "].concat(), &helpers::unique("over"));
    let (status, answer) = HeldRequest::start(ingress.addr, &over, 0).await.response().await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    ingress.stop().await;
}

/// The broker creates no topic on first write, so an ingress whose raw topic is missing would
/// refuse every webhook: it refuses to start instead, saying what to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_whose_raw_topic_is_missing_refuses_to_start() {
    let missing = helpers::unique("raw-missing");
    let error = build_ingress(&missing, &[]).await.err().expect("no ingress for a missing raw topic").to_string();
    assert!(error.contains(&missing) && error.contains("does not exist") && error.contains("topics create"), "{error}");
    let topic = topic_with(1, Default::default()).await;
    assert!(build_ingress(&topic, &[]).await.is_ok(), "a raw topic too small for the largest body is reported, not refused");
}

/// A topic left at the broker's ~1 MB default refuses a 2 MiB record: that is a deployment
/// error, answered 500 `kafka_rejected` (the vendor retries once it is fixed), and it must not
/// open the circuit breaker, which guards against Kafka being *down*.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_topic_refuses_is_a_500_and_leaves_the_circuit_closed() {
    let topic = topic_with(1, Default::default()).await;
    let ingress = spawn_ingress(&topic, test_secrets(), &[]).await;
    let body = incompressible_json(2 * 1024 * 1024);
    for _ in 0..6 {
        let webhook = Webhook::terra(&body, &helpers::unique("too-big-for-topic"));
        assert_error(webhook.send(&ingress).await, 500, "kafka_rejected").await;
    }
    let small = terra_webhook();
    assert_accepted(small.send(&ingress).await, 202, "accepted").await;
    let ready: serde_json::Value = ingress.client.get(ingress.url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["circuit"], "closed", "{ready}");
    assert_topic_holds(&topic, &[&small.body]).await;
    ingress.stop().await;
}
