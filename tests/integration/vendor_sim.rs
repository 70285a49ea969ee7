//! A local HTTP simulator of the Oura API v2 and the WHOOP API v2, with their OAuth token endpoints.
//!
//! The real vendor APIs are unreachable from the tests, and the processor under test is a separate
//! OS process, so the simulator is a real HTTP server on `127.0.0.1:<port>`. It runs on its own
//! thread with its own tokio runtime: it works from plain `#[test]`s and from inside a
//! `#[tokio::test]` alike, and a stalled test runtime never stalls it.
//!
//! Layout: `/oura/...` and `/whoop/...` carry the vendors' real paths (see `vendors.md` §2 and §3),
//! so production code only swaps its base URLs. Records are the fixture JSON with ids, users and
//! values replaced; the test stores them with [`VendorSim::put_record`].
//!
//! Oura's webhook subscriptions (`/oura/v2/webhook/subscription...`, app credentials in the
//! `x-client-id` / `x-client-secret` headers) are kept too; a create first performs Oura's
//! verification handshake against the callback URL, for real.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Form, Json, Router};
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

/// Oura serves lists in pages of this size; small so that tests exercise `next_token`.
const OURA_PAGE_SIZE: usize = 2;
/// Lifetime of tokens issued by the token endpoint, as the vendors document (about 24 h).
const TOKEN_LIFETIME_SECS: i64 = 86_400;
/// Lifetime of an Oura webhook subscription from its creation or renewal.
const SUBSCRIPTION_LIFETIME_DAYS: i64 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimVendor {
    Oura,
    Whoop,
}

impl SimVendor {
    /// The Oura or the WHOOP flavour of something.
    fn pick<T>(self, oura: T, whoop: T) -> T {
        match self {
            SimVendor::Oura => oura,
            SimVendor::Whoop => whoop,
        }
    }

    fn client_id(self) -> &'static str {
        self.pick("oura-client", "whoop-client")
    }

    fn client_secret(self) -> &'static str {
        self.pick("oura-secret", "whoop-secret")
    }

    /// What the token endpoint says it granted (the vendors' documented scopes).
    fn scope(self) -> &'static str {
        self.pick(
            "daily heartrate personal workout session spo2Daily email",
            "offline read:recovery read:cycles read:sleep read:workout read:profile read:body_measurement",
        )
    }
}

/// A scripted answer for one request (see [`VendorSim::inject`]).
#[derive(Clone, Debug)]
pub enum Fault {
    /// That status with a JSON body `{"message":"..."}` (5xx etc.).
    Status(u16),
    /// 429 with a `Retry-After` header, as both vendors rate-limit.
    TooManyRequests { retry_after_secs: u64 },
    /// Wait this long, then answer normally (for client timeouts).
    Slow(Duration),
    /// 401 `{"message":"Unauthorized"}` even though the token is valid.
    Unauthorized,
}

/// An issued access token: who it belongs to and when it stops working.
struct AccessGrant {
    user: String,
    expires_at: DateTime<Utc>,
}

/// An issued refresh token. Kept after use (with `live = false`) so a reuse is attributed to its
/// user in [`VendorSim::failed_refreshes`].
struct RefreshGrant {
    user: String,
    live: bool,
}

/// A stored document and its owner; `body` is served verbatim.
struct Record {
    user: String,
    body: Value,
}

/// Everything the simulator knows about one vendor; guarded by one mutex, held only briefly.
#[derive(Default)]
struct VendorState {
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
    /// Authorization codes not yet exchanged → vendor user id.
    codes: HashMap<String, String>,
    /// (collection, id) → record.
    records: HashMap<(String, String), Record>,
    /// Injected faults, consumed in order by the first entry whose prefix matches.
    faults: Vec<(String, VecDeque<Fault>)>,
    /// Paths (after the vendor prefix) of every request received, in order.
    hits: Vec<String>,
    refreshes: HashMap<String, usize>,
    failed_refreshes: HashMap<String, usize>,
    token_delay: Duration,
    /// Oura webhook subscriptions, oldest first, as the API returns them.
    subscriptions: Vec<Value>,
    subscription_creates: usize,
    subscription_renews: usize,
    /// Confirmed revocations per user.
    revocations: HashMap<String, usize>,
}

