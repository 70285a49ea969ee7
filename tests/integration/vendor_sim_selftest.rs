//! Self-test of the vendor API simulator over real HTTP (no stack needed): the behaviour the
//! processor's tests rely on — tokens, single-use refresh, faults, pagination, ownership.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::vendor_sim::{Fault, SimVendor, VendorSim};

const OURA_USER: &str = "oura-user-1";
const WHOOP_USER: &str = "10129457";

/// One HTTP answer, reduced to what the tests look at.
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

/// A blocking façade over reqwest's async client, on a runtime owned by the test.
struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        Http { runtime: tokio::runtime::Runtime::new().expect("runtime"), client: client() }
    }

    fn get(&self, url: &str, token: &str) -> Reply {
        self.get_query(url, token, &[])
    }

    fn get_query(&self, url: &str, token: &str, query: &[(&str, &str)]) -> Reply {
        self.runtime.block_on(reply(self.client.get(url).bearer_auth(token).query(query)))
    }

    fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Reply {
        self.runtime.block_on(reply(self.client.post(url).form(form)))
    }
}

/// reqwest is built without a bundled TLS provider (the binary installs `ring`); plain HTTP to
/// the simulator still needs one installed before a client is built.
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client")
}

async fn reply(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("simulator answers");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.expect("JSON body");
    Reply { status, retry_after, body }
}

fn refresh_form<'a>(sim: &VendorSim, vendor: SimVendor, refresh_token: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", sim.client_id(vendor)),
        ("client_secret", sim.client_secret(vendor)),
    ]
}

fn oura_sleep_url(sim: &VendorSim, id: &str) -> String {
    format!("{}/v2/usercollection/sleep/{id}", sim.oura_base())
}

#[test]
fn serves_records_to_their_owner() {
    let (sim, http) = (VendorSim::start(), Http::new());
    let (oura_token, _) = sim.add_user(SimVendor::Oura, OURA_USER, 3600);
    let sleep = VendorSim::oura_sleep("sleep-1", "2026-12-01", 47.0);
    sim.put_record(SimVendor::Oura, OURA_USER, "sleep", "sleep-1", sleep.clone());

    let got = http.get(&oura_sleep_url(&sim, "sleep-1"), &oura_token);
    assert_eq!(got.status, 200);
    assert_eq!(got.body, sleep);
    assert_eq!(got.body["average_hrv"], json!(47), "integral HRV stays an integer, as Oura sends it");
    assert_eq!(got.body["bedtime_start"], "2026-11-30T23:12:30-05:00");
    assert_eq!(got.body["bedtime_end"], "2026-12-01T06:49:00-05:00");

    let (whoop_token, _) = sim.add_user(SimVendor::Whoop, WHOOP_USER, 3600);
    let sleep_id = "0b9e2f1c-7a4d-4c8e-b5f0-2d6a8c1e9f37";
    let recovery = VendorSim::whoop_recovery(sleep_id, 77, 10129457, 58.5, "2026-12-01T11:00:00Z");
    sim.put_record(SimVendor::Whoop, WHOOP_USER, "recovery", sleep_id, recovery);
    let got = http.get(&format!("{}/v2/cycle/77/recovery", sim.whoop_base()), &whoop_token);
    assert_eq!(got.status, 200);
    assert_eq!(got.body["score"]["hrv_rmssd_milli"], json!(58.5));
    assert_eq!(got.body["sleep_id"], sleep_id);
    assert_eq!(got.body["updated_at"], "2026-12-01T11:05:26.344Z", "updated_at keeps the fixture's gap");
    assert_eq!(sim.requests(SimVendor::Whoop, "/v2/cycle"), 1);
    let no_such_path = http.get(&format!("{}/v2/activity/recovery/{sleep_id}", sim.whoop_base()), &whoop_token);
    assert_eq!(no_such_path.status, 404, "WHOOP has no recovery-by-id");
    assert_eq!(sim.requests(SimVendor::Whoop, "/v2/activity/recovery"), 1);
}

#[test]
fn other_users_and_unknown_records_are_404() {
    let (sim, http) = (VendorSim::start(), Http::new());
    let (token, _) = sim.add_user(SimVendor::Oura, OURA_USER, 3600);
    sim.add_user(SimVendor::Oura, "someone-else", 3600);
    sim.put_record(SimVendor::Oura, "someone-else", "sleep", "theirs", VendorSim::oura_sleep("theirs", "2026-12-01", 50.0));

    assert_eq!(http.get(&oura_sleep_url(&sim, "theirs"), &token).status, 404);
    assert_eq!(http.get(&oura_sleep_url(&sim, "missing"), &token).status, 404);
}

