//! What the `ingress_*` tests share: a unique raw topic sized like production, webhooks signed
//! the way each vendor signs them, error-body checks, topic reads off the async runtime, and raw
//! HTTP/1.1 connections whose body can be held back (in-flight and shutdown tests).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use biometric_bridge::ingress::producer::required_topic_max_message_bytes;
use biometric_bridge::topology::TopicSpec;
use hmac::{Hmac, Mac};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::helpers::{self, RawRecord};
use super::ingress_support::{TestIngress, spawn_ingress, test_secrets};

/// A value planted in headers, bodies and paths of refused requests: it must never come back in
/// an error body (nor, in `ingress_process`, in a log line).
pub const CANARY: &str = "CANARY-7f3a9c";

/// Creates a unique raw topic whose `max.message.bytes` holds the largest body the ingress
/// accepts by default (5 MiB), as the production topology must.
pub async fn raw_topic(partitions: i32) -> String {
    let max_message = required_topic_max_message_bytes(5 * 1024 * 1024).to_string();
    topic_with(partitions, BTreeMap::from([("max.message.bytes".to_owned(), max_message)])).await
}

/// A fresh raw topic, and an ingress with the test secrets and `extra` flags writing to it.
pub async fn start(partitions: i32, extra: &[&str]) -> (String, TestIngress) {
    let topic = raw_topic(partitions).await;
    let ingress = spawn_ingress(&topic, test_secrets(), extra).await;
    (topic, ingress)
}

/// A unique topic with the given topic configs (none: the broker's defaults).
pub async fn topic_with(partitions: i32, configs: BTreeMap<String, String>) -> String {
    helpers::require_stack();
    let name = helpers::unique("raw-ingress");
    let spec = TopicSpec::fixed(name.clone(), partitions, 1, configs);
    biometric_bridge::kafka::admin::ensure_topics(&helpers::kafka_args(), &[spec]).await.expect("create the raw topic");
    name
}

/// `helpers::read_raw` on a blocking thread, so the ingress keeps running meanwhile.
pub async fn records(topic: &str, expected: usize, timeout: Duration) -> Vec<RawRecord> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || helpers::read_raw(&topic, expected, timeout)).await.unwrap()
}

/// Asserts the topic holds exactly `wanted` bodies (in any order), waiting a little past them so
/// that an extra record written by mistake would be seen.
pub async fn assert_topic_holds(topic: &str, wanted: &[&[u8]]) -> Vec<RawRecord> {
    let found = records(topic, wanted.len() + 1, Duration::from_secs(4) + Duration::from_secs(1) * wanted.len() as u32).await;
    let mut found_bodies: Vec<&[u8]> = found.iter().map(|record| record.payload.as_slice()).collect();
    let mut wanted = wanted.to_vec();
    found_bodies.sort();
    wanted.sort();
    assert!(found_bodies == wanted, "topic {topic}: {} record(s), expected exactly {}", found_bodies.len(), wanted.len());
    found
}

fn hmac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

pub fn oura_secret() -> String {
    test_secrets().oura.unwrap().expose().to_owned()
}

pub fn whoop_secret() -> String {
    test_secrets().whoop.unwrap().expose().to_owned()
}

/// A webhook request as a vendor sends it.
#[derive(Clone)]
pub struct Webhook {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Webhook {
    fn new(vendor: &str, body: &[u8], headers: Vec<(&str, String)>) -> Webhook {
        let mut all = vec![("content-type".to_owned(), "application/json".to_owned())];
        all.extend(headers.into_iter().map(|(name, value)| (name.to_owned(), value)));
        Webhook { path: format!("/webhooks/{vendor}"), headers: all, body: body.to_vec() }
    }

    /// Terra: `terra-signature: t=<secs>,v1=<hex>` over `t.body`; the delivery id is a header.
    pub fn terra_signed_with(body: &[u8], delivery_id: &str, secret: &str, timestamp: i64) -> Webhook {
        let signature = helpers::terra_signature(secret, timestamp, body);
        Webhook::new("terra", body, vec![("terra-signature", signature), ("x-terra-trace-id", delivery_id.to_owned())])
    }

    pub fn terra(body: &[u8], delivery_id: &str) -> Webhook {
        Webhook::terra_signed_with(body, delivery_id, helpers::TERRA_SECRET, helpers::now_secs())
    }

    /// Oura: upper-case hex HMAC over `x-oura-timestamp` (secs) directly followed by the body.
    pub fn oura_signed_with(body: &[u8], secret: &str, timestamp: i64) -> Webhook {
        let timestamp = timestamp.to_string();
        let signature = hex::encode_upper(hmac(secret, &[timestamp.as_bytes(), body]));
        Webhook::new("oura", body, vec![("x-oura-signature", signature), ("x-oura-timestamp", timestamp)])
    }

    pub fn oura(body: &[u8]) -> Webhook {
        Webhook::oura_signed_with(body, &oura_secret(), helpers::now_secs())
    }