impl VendorState {
    /// Issues a fresh access/refresh pair for `user`.
    fn issue(&mut self, vendor: SimVendor, user: &str, lifetime: TimeDelta) -> (String, String) {
        let slug = vendor.pick("oura", "whoop");
        let access = format!("{slug}-access-{}", uuid::Uuid::new_v4().simple());
        let refresh = format!("{slug}-refresh-{}", uuid::Uuid::new_v4().simple());
        self.access.insert(access.clone(), AccessGrant { user: user.to_owned(), expires_at: Utc::now() + lifetime });
        self.refresh.insert(refresh.clone(), RefreshGrant { user: user.to_owned(), live: true });
        (access, refresh)
    }

    /// The user behind a valid bearer token, if any.
    fn bearer_user(&self, headers: &HeaderMap) -> Option<String> {
        let token = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
        let grant = self.access.get(token.trim())?;
        (Utc::now() < grant.expires_at).then(|| grant.user.clone())
    }

    /// Takes the next injected fault for `path`, if one is queued.
    fn next_fault(&mut self, path: &str) -> Option<Fault> {
        self.faults.iter_mut().find(|(prefix, queue)| path.starts_with(prefix.as_str()) && !queue.is_empty())?.1.pop_front()
    }

    /// The user's records of `collection` that pass `keep`.
    fn select(&self, user: &str, collection: &str, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mine = self.records.iter().filter(|((c, _), r)| c == collection && r.user == user);
        mine.map(|(_, r)| &r.body).filter(|body| keep(body)).cloned().collect()
    }
}

/// State shared between the test thread and the server thread.
#[derive(Default)]
struct Shared {
    oura: Mutex<VendorState>,
    whoop: Mutex<VendorState>,
}

impl Shared {
    fn vendor(&self, vendor: SimVendor) -> MutexGuard<'_, VendorState> {
        let lock = vendor.pick(&self.oura, &self.whoop);
        // A panicking test thread must not take the server down with a poisoned lock.
        lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The axum state of one vendor's routes.
#[derive(Clone)]
struct Ctx {
    shared: Arc<Shared>,
    vendor: SimVendor,
}

impl Ctx {
    fn state(&self) -> MutexGuard<'_, VendorState> {
        self.shared.vendor(self.vendor)
    }
}