#[test]
fn expired_and_unknown_tokens_are_401() {
    let (sim, http) = (VendorSim::start(), Http::new());
    sim.put_record(SimVendor::Oura, OURA_USER, "sleep", "s", VendorSim::oura_sleep("s", "2026-12-01", 50.0));
    let (expired, _) = sim.add_user(SimVendor::Oura, OURA_USER, 0);
    let got = http.get(&oura_sleep_url(&sim, "s"), &expired);
    assert_eq!((got.status, got.body), (401, json!({ "message": "Unauthorized" })));
    assert_eq!(http.get(&oura_sleep_url(&sim, "s"), "made-up").status, 401);

    let (fresh, _) = sim.add_user(SimVendor::Oura, OURA_USER, 3600);
    assert_eq!(http.get(&oura_sleep_url(&sim, "s"), &fresh).status, 200);
    sim.expire_access_tokens(SimVendor::Oura, OURA_USER);
    assert_eq!(http.get(&oura_sleep_url(&sim, "s"), &fresh).status, 401);
}

#[test]
fn refresh_tokens_are_single_use() {
    let (sim, http) = (VendorSim::start(), Http::new());
    let (_, refresh) = sim.add_user(SimVendor::Whoop, WHOOP_USER, 0);
    let url = sim.whoop_token_url();

    let first = http.post_form(&url, &refresh_form(&sim, SimVendor::Whoop, &refresh));
    assert_eq!(first.status, 200);
    assert_eq!(first.body["expires_in"], 86400);
    assert_eq!(first.body["token_type"], "bearer");
    assert_ne!(first.body["refresh_token"], json!(refresh));
    let access = first.body["access_token"].as_str().unwrap();
    let profile = http.get(&format!("{}/v2/user/profile/basic", sim.whoop_base()), access);
    assert_eq!((profile.status, &profile.body["user_id"]), (200, &json!(10129457)));

    let reuse = http.post_form(&url, &refresh_form(&sim, SimVendor::Whoop, &refresh));
    assert_eq!((reuse.status, reuse.body), (400, json!({ "error": "invalid_grant" })));
    assert_eq!((sim.refreshes(SimVendor::Whoop, WHOOP_USER), sim.failed_refreshes(SimVendor::Whoop, WHOOP_USER)), (1, 1));

    let mut wrong_secret = refresh_form(&sim, SimVendor::Whoop, first.body["refresh_token"].as_str().unwrap());
    wrong_secret[3].1 = "nope";
    let got = http.post_form(&url, &wrong_secret);
    assert_eq!((got.status, got.body), (401, json!({ "error": "invalid_client" })));
}

#[test]
fn overlapping_refreshes_with_one_token_only_one_wins() {
    let sim = VendorSim::start();
    let (_, refresh) = sim.add_user(SimVendor::Oura, OURA_USER, 0);
    sim.set_token_delay(SimVendor::Oura, Duration::from_millis(300));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = client();
    let form = refresh_form(&sim, SimVendor::Oura, &refresh);
    let post = || reply(client.post(sim.oura_token_url()).form(&form));
    let (a, b) = runtime.block_on(async { tokio::join!(post(), post()) });

    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 400]);
    assert_eq!((sim.refreshes(SimVendor::Oura, OURA_USER), sim.failed_refreshes(SimVendor::Oura, OURA_USER)), (1, 1));
}

#[test]
fn authorization_code_exchanges_once() {
    let (sim, http) = (VendorSim::start(), Http::new());
    sim.add_auth_code(SimVendor::Oura, "code-1", OURA_USER);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "code-1"),
        ("redirect_uri", "http://127.0.0.1/callback/oura"),
        ("client_id", "oura-client"),
        ("client_secret", "oura-secret"),
    ];
    let got = http.post_form(&sim.oura_token_url(), &form);
    assert_eq!(got.status, 200);
    let info = http.get(&format!("{}/v2/usercollection/personal_info", sim.oura_base()), got.body["access_token"].as_str().unwrap());
    assert_eq!((info.status, &info.body["id"]), (200, &json!(OURA_USER)));

    let again = http.post_form(&sim.oura_token_url(), &form);
    assert_eq!((again.status, again.body), (400, json!({ "error": "invalid_grant" })));
}

