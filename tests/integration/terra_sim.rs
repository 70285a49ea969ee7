//! A local stand-in for Terra's side: the storage its payload pointers point to (pre-signed,
//! expiring URLs, answered like S3: 403 `Request has expired` after the expiry), and the REST API
//! that re-sends a window of a user's data (`GET /v2/{type}?...&to_webhook=true`, `dev-id` and
//! `x-api-key` headers) by POSTing signed webhooks to the destination, as Terra does.
//!
//! A real HTTP server on `127.0.0.1`, on its own thread and runtime (like `vendor_sim.rs`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::helpers;

pub const DEV_ID: &str = "bb-test-dev";
pub const API_KEY: &str = "terra_test_api_key_DO_NOT_USE";

struct Payload {
    body: Vec<u8>,
    expires: Instant,
}

#[derive(Default)]
struct SimState {
    payloads: HashMap<String, Payload>,
    /// Delay before each storage answer (a slow S3).
    storage_delay: Duration,
    storage_hits: usize,
    /// (terra user, data type) -> webhook bodies Terra would send again.
    history: HashMap<(String, String), Vec<Vec<u8>>>,
    /// Where re-sent webhooks go, and the signing secret.
    destination: Option<(String, String)>,
    api_requests: Vec<String>,
}

pub struct TerraSim {
    pub addr: SocketAddr,
    state: Arc<Mutex<SimState>>,
    _thread: std::thread::JoinHandle<()>,
}

impl TerraSim {
    pub fn start() -> TerraSim {
        let state = Arc::new(Mutex::new(SimState::default()));
        let app = Router::new().route("/storage/{id}", get(storage)).route("/v2/{data_type}", get(resend)).with_state(state.clone());
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                sender.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = receiver.recv().unwrap();
        TerraSim { addr, state, _thread: thread }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stores `body` behind a pre-signed URL valid for `valid_for`; returns the URL.
    pub fn store_payload(&self, body: Vec<u8>, valid_for: Duration) -> String {
        let id = helpers::unique("payload");
        self.state.lock().unwrap().payloads.insert(id.clone(), Payload { body, expires: Instant::now() + valid_for });
        format!(
            "http://{}/storage/{id}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={}&X-Amz-Signature={}",
            self.addr,
            valid_for.as_secs(),
            &uuid::Uuid::new_v4().simple().to_string()
        )
    }

    /// Terra's pointer message for a stored payload, as its Kafka destination publishes it.
    pub fn pointer(url: &str, expires_in: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"status": "success", "type": "s3_payload", "url": url, "expires_in": expires_in})).unwrap()
    }

    pub fn set_storage_delay(&self, delay: Duration) {
        self.state.lock().unwrap().storage_delay = delay;
    }

    pub fn storage_hits(&self) -> usize {
        self.state.lock().unwrap().storage_hits
    }

    /// What Terra holds for `user`'s `data_type` and re-sends on request.
    pub fn add_history(&self, user: &str, data_type: &str, body: Vec<u8>) {
        self.state.lock().unwrap().history.entry((user.to_owned(), data_type.to_owned())).or_default().push(body);
    }

    /// Re-sent webhooks go to `url`, signed with `secret`.
    pub fn set_destination(&self, url: &str, secret: &str) {
        self.state.lock().unwrap().destination = Some((url.to_owned(), secret.to_owned()));
    }

    /// The queries of every API request received.
    pub fn api_requests(&self) -> Vec<String> {
        self.state.lock().unwrap().api_requests.clone()
    }
}

async fn storage(State(state): State<Arc<Mutex<SimState>>>, Path(id): Path<String>) -> Response {
    let delay = {
        let mut state = state.lock().unwrap();
        state.storage_hits += 1;
        state.storage_delay
    };
    tokio::time::sleep(delay).await;
    let state = state.lock().unwrap();
    match state.payloads.get(&id) {
        None => (StatusCode::NOT_FOUND, "<Error><Code>NoSuchKey</Code></Error>").into_response(),
        Some(payload) if Instant::now() > payload.expires => {
            (StatusCode::FORBIDDEN, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>").into_response()
        }
        Some(payload) => (StatusCode::OK, payload.body.clone()).into_response(),
    }
}

async fn resend(
    State(state): State<Arc<Mutex<SimState>>>,
    Path(data_type): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers.get("dev-id").is_some_and(|v| v == DEV_ID) && headers.get("x-api-key").is_some_and(|v| v == API_KEY);
    if !authorized {
        return (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"status": "error", "message": "unauthorised"}))).into_response();
    }
    let user = query.get("user_id").cloned().unwrap_or_default();
    let (bodies, destination) = {
        let mut state = state.lock().unwrap();
        state.api_requests.push(format!("{data_type}?{}", serde_urlencoded_like(&query)));
        (state.history.get(&(user.clone(), data_type.clone())).cloned().unwrap_or_default(), state.destination.clone())
    };
    if query.get("to_webhook").map(String::as_str) == Some("true")
        && let Some((url, secret)) = destination
    {
        // Terra answers at once and delivers asynchronously.
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for body in bodies {
                let signature = helpers::terra_signature(&secret, helpers::now_secs(), &body);
                let _ = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("terra-signature", signature)
                    .header("x-terra-trace-id", helpers::unique("resent"))
                    .body(body)
                    .send()
                    .await;
            }
        });
    }
    axum::Json(serde_json::json!({"status": "success", "message": "the requested data is being sent to your destination"})).into_response()
}

fn serde_urlencoded_like(query: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join("&")
}