/// The running simulator. Dropping it stops the server (in-flight requests are cut off).
pub struct VendorSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl VendorSim {
    /// Binds `127.0.0.1:0` before returning, so the port accepts connections at once.
    pub fn start() -> VendorSim {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the vendor simulator");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("simulator address");
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .nest("/oura", oura_routes(Ctx { shared: shared.clone(), vendor: SimVendor::Oura }))
            .nest("/whoop", whoop_routes(Ctx { shared: shared.clone(), vendor: SimVendor::Whoop }));
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vendor-sim".into())
            .spawn(move || serve(listener, app, stop))
            .expect("spawn the simulator thread");
        VendorSim { addr, shared, shutdown: Some(shutdown), thread: Some(thread) }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn oura_base(&self) -> String {
        format!("{}/oura", self.base_url())
    }
    pub fn whoop_base(&self) -> String {
        format!("{}/whoop", self.base_url())
    }
    pub fn oura_token_url(&self) -> String {
        format!("{}/oauth/token", self.oura_base())
    }
    pub fn whoop_token_url(&self) -> String {
        format!("{}/oauth/oauth2/token", self.whoop_base())
    }

    pub fn client_id(&self, v: SimVendor) -> &'static str {
        v.client_id()
    }
    pub fn client_secret(&self, v: SimVendor) -> &'static str {
        v.client_secret()
    }

    /// Registers a user; returns (access_token, refresh_token). `expires_in_secs` may be 0 or
    /// negative: the access token is then already expired (401 on use) but the refresh token works.
    pub fn add_user(&self, v: SimVendor, vendor_user_id: &str, expires_in_secs: i64) -> (String, String) {
        self.shared.vendor(v).issue(v, vendor_user_id, TimeDelta::seconds(expires_in_secs))
    }

    /// An authorization code the OAuth callback flow can exchange once.
    pub fn add_auth_code(&self, v: SimVendor, code: &str, vendor_user_id: &str) {
        self.shared.vendor(v).codes.insert(code.to_owned(), vendor_user_id.to_owned());
    }

    /// The user's current access tokens answer 401 from now on; refresh tokens keep working.
    pub fn expire_access_tokens(&self, v: SimVendor, vendor_user_id: &str) {
        let past = Utc::now() - TimeDelta::seconds(1);
        let mut state = self.shared.vendor(v);
        state.access.values_mut().filter(|g| g.user == vendor_user_id).for_each(|g| g.expires_at = past);
    }

    /// The user withdrew consent: access tokens → 401, refresh tokens → invalid_grant, codes void.
    /// A later `add_user` / `add_auth_code` authorises the user again.
    pub fn revoke_user(&self, v: SimVendor, vendor_user_id: &str) {
        let mut state = self.shared.vendor(v);
        state.access.retain(|_, g| g.user != vendor_user_id);
        state.refresh.values_mut().filter(|g| g.user == vendor_user_id).for_each(|g| g.live = false);
        state.codes.retain(|_, user| user != vendor_user_id);
    }

    /// Stores (or replaces) a document served as `body` verbatim. `collection` is the URL
    /// collection (oura: "sleep", "daily_readiness", ...; whoop: "sleep", "workout", "recovery",
    /// "cycle"). A whoop "recovery" is served at `/v2/cycle/{cycle_id}/recovery` (from the body).
    pub fn put_record(&self, v: SimVendor, vendor_user_id: &str, collection: &str, id: &str, body: Value) {
        let record = Record { user: vendor_user_id.to_owned(), body };
        self.shared.vendor(v).records.insert((collection.to_owned(), id.to_owned()), record);
    }

    /// Delays every token-endpoint answer, so two concurrent refreshes overlap.
    pub fn set_token_delay(&self, v: SimVendor, delay: Duration) {
        self.shared.vendor(v).token_delay = delay;
    }

    /// The next `faults.len()` requests whose path (after `/oura` or `/whoop`) starts with
    /// `path_prefix` get these answers in order; then normal service resumes.
    pub fn inject(&self, v: SimVendor, path_prefix: &str, faults: Vec<Fault>) {
        self.shared.vendor(v).faults.push((path_prefix.to_owned(), faults.into()));
    }

    /// How many requests hit that prefix (data and token endpoints), faults included.
    pub fn requests(&self, v: SimVendor, path_prefix: &str) -> usize {
        self.shared.vendor(v).hits.iter().filter(|path| path.starts_with(path_prefix)).count()
    }

    /// Successful refresh_token grants for that user.
    pub fn refreshes(&self, v: SimVendor, vendor_user_id: &str) -> usize {
        self.shared.vendor(v).refreshes.get(vendor_user_id).copied().unwrap_or(0)
    }

    /// invalid_grant answers to refresh_token grants for that user (reused or revoked tokens).
    pub fn failed_refreshes(&self, v: SimVendor, vendor_user_id: &str) -> usize {
        self.shared.vendor(v).failed_refreshes.get(vendor_user_id).copied().unwrap_or(0)
    }

    /// The Oura webhook subscriptions, as `GET /v2/webhook/subscription` lists them.
    pub fn oura_subscriptions(&self) -> Vec<Value> {
        self.shared.vendor(SimVendor::Oura).subscriptions.clone()
    }

    /// Sets a subscription's `expiration_time` (e.g. to tomorrow, so that it needs renewing).
    pub fn set_subscription_expiry(&self, id: &str, expires_at: DateTime<Utc>) {
        let mut state = self.shared.vendor(SimVendor::Oura);
        let subscription = state.subscriptions.iter_mut().find(|s| s["id"] == id).expect("a subscription with that id");
        subscription["expiration_time"] = json!(rfc3339(expires_at));
    }

    /// Revocations the vendor confirmed for that user.
    pub fn revocations(&self, v: SimVendor, vendor_user_id: &str) -> usize {
        self.shared.vendor(v).revocations.get(vendor_user_id).copied().unwrap_or(0)
    }

    /// Subscriptions created (after a successful handshake).
    pub fn subscription_creates(&self) -> usize {
        self.shared.vendor(SimVendor::Oura).subscription_creates
    }

    /// Subscriptions renewed.
    pub fn subscription_renews(&self) -> usize {
        self.shared.vendor(SimVendor::Oura).subscription_renews
    }
}

impl Drop for VendorSim {
    fn drop(&mut self) {
        let _ = self.shutdown.take().map(|shutdown| shutdown.send(()));
        let _ = self.thread.take().map(JoinHandle::join);
    }
}