#[test]
fn revoked_user_gets_401_and_invalid_grant() {
    let (sim, http) = (VendorSim::start(), Http::new());
    let (access, refresh) = sim.add_user(SimVendor::Whoop, WHOOP_USER, 3600);
    sim.revoke_user(SimVendor::Whoop, WHOOP_USER);

    assert_eq!(http.get(&format!("{}/v2/user/profile/basic", sim.whoop_base()), &access).status, 401);
    let got = http.post_form(&sim.whoop_token_url(), &refresh_form(&sim, SimVendor::Whoop, &refresh));
    assert_eq!((got.status, got.body), (400, json!({ "error": "invalid_grant" })));
    assert_eq!(sim.failed_refreshes(SimVendor::Whoop, WHOOP_USER), 1);
}

#[test]
fn rate_limit_carries_retry_after_then_service_resumes() {
    let (sim, http) = (VendorSim::start(), Http::new());
    let (token, _) = sim.add_user(SimVendor::Oura, OURA_USER, 3600);
    sim.put_record(SimVendor::Oura, OURA_USER, "sleep", "s", VendorSim::oura_sleep("s", "2026-12-01", 50.0));
    sim.inject(SimVendor::Oura, "/v2/usercollection/sleep", vec![Fault::TooManyRequests { retry_after_secs: 7 }]);

    let limited = http.get(&oura_sleep_url(&sim, "s"), &token);
    assert_eq!((limited.status, limited.retry_after.as_deref()), (429, Some("7")));
    assert_eq!(http.get(&oura_sleep_url(&sim, "s"), &token).status, 200);
    assert_eq!(sim.requests(SimVendor::Oura, "/v2/usercollection/sleep"), 2);
}

#[test]
fn server_error_burst_then_success() {
    let (sim, http) = (VendorSim::start(), Http::new());
    let (token, _) = sim.add_user(SimVendor::Whoop, WHOOP_USER, 3600);
    let sleep = VendorSim::whoop_sleep("sleep-9", 12, 10129457, "2026-12-01T04:00:00Z");
    sim.put_record(SimVendor::Whoop, WHOOP_USER, "sleep", "sleep-9", sleep);
    sim.inject(SimVendor::Whoop, "/v2/activity/sleep", vec![Fault::Status(503), Fault::Status(500), Fault::Unauthorized]);

    let url = format!("{}/v2/activity/sleep/sleep-9", sim.whoop_base());
    let statuses: Vec<u16> = (0..4).map(|_| http.get(&url, &token).status).collect();
    assert_eq!(statuses, [503, 500, 401, 200]);
    let got = http.get(&url, &token);
    assert_eq!((&got.body["cycle_id"], &got.body["end"]), (&json!(12), &json!("2026-12-01T11:35:47.421Z")));
}

