//! The Redis de-duplication fast path: a re-delivery of a written webhook is answered 200
//! `duplicate` without a second write; a new delivery id of the same body is a new write.

use super::helpers;
use super::ingress_harness::{Webhook, assert_accepted, assert_topic_holds, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_terra_webhook_is_written_once() {
    let (topic, ingress) = start(2, &[]).await;
    let body = helpers::fixture("terra/sleep.json");
    let delivery_id = helpers::unique("redelivered");

    let first = Webhook::terra(&body, &delivery_id);
    assert_accepted(first.send(&ingress).await, 202, "accepted").await;
    // Terra re-signs its retries: same delivery id, new signature.
    let retry = Webhook::terra_signed_with(&body, &delivery_id, helpers::TERRA_SECRET, helpers::now_secs() - 1);
    let answer = assert_accepted(retry.send(&ingress).await, 200, "duplicate").await;
    assert_eq!(answer["delivery_id"], delivery_id.as_str());
    assert_topic_holds(&topic, &[&body]).await;

    // Another delivery of the same bytes is a different delivery.
    let other = Webhook::terra(&body, &helpers::unique("other"));
    assert_accepted(other.send(&ingress).await, 202, "accepted").await;
    assert_topic_holds(&topic, &[&body, &body]).await;
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoop_redelivery_is_recognised_by_its_trace_id() {
    let (topic, ingress) = start(1, &[]).await;
    let body = helpers::fixture("whoop/webhook_recovery_updated.json");
    assert_accepted(Webhook::whoop(&body).send(&ingress).await, 202, "accepted").await;
    assert_accepted(Webhook::whoop(&body).send(&ingress).await, 200, "duplicate").await;
    assert_topic_holds(&topic, &[&body]).await;
    ingress.stop().await;
}