/// The server thread: serves until told to stop. Dropping the runtime then cancels every
/// connection task, so a `Fault::Slow` in flight cannot delay the test's teardown.
fn serve(listener: std::net::TcpListener, app: Router, stop: tokio::sync::oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("simulator runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        tokio::select! {
            result = axum::serve(listener, app) => result.expect("simulator server"),
            _ = stop => {}
        }
    });
}

fn oura_routes(ctx: Ctx) -> Router {
    let routes = Router::new()
        .route("/v2/usercollection/personal_info", get(oura_personal_info))
        .route("/v2/usercollection/heartrate", get(oura_heartrate))
        .route("/v2/usercollection/{collection}", get(oura_list))
        .route("/v2/usercollection/{collection}/{id}", get(get_record))
        .route("/v2/webhook/subscription", get(oura_subscription_list).post(oura_subscription_create))
        .route("/v2/webhook/subscription/renew/{id}", put(oura_subscription_renew))
        .route("/v2/webhook/subscription/{id}", delete(oura_subscription_delete))
        .route("/oauth/revoke", post(oura_revoke).get(oura_revoke));
    vendor_router(routes, "/oauth/token", ctx)
}

/// Only WHOOP's real paths: there is no `/v2/activity/recovery/{id}`, and a client that calls one
/// must get 404 here too.
fn whoop_routes(ctx: Ctx) -> Router {
    let routes = Router::new()
        .route("/v2/activity/sleep", whoop_list_of("sleep"))
        .route("/v2/activity/sleep/{id}", whoop_record_of("sleep"))
        .route("/v2/activity/workout", whoop_list_of("workout"))
        .route("/v2/activity/workout/{id}", whoop_record_of("workout"))
        .route("/v2/recovery", whoop_list_of("recovery"))
        .route("/v2/cycle", whoop_list_of("cycle"))
        .route("/v2/cycle/{id}", whoop_record_of("cycle"))
        .route("/v2/cycle/{id}/recovery", get(whoop_cycle_recovery))
        .route("/v2/user/profile/basic", get(whoop_profile))
        .route("/v2/user/access", delete(whoop_revoke));
    vendor_router(routes, "/oauth/oauth2/token", ctx)
}

/// What both vendors share: the token endpoint, a JSON 404 for unknown paths, and the layer
/// that counts requests and injects faults (added last, so it covers the fallback too).
fn vendor_router(routes: Router<Ctx>, token_path: &str, ctx: Ctx) -> Router {
    let counting = middleware::from_fn_with_state(ctx.clone(), count_and_inject);
    routes.route(token_path, post(token)).fallback(async || not_found()).layer(counting).with_state(ctx)
}

fn whoop_record_of(collection: &'static str) -> MethodRouter<Ctx> {
    get(move |ctx, headers, Path(id): Path<String>| get_record(ctx, headers, Path((collection.to_owned(), id))))
}

fn whoop_list_of(collection: &'static str) -> MethodRouter<Ctx> {
    get(move |ctx, headers, query| whoop_list(ctx, headers, collection, query))
}

/// Counts every request and answers with the next fault queued for its path. Inside the nested
/// router the path has the vendor prefix stripped already.
async fn count_and_inject(State(ctx): State<Ctx>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let fault = {
        let mut state = ctx.state();
        state.hits.push(path.clone());
        state.next_fault(&path)
    };
    match fault {
        None => next.run(request).await,
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(Fault::Unauthorized) => unauthorized(),
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut response = message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            response.headers_mut().insert(header::RETRY_AFTER, retry_after_secs.into());
            response
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            message(status, status.canonical_reason().unwrap_or("Simulated fault"))
        }
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}

fn unauthorized() -> Response {
    message(StatusCode::UNAUTHORIZED, "Unauthorized")
}

fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not Found")
}

/// `GET .../{collection}/{id}` on either vendor: the caller's own document, else 404.
async fn get_record(State(ctx): State<Ctx>, headers: HeaderMap, Path((collection, id)): Path<(String, String)>) -> Response {
    let state = ctx.state();
    let Some(user) = state.bearer_user(&headers) else { return unauthorized() };
    match state.records.get(&(collection, id)) {
        Some(record) if record.user == user => Json(record.body.clone()).into_response(),
        _ => not_found(),
    }
}