#[test]
fn slow_fault_delays_then_answers() {
    let (sim, http) = (VendorSim::start(), Http::new());
    let (token, _) = sim.add_user(SimVendor::Oura, OURA_USER, 3600);
    sim.inject(SimVendor::Oura, "/v2/usercollection/personal_info", vec![Fault::Slow(Duration::from_millis(400))]);
    let started = std::time::Instant::now();
    assert_eq!(http.get(&format!("{}/v2/usercollection/personal_info", sim.oura_base()), &token).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[test]
fn oura_list_paginates_within_the_window() {
    let (sim, http) = (VendorSim::start(), Http::new());
    let (token, _) = sim.add_user(SimVendor::Oura, OURA_USER, 3600);
    for day in 14..=22 {
        let (id, day) = (format!("r{day}"), format!("2026-11-{day}"));
        sim.put_record(SimVendor::Oura, OURA_USER, "daily_readiness", &id, VendorSim::oura_daily_readiness(&id, &day));
    }
    sim.put_record(SimVendor::Oura, "other", "daily_readiness", "x", VendorSim::oura_daily_readiness("x", "2026-11-18"));

    let url = format!("{}/v2/usercollection/daily_readiness", sim.oura_base());
    let (mut ids, mut pages, mut next) = (Vec::new(), 0, None::<String>);
    loop {
        // end_date is exclusive in the sim (a date-only end_date is that day's midnight).
        let mut query = vec![("start_date", "2026-11-16"), ("end_date", "2026-11-21")];
        query.extend(next.as_deref().map(|t| ("next_token", t)));
        let got = http.get_query(&url, &token, &query);
        assert_eq!(got.status, 200);
        ids.extend(got.body["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()));
        pages += 1;
        next = got.body["next_token"].as_str().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    assert_eq!(ids, ["r16", "r17", "r18", "r19", "r20"]);
    assert_eq!(pages, 3);
}

#[test]
fn whoop_list_paginates_within_the_window() {
    let (sim, http) = (VendorSim::start(), Http::new());
    let (token, _) = sim.add_user(SimVendor::Whoop, WHOOP_USER, 3600);
    for day in 10..=16 {
        let sleep_id = format!("sleep-{day}");
        let recovery = VendorSim::whoop_recovery(&sleep_id, day, 10129457, 60.0, &format!("2026-11-{day}T11:00:00Z"));
        sim.put_record(SimVendor::Whoop, WHOOP_USER, "recovery", &sleep_id, recovery);
    }

    let url = format!("{}/v2/recovery", sim.whoop_base());
    let (mut cycles, mut next) = (Vec::new(), None::<String>);
    loop {
        let mut query = vec![("start", "2026-11-11T00:00:00Z"), ("end", "2026-11-15T11:00:00Z"), ("limit", "2")];
        query.extend(next.as_deref().map(|t| ("nextToken", t)));
        let got = http.get_query(&url, &token, &query);
        assert_eq!(got.status, 200);
        cycles.extend(got.body["records"].as_array().unwrap().iter().map(|r| r["cycle_id"].as_i64().unwrap()));
        next = got.body["next_token"].as_str().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    assert_eq!(cycles, [14, 13, 12, 11], "newest first; `end` is exclusive");
    assert_eq!(http.get_query(&url, &token, &[("limit", "26")]).status, 400);
}

/// The simulator keeps its own runtime, so it also serves a test that already runs inside tokio.
#[tokio::test]
async fn works_inside_a_tokio_test() {
    let sim = VendorSim::start();
    let (token, _) = sim.add_user(SimVendor::Whoop, WHOOP_USER, 3600);
    sim.put_record(SimVendor::Whoop, WHOOP_USER, "workout", "w1", VendorSim::whoop_workout("w1", 10129457, "2026-12-02T18:00:00Z"));
    let got = reply(client().get(format!("{}/v2/activity/workout/w1", sim.whoop_base())).bearer_auth(&token)).await;
    assert_eq!((got.status, &got.body["end"]), (200, &json!("2026-12-02T18:52:37.000Z")));
}

/// A callback URL that answers Oura's handshake the way the ingress does, for token `good-token`.
async fn handshake_answerer() -> String {
    use axum::extract::Query;
    use std::collections::HashMap;
    let answer = async |Query(query): Query<HashMap<String, String>>| match query.get("verification_token").map(String::as_str) {
        Some("good-token") => (axum::http::StatusCode::OK, axum::Json(json!({ "challenge": query.get("challenge") }))),
        _ => (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "verification_failed" }))),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/oura", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().route("/webhooks/oura", axum::routing::get(answer))).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oura_subscriptions_need_app_credentials_and_the_handshake() {
    let sim = VendorSim::start();
    let callback = handshake_answerer().await;
    let url = format!("{}/v2/webhook/subscription", sim.oura_base());
    let app = |request: reqwest::RequestBuilder| {
        request.header("x-client-id", sim.client_id(SimVendor::Oura)).header("x-client-secret", sim.client_secret(SimVendor::Oura))
    };
    let create =
        |token: &str| json!({ "callback_url": callback, "verification_token": token, "event_type": "create", "data_type": "sleep" });

    let refused = reply(client().get(&url).header("x-client-id", "oura-client").header("x-client-secret", "nope")).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body["detail"].is_string(), "{}", refused.body);

    let failed = reply(app(client().post(&url)).json(&create("bad-token"))).await;
    assert_eq!(failed.status, 400, "{}", failed.body);
    assert!(failed.body["detail"].as_str().unwrap().contains("HTTP 401"), "{}", failed.body);
    assert_eq!((sim.subscription_creates(), sim.oura_subscriptions().len()), (0, 0));

    let created = reply(app(client().post(&url)).json(&create("good-token"))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let expires = |body: &Value| DateTime::parse_from_rfc3339(body["expiration_time"].as_str().unwrap()).unwrap().with_timezone(&Utc);
    assert!(expires(&created.body) > Utc::now() + TimeDelta::days(29));
    let listed = reply(app(client().get(&url))).await;
    assert_eq!((listed.status, &listed.body), (200, &json!([created.body])));
    assert_eq!(sim.subscription_creates(), 1);

    sim.set_subscription_expiry(&id, Utc::now() + TimeDelta::days(1));
    assert!(expires(&sim.oura_subscriptions()[0]) < Utc::now() + TimeDelta::days(2));
    let renewed = reply(app(client().put(format!("{url}/renew/{id}")))).await;
    assert_eq!(renewed.status, 200);
    assert!(expires(&renewed.body) > Utc::now() + TimeDelta::days(29));
    assert_eq!(sim.subscription_renews(), 1);
    assert_eq!(reply(app(client().put(format!("{url}/renew/unknown")))).await.status, 404);

    let deleted = app(client().delete(format!("{url}/{id}"))).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(sim.oura_subscriptions().is_empty());
}
