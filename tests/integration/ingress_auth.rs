//! Authenticity per vendor: a correctly signed fixture is written byte for byte with the right
//! key and headers; a forged, tampered, stale or unsigned one is refused with 401 and never
//! reaches the topic (checked on the topic, not only the status). Plus Oura's handshake and
//! vendors disabled for want of a secret.

use std::time::Duration;

use super::helpers::{self, RawRecord};
use super::ingress_harness::{
    CANARY, Webhook, assert_accepted, assert_error, assert_topic_holds, oura_secret, raw_topic, records, start, whoop_secret,
};
use super::ingress_support::{spawn_ingress, test_secrets};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The one record a single accepted webhook produced, checked for the headers every vendor gets.
async fn the_record(topic: &str, webhook: &Webhook, sent_at_ms: i64) -> RawRecord {
    let mut found = assert_topic_holds(topic, &[&webhook.body]).await;
    let record = found.remove(0);
    assert_eq!(record.payload, webhook.body, "byte for byte");
    assert_eq!(record.headers["content-type"], "application/json");
    let received_at: i64 = record.headers["received-at"].parse().expect("ms since the epoch");
    assert!((sent_at_ms - 1_000..=helpers::now_secs() * 1000 + 1_000).contains(&received_at), "received-at {received_at}");
    assert!(!record.headers.contains_key("authorization"));
    record
}