/// WHOOP has no recovery-by-id: the recovery of a cycle is found through the body's `cycle_id`.
async fn whoop_cycle_recovery(State(ctx): State<Ctx>, headers: HeaderMap, Path(cycle_id): Path<i64>) -> Response {
    let state = ctx.state();
    let Some(user) = state.bearer_user(&headers) else { return unauthorized() };
    let found = state.select(&user, "recovery", |body| body["cycle_id"].as_i64() == Some(cycle_id));
    found.into_iter().next().map_or_else(not_found, |body| Json(body).into_response())
}

#[derive(Deserialize)]
struct OuraSeriesWindow {
    start_datetime: Option<DateTime<chrono::FixedOffset>>,
    end_datetime: Option<DateTime<chrono::FixedOffset>>,
}

/// Oura's heartrate series: the samples (stored under collection "heartrate", one record per
/// sample) whose `timestamp` lies in [start_datetime, end_datetime), oldest first, one page.
async fn oura_heartrate(State(ctx): State<Ctx>, headers: HeaderMap, Query(q): Query<OuraSeriesWindow>) -> Response {
    let state = ctx.state();
    let Some(user) = state.bearer_user(&headers) else { return unauthorized() };
    let time_of = |body: &Value| body["timestamp"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let in_window =
        |body: &Value| time_of(body).is_some_and(|t| q.start_datetime.is_none_or(|s| s <= t) && q.end_datetime.is_none_or(|e| t < e));
    let mut samples = state.select(&user, "heartrate", in_window);
    samples.sort_by_key(time_of);
    Json(json!({ "data": samples, "next_token": null })).into_response()
}

/// Oura's revocation: `?access_token=` (GET or POST). The token stops working; its user's
/// refresh tokens too. Counted per user.
async fn oura_revoke(State(ctx): State<Ctx>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut state = ctx.state();
    let Some(token) = q.get("access_token") else { return message(StatusCode::BAD_REQUEST, "access_token is required") };
    let Some(grant) = state.access.remove(token.as_str()) else { return unauthorized() };
    state.refresh.values_mut().filter(|g| g.user == grant.user).for_each(|g| g.live = false);
    *state.revocations.entry(grant.user).or_insert(0) += 1;
    StatusCode::OK.into_response()
}

/// WHOOP's revocation: `DELETE /v2/user/access` with the user's bearer token; 204.
async fn whoop_revoke(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    let mut state = ctx.state();
    let Some(user) = state.bearer_user(&headers) else { return unauthorized() };
    state.access.retain(|_, g| g.user != user);
    state.refresh.values_mut().filter(|g| g.user == user).for_each(|g| g.live = false);
    *state.revocations.entry(user).or_insert(0) += 1;
    StatusCode::NO_CONTENT.into_response()
}

async fn oura_personal_info(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    let Some(user) = ctx.state().bearer_user(&headers) else { return unauthorized() };
    let email = format!("{user}@example.com");
    Json(json!({ "id": user, "age": 35, "weight": 70.0, "height": 1.8, "biological_sex": "female", "email": email })).into_response()
}

/// WHOOP user ids are integers; a non-numeric test id is reported as 0.
async fn whoop_profile(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    let Some(user) = ctx.state().bearer_user(&headers) else { return unauthorized() };
    let user_id = user.parse::<i64>().unwrap_or(0);
    let email = format!("{user}@example.com");
    Json(json!({ "user_id": user_id, "email": email, "first_name": "Test", "last_name": "User" })).into_response()
}

#[derive(Deserialize)]
struct OuraWindow {
    start_date: Option<NaiveDate>,
    end_date: Option<NaiveDate>,
    next_token: Option<String>,
}

/// Oura list: documents whose `day` lies in [start_date, end_date) (a missing bound is open),
/// oldest first, `OURA_PAGE_SIZE` per page. The end is exclusive, as open-source receivers report
/// of the real API (a date-only `end_date` is read as that day's midnight); the OpenAPI does not
/// say, so the client must work either way.
async fn oura_list(State(ctx): State<Ctx>, headers: HeaderMap, Path(collection): Path<String>, Query(q): Query<OuraWindow>) -> Response {
    let state = ctx.state();
    let Some(user) = state.bearer_user(&headers) else { return unauthorized() };
    let in_window = |doc: &Value| {
        let day = doc["day"].as_str().and_then(|d| d.parse::<NaiveDate>().ok());
        day.is_some_and(|d| q.start_date.is_none_or(|s| s <= d) && q.end_date.is_none_or(|e| d < e))
    };
    let mut docs = state.select(&user, &collection, in_window);
    docs.sort_by_key(|doc| (doc["day"].as_str().map(str::to_owned), doc["id"].to_string()));
    match paginate(docs, q.next_token.as_deref(), OURA_PAGE_SIZE) {
        Some((data, next_token)) => Json(json!({ "data": data, "next_token": next_token })).into_response(),
        None => message(StatusCode::BAD_REQUEST, "Invalid next_token"),
    }
}

#[derive(Deserialize)]
struct WhoopWindow {
    start: Option<DateTime<chrono::FixedOffset>>,
    end: Option<DateTime<chrono::FixedOffset>>,
    limit: Option<usize>,
    #[serde(rename = "nextToken")]
    next_token: Option<String>,
}

/// WHOOP list: records whose `start` (`created_at` for recovery) lies in [start, end), newest
/// first as WHOOP returns them, `limit` per page (default 10, 1..=25 else 400).
async fn whoop_list(State(ctx): State<Ctx>, headers: HeaderMap, collection: &str, Query(q): Query<WhoopWindow>) -> Response {
    let state = ctx.state();
    let Some(user) = state.bearer_user(&headers) else { return unauthorized() };
    let limit = q.limit.unwrap_or(10);
    if !(1..=25).contains(&limit) {
        return message(StatusCode::BAD_REQUEST, "limit must be between 1 and 25");
    }
    let field = if collection == "recovery" { "created_at" } else { "start" };
    let time_of = |body: &Value| body[field].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let in_window = |body: &Value| time_of(body).is_some_and(|t| q.start.is_none_or(|s| s <= t) && q.end.is_none_or(|e| t < e));
    let mut records = state.select(&user, collection, in_window);
    records.sort_by_key(|body| std::cmp::Reverse((time_of(body), body["id"].to_string())));
    match paginate(records, q.next_token.as_deref(), limit) {
        Some((records, next_token)) => Json(json!({ "records": records, "next_token": next_token })).into_response(),
        None => message(StatusCode::BAD_REQUEST, "Invalid nextToken"),
    }
}

/// One page of `items` from the opaque token's offset; `None` for a token this sim never issued.
fn paginate(items: Vec<Value>, token: Option<&str>, size: usize) -> Option<(Vec<Value>, Option<String>)> {
    let offset = match token {
        None | Some("") => 0,
        Some(token) => token.strip_prefix("page-")?.parse::<usize>().ok()?,
    };
    let end = (offset + size).min(items.len());
    let next = (end < items.len()).then(|| format!("page-{end}"));
    Some((items.get(offset..end).unwrap_or_default().to_vec(), next))
}

/// The OAuth token endpoint of either vendor (form body, client credentials in the body).
async fn token(State(ctx): State<Ctx>, Form(form): Form<HashMap<String, String>>) -> Response {
    let delay = ctx.state().token_delay;
    tokio::time::sleep(delay).await;
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("client_id") != Some(ctx.vendor.client_id()) || field("client_secret") != Some(ctx.vendor.client_secret()) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let mut state = ctx.state();
    let user = match field("grant_type") {
        Some("authorization_code") if field("redirect_uri").is_none() => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
        Some("authorization_code") => field("code").and_then(|code| state.codes.remove(code)),
        Some("refresh_token") => field("refresh_token").and_then(|refresh| redeem_refresh(&mut state, refresh)),
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    let Some(user) = user else { return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant") };
    let (access, refresh) = state.issue(ctx.vendor, &user, TimeDelta::seconds(TOKEN_LIFETIME_SECS));
    let (expires_in, scope) = (TOKEN_LIFETIME_SECS, ctx.vendor.scope());
    let body =
        json!({ "access_token": access, "refresh_token": refresh, "expires_in": expires_in, "token_type": "bearer", "scope": scope });
    Json(body).into_response()
}

/// Refresh tokens are single-use: the first redemption wins, any later one is counted as failed.
fn redeem_refresh(state: &mut VendorState, refresh: &str) -> Option<String> {
    let grant = state.refresh.get_mut(refresh)?;
    let user = grant.user.clone();
    let counter = if grant.live { &mut state.refreshes } else { &mut state.failed_refreshes };
    let live = std::mem::replace(&mut grant.live, false);
    *counter.entry(user.clone()).or_default() += 1;
    live.then_some(user)
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

// ---- Oura webhook subscriptions (vendor notes §2.1, §2.3). ----

/// Oura's error shape (FastAPI): `{"detail": "..."}`.
fn detail(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "detail": text }))).into_response()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn subscription_expiry() -> String {
    rfc3339(Utc::now() + TimeDelta::days(SUBSCRIPTION_LIFETIME_DAYS))
}

/// The subscription API takes the app's credentials as headers, not a user token.
fn app_refused(headers: &HeaderMap) -> Option<Response> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let vendor = SimVendor::Oura;
    let valid = header("x-client-id") == Some(vendor.client_id()) && header("x-client-secret") == Some(vendor.client_secret());
    (!valid).then(|| detail(StatusCode::UNAUTHORIZED, "Invalid client credentials"))
}