    /// WHOOP: base64 HMAC over `X-WHOOP-Signature-Timestamp` (ms) followed by the body.
    pub fn whoop_signed_with(body: &[u8], secret: &str, timestamp_ms: i64) -> Webhook {
        let timestamp = timestamp_ms.to_string();
        let signature = base64::engine::general_purpose::STANDARD.encode(hmac(secret, &[timestamp.as_bytes(), body]));
        Webhook::new("whoop", body, vec![("X-WHOOP-Signature", signature), ("X-WHOOP-Signature-Timestamp", timestamp)])
    }

    pub fn whoop(body: &[u8]) -> Webhook {
        Webhook::whoop_signed_with(body, &whoop_secret(), helpers::now_secs() * 1000)
    }

    /// Apple Health: a bearer token, no signature.
    pub fn apple_health(body: &[u8], token: &str) -> Webhook {
        Webhook::new("apple-health", body, vec![("authorization", format!("Bearer {token}"))])
    }

    /// Adds (or replaces) a header.
    pub fn header(mut self, name: &str, value: &str) -> Webhook {
        self.headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn without_header(mut self, name: &str) -> Webhook {
        self.headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        self
    }

    /// The same headers (signature included) over another body.
    pub fn with_body(mut self, body: &[u8]) -> Webhook {
        self.body = body.to_vec();
        self
    }

    pub fn header_value(&self, name: &str) -> &str {
        &self.headers.iter().find(|(existing, _)| existing.eq_ignore_ascii_case(name)).expect("header set").1
    }

    pub async fn send(&self, ingress: &TestIngress) -> reqwest::Response {
        self.send_to(&ingress.client, ingress.addr).await
    }

    pub async fn send_to(&self, client: &reqwest::Client, addr: SocketAddr) -> reqwest::Response {
        let mut request = client.post(format!("http://{addr}{}", self.path)).body(self.body.clone());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request.send().await.expect("the ingress answers")
    }

    /// The request head for a raw connection; `framing` is the content-length or
    /// transfer-encoding header line.
    fn http_head(&self, addr: SocketAddr, framing: &str) -> String {
        let mut head = format!("POST {} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{framing}\r\n", self.path);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head
    }
}

/// Asserts an error answer: the status, `{"error": code, "detail": <text>}` and nothing else, and
/// no trace of [`CANARY`] or of a configured secret. Returns the response headers.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> reqwest::header::HeaderMap {
    let headers = response.headers().clone();
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "expected {status} {code}, got {actual}: {text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("error body is not JSON: {text}"));
    assert_eq!(json["error"], code, "{text}");
    assert!(json["detail"].is_string(), "{text}");
    assert_eq!(json.as_object().unwrap().len(), 2, "only error and detail: {text}");
    assert_no_leak(&text);
    headers
}

/// Fails if `text` contains the canary or any test secret.
pub fn assert_no_leak(text: &str) {
    let secrets = test_secrets();
    let mut forbidden = vec![CANARY.to_owned()];
    for secret in [secrets.terra, secrets.oura, secrets.whoop, secrets.oura_verification_token].into_iter().flatten() {
        forbidden.push(secret.expose().to_owned());
    }
    for value in forbidden {
        assert!(!text.contains(&value), "leaked {value:?} in: {text}");
    }
}

/// Asserts a 2xx webhook answer with `status` (`accepted` or `duplicate`); returns the JSON.
pub async fn assert_accepted(response: reqwest::Response, status: u16, outcome: &str) -> serde_json::Value {
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["status"], outcome, "{text}");
    json
}

/// An HTTP/1.1 request sent by hand whose body is held back: the ingress has the headers (and
/// the request is in flight) until [`HeldRequest::finish`] sends the rest.
pub struct HeldRequest {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl HeldRequest {
    /// Sends the head and the first `sent` bytes of the body.
    pub async fn start(addr: SocketAddr, webhook: &Webhook, sent: usize) -> HeldRequest {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the ingress");
        let head = webhook.http_head(addr, &format!("content-length: {}", webhook.body.len()));
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&webhook.body[..sent]).await.unwrap();
        stream.flush().await.unwrap();
        HeldRequest { stream, rest: webhook.body[sent..].to_vec() }
    }

    /// Sends the whole body chunked, so no length is declared up front.
    pub async fn start_chunked(addr: SocketAddr, webhook: &Webhook) -> HeldRequest {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the ingress");
        let mut request = webhook.http_head(addr, "transfer-encoding: chunked").into_bytes();
        for chunk in webhook.body.chunks(1024) {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        stream.write_all(&request).await.unwrap();
        HeldRequest { stream, rest: Vec::new() }
    }

    /// Whether the server has already answered (or closed), without waiting.
    pub fn answered(&self) -> bool {
        let mut byte = [0u8; 1];
        !matches!(self.stream.try_read(&mut byte), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Sends the rest of the body and returns the status code and body of the answer.
    pub async fn finish(mut self) -> (u16, String) {
        self.stream.write_all(&self.rest).await.unwrap();
        self.response().await
    }

    /// Reads the answer without sending more (for requests the server answers early).
    pub async fn response(mut self) -> (u16, String) {
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), self.stream.read_to_end(&mut raw)).await.expect("answer in time").unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
        let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
        (status, body)
    }
}