fn key(record: &RawRecord) -> &str {
    std::str::from_utf8(record.key.as_deref().expect("keyed")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terra_signed_fixture_is_written_byte_for_byte() {
    let (topic, ingress) = start(2, &[]).await;
    let delivery_id = helpers::unique("terra-delivery");
    let webhook = Webhook::terra(&helpers::fixture("terra/sleep.json"), &delivery_id).header("traceparent", TRACEPARENT);
    let sent_at = chrono::Utc::now().timestamp_millis();

    let answer = assert_accepted(webhook.send(&ingress).await, 202, "accepted").await;
    assert_eq!(answer["delivery_id"], delivery_id.as_str());
    assert_eq!(answer["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");

    let record = the_record(&topic, &webhook, sent_at).await;
    assert_eq!(key(&record), "terra:5c0e8c1e-3f5a-4b7e-9d6b-2f1f6c3a9e11");
    assert_eq!(record.headers["vendor"], "terra");
    assert_eq!(record.headers["delivery-id"], delivery_id);
    assert_eq!(record.headers["trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(record.headers["terra-signature"], webhook.header_value("terra-signature"), "kept for audit");
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terra_signature_is_also_accepted_under_its_x_name() {
    let (topic, ingress) = start(1, &[]).await;
    let webhook = Webhook::terra(&helpers::fixture("terra/daily.json"), &helpers::unique("terra-x"));
    let signature = webhook.header_value("terra-signature").to_owned();
    let webhook = webhook.without_header("terra-signature").header("X-Terra-Signature", &signature);
    assert_accepted(webhook.send(&ingress).await, 202, "accepted").await;
    let record = the_record(&topic, &webhook, 0).await;
    assert_eq!(record.headers["x-terra-signature"], signature);
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oura_signed_fixture_is_written_byte_for_byte() {
    let (topic, ingress) = start(2, &[]).await;
    let body = helpers::fixture("oura/webhook_sleep_create.json");
    let webhook = Webhook::oura(&body);
    let sent_at = chrono::Utc::now().timestamp_millis();

    let answer = assert_accepted(webhook.send(&ingress).await, 202, "accepted").await;
    let trace_id = answer["trace_id"].as_str().unwrap().to_owned();
    assert!(trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()), "minted W3C trace id: {trace_id}");

    let record = the_record(&topic, &webhook, sent_at).await;
    assert_eq!(key(&record), "oura:d2f6a1c4b7e9-5a3c0f8e2d1b4a6c9e7f3b1");
    assert_eq!(record.headers["vendor"], "oura");
    let body_hash = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body)));
    assert_eq!(record.headers["delivery-id"], body_hash, "Oura has no delivery id: the body hash");
    assert_eq!(record.headers["trace-id"], trace_id);
    assert_eq!(record.headers["x-oura-signature"], webhook.header_value("x-oura-signature"));
    assert_eq!(record.headers["x-oura-timestamp"], webhook.header_value("x-oura-timestamp"));
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoop_signed_fixture_is_written_byte_for_byte() {
    let (topic, ingress) = start(2, &[]).await;
    let webhook = Webhook::whoop(&helpers::fixture("whoop/webhook_sleep_updated.json")).header("traceparent", TRACEPARENT);
    let sent_at = chrono::Utc::now().timestamp_millis();

    let answer = assert_accepted(webhook.send(&ingress).await, 202, "accepted").await;
    assert_eq!(answer["delivery_id"], "a81f0c2e-6b3d-4d7a-9e5c-1f8b2a4c6d03", "WHOOP's trace_id");

    let record = the_record(&topic, &webhook, sent_at).await;
    assert_eq!(key(&record), "whoop:10129457");
    assert_eq!(record.headers["vendor"], "whoop");
    assert_eq!(record.headers["delivery-id"], "a81f0c2e-6b3d-4d7a-9e5c-1f8b2a4c6d03");
    assert_eq!(record.headers["trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(record.headers["x-whoop-signature"], webhook.header_value("X-WHOOP-Signature"));
    assert_eq!(record.headers["x-whoop-signature-timestamp"], webhook.header_value("X-WHOOP-Signature-Timestamp"));
    ingress.stop().await;
}

/// Every way to get a signature wrong, for each signed vendor: all 401, none written. Then one
/// good webhook per vendor, and the topic must hold exactly those three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_stale_or_unsigned_webhooks_are_refused_and_never_written() {
    let (topic, ingress) = start(2, &[]).await;
    let now = helpers::now_secs();
    let terra_body = helpers::fixture("terra/sleep.json");
    let oura_body = helpers::fixture("oura/webhook_sleep_create.json");
    let whoop_body = helpers::fixture("whoop/webhook_sleep_updated.json");
    let id = || helpers::unique("forged");
    let tampered = |body: &[u8]| {
        let mut copy = body.to_vec();
        let middle = copy.len() / 2;
        copy[middle] ^= 0x01;
        copy
    };

    let refused = [
        // Body changed after signing.
        (Webhook::terra(&terra_body, &id()).with_body(&tampered(&terra_body)), "invalid_signature"),
        (Webhook::oura(&oura_body).with_body(&tampered(&oura_body)), "invalid_signature"),
        (Webhook::whoop(&whoop_body).with_body(&tampered(&whoop_body)), "invalid_signature"),
        // Signed with another secret.
        (Webhook::terra_signed_with(&terra_body, &id(), CANARY, now), "invalid_signature"),
        (Webhook::oura_signed_with(&oura_body, CANARY, now), "invalid_signature"),
        (Webhook::whoop_signed_with(&whoop_body, CANARY, now * 1000), "invalid_signature"),
        // Correctly signed, but beyond the vendor's retry horizon (26 h Terra, 2 h Oura and
        // WHOOP) or as far ahead: a replay.
        (Webhook::terra_signed_with(&terra_body, &id(), helpers::TERRA_SECRET, now - 93_601), "stale_signature"),
        (Webhook::oura_signed_with(&oura_body, &oura_secret(), now - 7_201), "stale_signature"),
        (Webhook::whoop_signed_with(&whoop_body, &whoop_secret(), (now - 7_201) * 1000), "stale_signature"),
        (Webhook::terra_signed_with(&terra_body, &id(), helpers::TERRA_SECRET, now + 93_601), "stale_signature"),
        // No signature at all, or garbage in it.
        (Webhook::terra(&terra_body, &id()).without_header("terra-signature"), "missing_signature"),
        (Webhook::oura(&oura_body).without_header("x-oura-signature"), "missing_signature"),
        (Webhook::whoop(&whoop_body).without_header("X-WHOOP-Signature-Timestamp"), "missing_signature"),
        (Webhook::terra(&terra_body, &id()).header("terra-signature", &format!("t={now},v1={CANARY}")), "malformed_signature"),
    ];
    for (webhook, code) in &refused {
        assert_error(webhook.send(&ingress).await, 401, code).await;
    }

    let good = [Webhook::terra(&terra_body, &id()), Webhook::oura(&oura_body), Webhook::whoop(&whoop_body)];
    for webhook in &good {
        assert_accepted(webhook.send(&ingress).await, 202, "accepted").await;
    }
    let bodies: Vec<&[u8]> = good.iter().map(|webhook| webhook.body.as_slice()).collect();
    assert_topic_holds(&topic, &bodies).await;
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oura_handshake_echoes_the_challenge_only_for_the_right_token() {
    let (topic, ingress) = start(1, &[]).await;
    let token = test_secrets().oura_verification_token.unwrap();
    // Tokens here are URL-safe as they stand.
    let handshake =
        |token: &str| ingress.client.get(ingress.url(&format!("/webhooks/oura?verification_token={token}&challenge=c-12345"))).send();

    let answer = handshake(token.expose()).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<serde_json::Value>().await.unwrap(), serde_json::json!({ "challenge": "c-12345" }));

    assert_error(handshake(CANARY).await.unwrap(), 401, "verification_failed").await;
    let no_token = ingress.client.get(ingress.url("/webhooks/oura?challenge=c-1")).send().await.unwrap();
    assert_error(no_token, 401, "verification_failed").await;
    assert!(records(&topic, 1, Duration::from_secs(2)).await.is_empty(), "a handshake writes nothing");
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_without_its_secret_is_disabled() {
    let topic = raw_topic(1).await;
    let mut secrets = test_secrets();
    secrets.whoop = None;
    secrets.oura = None;
    let ingress = spawn_ingress(&topic, secrets, &[]).await;

    let whoop = Webhook::whoop(&helpers::fixture("whoop/webhook_sleep_updated.json"));
    assert_error(whoop.send(&ingress).await, 404, "vendor_disabled").await;
    let oura = Webhook::oura(&helpers::fixture("oura/webhook_sleep_create.json"));
    assert_error(oura.send(&ingress).await, 404, "vendor_disabled").await;
    let handshake = ingress.client.get(ingress.url("/webhooks/oura?verification_token=x&challenge=y")).send().await.unwrap();
    assert_error(handshake, 404, "vendor_disabled").await;

    let terra = Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique("still-on"));
    assert_accepted(terra.send(&ingress).await, 202, "accepted").await;
    assert_topic_holds(&topic, &[&terra.body]).await;
    ingress.stop().await;
}