async fn oura_subscription_list(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(refused) = app_refused(&headers) {
        return refused;
    }
    Json(ctx.state().subscriptions.clone()).into_response()
}

/// Creates a subscription, but only once the callback URL has passed the handshake.
async fn oura_subscription_create(State(ctx): State<Ctx>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(refused) = app_refused(&headers) {
        return refused;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let field = |name: &str| body.get(name).and_then(Value::as_str).filter(|value| !value.is_empty()).map(str::to_owned);
    let (Some(callback_url), Some(token), Some(event_type), Some(data_type)) =
        (field("callback_url"), field("verification_token"), field("event_type"), field("data_type"))
    else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "callback_url, verification_token, event_type and data_type are required");
    };
    if !["create", "update", "delete"].contains(&event_type.as_str()) {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "event_type must be create, update or delete");
    }
    if let Err(reason) = verification_handshake(&callback_url, &token).await {
        return detail(StatusCode::BAD_REQUEST, &format!("Verification of the callback URL failed: {reason}"));
    }
    let subscription = json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "callback_url": callback_url,
        "event_type": event_type,
        "data_type": data_type,
        "expiration_time": subscription_expiry(),
    });
    let mut state = ctx.state();
    state.subscriptions.push(subscription.clone());
    state.subscription_creates += 1;
    (StatusCode::CREATED, Json(subscription)).into_response()
}

/// Oura's handshake: `GET <callback>?verification_token=..&challenge=..` must answer 200 with
/// `{"challenge": <the same>}`.
async fn verification_handshake(callback_url: &str, token: &str) -> Result<(), String> {
    biometric_bridge::connections::http::install_tls_provider();
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    let challenge = uuid::Uuid::new_v4().simple().to_string();
    let query = [("verification_token", token), ("challenge", challenge.as_str())];
    let response = client.get(callback_url).query(&query).send().await.map_err(|_| "the callback URL did not answer".to_owned())?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or_default();
    match (status, answer.get("challenge").and_then(Value::as_str)) {
        (StatusCode::OK, Some(echoed)) if echoed == challenge => Ok(()),
        (StatusCode::OK, _) => Err("the answer did not echo the challenge".to_owned()),
        (status, _) => Err(format!("the callback URL answered HTTP {}", status.as_u16())),
    }
}

async fn oura_subscription_renew(State(ctx): State<Ctx>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(refused) = app_refused(&headers) {
        return refused;
    }
    let mut state = ctx.state();
    let Some(subscription) = state.subscriptions.iter_mut().find(|s| s["id"] == id.as_str()) else {
        return detail(StatusCode::NOT_FOUND, "Subscription not found");
    };
    subscription["expiration_time"] = json!(subscription_expiry());
    let renewed = subscription.clone();
    state.subscription_renews += 1;
    Json(renewed).into_response()
}

async fn oura_subscription_delete(State(ctx): State<Ctx>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(refused) = app_refused(&headers) {
        return refused;
    }
    let mut state = ctx.state();
    let before = state.subscriptions.len();
    state.subscriptions.retain(|s| s["id"] != id.as_str());
    if state.subscriptions.len() == before {
        detail(StatusCode::NOT_FOUND, "Subscription not found")
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

// ---- Record builders: the fixtures with ids, users, times and HRV replaced. ----

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

/// Oura sends `average_hrv` as an integer; keep whole numbers integral so strict parsers agree.
fn oura_number(value: f64) -> Value {
    if value.fract() == 0.0 { json!(value as i64) } else { json!(value) }
}

/// Replaces the `YYYY-MM-DD` that starts the string at `pointer`, keeping the time and offset.
fn set_date(doc: &mut Value, pointer: &str, date: NaiveDate) {
    let slot = doc.pointer_mut(pointer).expect("fixture field");
    let rest = slot.as_str().expect("fixture date string")[10..].to_owned();
    *slot = json!(format!("{date}{rest}"));
}

/// Moves the WHOOP timestamps `fields` by as much as puts `anchor` (the first of them) at
/// `new_time`, so durations and gaps stay the fixture's; written the way WHOOP writes them.
fn shift_times(record: &mut Value, fields: &[&str], new_time: &str) {
    let parse = |text: Option<&str>| DateTime::parse_from_rfc3339(text.expect("a time")).expect("RFC 3339 time").with_timezone(&Utc);
    let delta = parse(Some(new_time)) - parse(record[fields[0]].as_str());
    for field in fields {
        let moved = parse(record[field].as_str()) + delta;
        record[*field] = json!(moved.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    }
}

/// Overwrites top-level fields of `doc` with those of `fields`.
fn overwrite(doc: &mut Value, fields: Value) {
    for (name, value) in fields.as_object().expect("an object of fields") {
        doc[name] = value.clone();
    }
}

impl VendorSim {
    /// `tests/fixtures/oura/api_sleep.json` for `day`: bedtime_end (and `day`) on `day`,
    /// bedtime_start and the sample timestamps the evening before.
    pub fn oura_sleep(id: &str, day: &str, average_hrv: f64) -> Value {
        let day: NaiveDate = day.parse().expect("day is YYYY-MM-DD");
        let evening = day.pred_opt().expect("a day before");
        let mut doc = fixture(include_str!("../fixtures/oura/api_sleep.json"));
        doc["id"] = json!(id);
        doc["average_hrv"] = oura_number(average_hrv);
        set_date(&mut doc, "/day", day);
        set_date(&mut doc, "/bedtime_end", day);
        for pointer in ["/bedtime_start", "/heart_rate/timestamp", "/hrv/timestamp"] {
            set_date(&mut doc, pointer, evening);
        }
        doc
    }

    /// `tests/fixtures/oura/api_daily_readiness.json` for `day`.
    pub fn oura_daily_readiness(id: &str, day: &str) -> Value {
        let day: NaiveDate = day.parse().expect("day is YYYY-MM-DD");
        let mut doc = fixture(include_str!("../fixtures/oura/api_daily_readiness.json"));
        doc["id"] = json!(id);
        set_date(&mut doc, "/day", day);
        set_date(&mut doc, "/timestamp", day);
        doc
    }

    /// `tests/fixtures/whoop/api_sleep.json` starting at `start_rfc3339`; end, created_at and
    /// updated_at move with it.
    pub fn whoop_sleep(id: &str, cycle_id: i64, user_id: i64, start_rfc3339: &str) -> Value {
        let mut record = fixture(include_str!("../fixtures/whoop/api_sleep.json"));
        shift_times(&mut record, &["start", "end", "created_at", "updated_at"], start_rfc3339);
        overwrite(&mut record, json!({ "id": id, "cycle_id": cycle_id, "user_id": user_id }));
        record
    }

    /// `tests/fixtures/whoop/api_recovery.json` (SCORED) created at `created_at_rfc3339`;
    /// updated_at keeps the fixture's gap after it.
    pub fn whoop_recovery(sleep_id: &str, cycle_id: i64, user_id: i64, hrv_rmssd_milli: f64, created_at_rfc3339: &str) -> Value {
        let mut record = fixture(include_str!("../fixtures/whoop/api_recovery.json"));
        shift_times(&mut record, &["created_at", "updated_at"], created_at_rfc3339);
        overwrite(&mut record, json!({ "sleep_id": sleep_id, "cycle_id": cycle_id, "user_id": user_id }));
        record["score"]["hrv_rmssd_milli"] = json!(hrv_rmssd_milli);
        record
    }

    /// `tests/fixtures/whoop/api_workout.json` starting at `start_rfc3339`.
    pub fn whoop_workout(id: &str, user_id: i64, start_rfc3339: &str) -> Value {
        let mut record = fixture(include_str!("../fixtures/whoop/api_workout.json"));
        shift_times(&mut record, &["start", "end", "created_at", "updated_at"], start_rfc3339);
        overwrite(&mut record, json!({ "id": id, "user_id": user_id }));
        record
    }
}
