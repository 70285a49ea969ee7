//! Oura webhook subscriptions (vendor notes §2.1, §2.3): Oura pushes webhooks only to the
//! subscriptions an app creates through its API, one per (event type, data type) pair, and every
//! subscription has an `expiration_time`: unless renewed in time, its webhooks silently stop.
//!
//! - [`OuraSubscriptions`]: the subscription API, called with the app's credentials (headers
//!   `x-client-id` / `x-client-secret`, not a user token). On a create, Oura calls the callback
//!   URL with our verification token and a challenge (the ingress answers it) before it accepts.
//! - [`plan`]: what `subscriptions ensure` must do, from the subscriptions that exist (pure);
//!   [`apply`] carries a plan out.
//!
//! WHOOP webhooks are configured in WHOOP's developer dashboard; there is no API for them.
//!
//! No error text holds the client secret or the verification token: a vendor's error detail is
//! scrubbed of both before it is shown.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use reqwest::header::HeaderValue;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::oauth::transport_kind;
use crate::secret::Secret;

/// The event types Oura notifies.
pub const EVENT_TYPES: &[&str] = &["create", "update", "delete"];

/// The data types Oura accepts a subscription for (spec v1.27 `ExtApiV2DataType`). The
/// `heartrate` time series is not one of them: it has no webhook.
pub const SUBSCRIBABLE_DATA_TYPES: &[&str] = &[
    "tag",
    "enhanced_tag",
    "workout",
    "session",
    "sleep",
    "daily_sleep",
    "daily_readiness",
    "daily_activity",
    "daily_spo2",
    "sleep_time",
    "rest_mode_period",
    "ring_configuration",
    "daily_stress",
    "daily_cardiovascular_age",
    "daily_resilience",
    "vo2_max",
];

/// The data types subscribed to by default: those the fetch stage maps that have a webhook.
pub fn default_data_types() -> Vec<String> {
    let mapped = crate::vendors::oura::MAPPED_DATA_TYPES.iter();
    mapped.filter(|data_type| SUBSCRIBABLE_DATA_TYPES.contains(data_type)).map(|data_type| (*data_type).to_owned()).collect()
}

/// One subscription, as Oura lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub callback_url: String,
    pub event_type: String,
    pub data_type: String,
    /// None when Oura gave none, or a time we cannot read (such a subscription is renewed).
    #[serde(default, deserialize_with = "lenient_time")]
    pub expiration_time: Option<DateTime<Utc>>,
}

impl Subscription {
    pub fn pair(&self) -> Pair {
        Pair::new(&self.event_type, &self.data_type)
    }

    /// `id event data callback expiry`, for the operator's lines.
    fn describe(&self) -> String {
        let expiry = self.expiration_time.map_or("unknown".to_owned(), |at| at.to_rfc3339());
        format!("{} {}/{} -> {} (expires {expiry})", self.id, self.event_type, self.data_type, self.callback_url)
    }
}

/// RFC 3339, or a date-time without offset (read as UTC); anything else is `None`.
fn lenient_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else { return Ok(None) };
    let text = text.trim();
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|at| at.and_utc()));
    Ok(parsed)
}

/// What one subscription is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pair {
    pub event_type: String,
    pub data_type: String,
}

impl Pair {
    pub fn new(event_type: &str, data_type: &str) -> Pair {
        Pair { event_type: event_type.to_owned(), data_type: data_type.to_owned() }
    }

    /// Every event type for each of `data_types`.
    pub fn all_events(data_types: &[String]) -> Vec<Pair> {
        EVENT_TYPES.iter().flat_map(|event| data_types.iter().map(move |data| Pair::new(event, data))).collect()
    }
}

impl std::fmt::Display for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.event_type, self.data_type)
    }
}

/// What `ensure` does with the subscriptions that exist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Wanted pairs without a subscription at our callback URL.
    pub create: Vec<Pair>,
    /// Ours, expired or expiring within the renew window (or of unknown expiry).
    pub renew: Vec<Subscription>,
    /// Ours, valid beyond the window.
    pub keep: Vec<Subscription>,
    /// Not wanted here: another callback URL, a pair not asked for, or a second subscription for
    /// a pair. Reported; deleted only with `--prune`.
    pub foreign: Vec<Subscription>,
}

/// Plans `ensure`: one subscription at `callback_url` per wanted pair, valid for longer than
/// `renew_within` from `now`. Where our callback URL has several subscriptions for one pair, the
/// one that expires last is used and the others are foreign.
pub fn plan(existing: &[Subscription], callback_url: &str, wanted: &[Pair], now: DateTime<Utc>, renew_within: TimeDelta) -> Plan {
    let mut plan = Plan::default();
    let mut used = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for pair in wanted {
        if !seen.insert(pair) {
            continue;
        }
        let ours = existing.iter().enumerate().filter(|(_, s)| s.callback_url == callback_url && &s.pair() == pair);
        // The latest expiry wins; an unknown one counts as the earliest.
        let Some((index, best)) = ours.max_by_key(|(_, s)| s.expiration_time) else {
            plan.create.push(pair.clone());
            continue;
        };
        used.insert(index);
        match best.expiration_time {
            Some(expires) if expires > now + renew_within => plan.keep.push(best.clone()),
            _ => plan.renew.push(best.clone()),
        }
    }
    plan.foreign = existing.iter().enumerate().filter(|(index, _)| !used.contains(index)).map(|(_, s)| s.clone()).collect();
    plan
}

/// A failed call to the subscription API. Never holds the client secret or the verification
/// token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call}: {problem}")]
pub struct SubscriptionError {
    /// What was attempted (`create update/sleep`, `renew <id>`, ...).
    pub call: String,
    pub problem: String,
}

/// The subscription API, as [`apply`] needs it (a trait so that tests can stand in for Oura).
pub(crate) trait SubscriptionApi {
    async fn list(&self) -> Result<Vec<Subscription>, SubscriptionError>;
    async fn create(&self, pair: &Pair, callback_url: &str, verification_token: &Secret) -> Result<Subscription, SubscriptionError>;
    async fn renew(&self, id: &str) -> Result<Subscription, SubscriptionError>;
    async fn delete(&self, id: &str) -> Result<(), SubscriptionError>;
}

/// Oura's subscription API, called with the app's credentials.
#[derive(Debug, Clone)]
pub struct OuraSubscriptions {
    http: reqwest::Client,
    base: String,
    client_id: String,
    client_secret: Secret,
}

/// The longest vendor error detail shown.
const MAX_DETAIL_CHARS: usize = 200;

impl OuraSubscriptions {
    /// `base` is the API base (`https://api.ouraring.com`); every call is bounded by `timeout`.
    pub fn new(base: &str, client_id: &str, client_secret: Secret, timeout: Duration) -> anyhow::Result<OuraSubscriptions> {
        let http = super::http::client(timeout).map_err(|error| anyhow::anyhow!("building the HTTP client: {error}"))?;
        let base = base.trim_end_matches('/').to_owned();
        Ok(OuraSubscriptions { http, base, client_id: client_id.to_owned(), client_secret })
    }

    /// Sends `request` with the app's credentials; returns the body of a 2xx answer. `token` is
    /// a further secret the request carries, scrubbed from any error detail too.
    async fn call(
        &self,
        call: String,
        request: reqwest::RequestBuilder,
        token: Option<&Secret>,
    ) -> Result<bytes::Bytes, SubscriptionError> {
        let fail = |problem: String| SubscriptionError { call: call.clone(), problem };
        let mut secret =
            HeaderValue::from_str(self.client_secret.expose()).map_err(|_| fail("the client secret is not a valid header".into()))?;
        secret.set_sensitive(true);
        let request = request.header("x-client-id", &self.client_id).header("x-client-secret", secret).header("accept", "application/json");
        let response = request.send().await.map_err(|error| fail(transport_kind(&error).to_owned()))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|error| fail(transport_kind(&error).to_owned()))?;
        if status.is_success() {
            return Ok(body);
        }
        let secrets: Vec<&str> = std::iter::once(&self.client_secret).chain(token).map(Secret::expose).collect();
        let problem = match detail(&body) {
            Some(detail) => format!("HTTP {} ({})", status.as_u16(), scrub(&detail, &secrets)),
            None => format!("HTTP {}", status.as_u16()),
        };
        Err(fail(problem))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/webhook/subscription{path}", self.base)
    }
}

/// The `detail` (FastAPI) or `message` of an error answer, on one line and bounded.
fn detail(body: &[u8]) -> Option<String> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let detail = json.get("detail").or_else(|| json.get("message"))?;
    let text = match detail {
        Value::String(text) => text.clone(),
        Value::Null => return None,
        other => other.to_string(),
    };
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_DETAIL_CHARS).collect();
    Some(line.trim().to_owned()).filter(|line| !line.is_empty())
}

/// `text` with every occurrence of the `secrets` replaced.
fn scrub(text: &str, secrets: &[&str]) -> String {
    secrets.iter().filter(|secret| !secret.is_empty()).fold(text.to_owned(), |text, secret| text.replace(secret, "<redacted>"))
}

fn parse<T: for<'de> Deserialize<'de>>(call: &str, body: &[u8]) -> Result<T, SubscriptionError> {
    serde_json::from_slice(body).map_err(|_| SubscriptionError { call: call.to_owned(), problem: "unexpected answer".into() })
}

#[derive(Serialize)]
struct CreateRequest<'a> {
    callback_url: &'a str,
    verification_token: &'a str,
    event_type: &'a str,
    data_type: &'a str,
}

impl SubscriptionApi for OuraSubscriptions {
    async fn list(&self) -> Result<Vec<Subscription>, SubscriptionError> {
        let body = self.call("list".into(), self.http.get(self.url("")), None).await?;
        parse("list", &body)
    }

    async fn create(&self, pair: &Pair, callback_url: &str, verification_token: &Secret) -> Result<Subscription, SubscriptionError> {
        let call = format!("create {pair}");
        let request = CreateRequest {
            callback_url,
            verification_token: verification_token.expose(),
            event_type: &pair.event_type,
            data_type: &pair.data_type,
        };
        let body = self.call(call.clone(), self.http.post(self.url("")).json(&request), Some(verification_token)).await?;
        parse(&call, &body)
    }

    async fn renew(&self, id: &str) -> Result<Subscription, SubscriptionError> {
        let call = format!("renew {id}");
        let body = self.call(call.clone(), self.http.put(self.url(&format!("/renew/{id}"))), None).await?;
        parse(&call, &body)
    }

    async fn delete(&self, id: &str) -> Result<(), SubscriptionError> {
        self.call(format!("delete {id}"), self.http.delete(self.url(&format!("/{id}"))), None).await.map(drop)
    }
}

/// How [`apply`] carries a plan out.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Call nothing that changes a subscription; report what would be done.
    pub dry_run: bool,
    /// Delete the foreign subscriptions (only when every create and renew succeeded).
    pub prune: bool,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub created: usize,
    pub renewed: usize,
    pub kept: usize,
    pub foreign: usize,
    pub pruned: usize,
    /// The calls that failed.
    pub failures: Vec<SubscriptionError>,
    /// One line per change made (or, in a dry run, that would be made), per foreign
    /// subscription and per failure, for the operator.
    pub notes: Vec<String>,
}

impl Report {
    /// `created N, renewed N, kept N, foreign N` (and `pruned N`, `failed N` where they apply).
    pub fn summary(&self, options: ApplyOptions) -> String {
        let mut line = format!("created {}, renewed {}, kept {}, foreign {}", self.created, self.renewed, self.kept, self.foreign);
        if options.prune {
            line.push_str(&format!(", pruned {}", self.pruned));
        }
        if !self.failures.is_empty() {
            line.push_str(&format!(", failed {}", self.failures.len()));
        }
        if options.dry_run {
            line = format!("dry run, nothing changed: {line}");
        }
        line
    }
}

/// Carries `plan` out: creates, then renews, then (with `prune`, and only if all of those
/// succeeded) deletes the foreign subscriptions. A failed call does not stop the others; it is
/// in [`Report::failures`].
pub(crate) async fn apply(
    api: &impl SubscriptionApi,
    plan: &Plan,
    callback_url: &str,
    verification_token: &Secret,
    options: ApplyOptions,
) -> Report {
    let mut report = Report { kept: plan.keep.len(), foreign: plan.foreign.len(), ..Report::default() };
    let verb = |done: &str, would: &str| if options.dry_run { would.to_owned() } else { done.to_owned() };
    for pair in &plan.create {
        let result = if options.dry_run { Ok(()) } else { api.create(pair, callback_url, verification_token).await.map(drop) };
        report.created += usize::from(record(&mut report, result, format!("{} {pair} -> {callback_url}", verb("created", "would create"))));
    }
    for subscription in &plan.renew {
        let result = if options.dry_run { Ok(()) } else { api.renew(&subscription.id).await.map(drop) };
        let note = format!("{} {}", verb("renewed", "would renew"), subscription.describe());
        report.renewed += usize::from(record(&mut report, result, note));
    }
    let prune = options.prune && report.failures.is_empty();
    if options.prune && !prune && !plan.foreign.is_empty() {
        report.notes.push(format!("not pruning the {} foreign subscription(s): a call above failed", plan.foreign.len()));
    }
    for subscription in &plan.foreign {
        if !prune {
            let hint = if options.prune { "" } else { " (--prune deletes it)" };
            report.notes.push(format!("foreign {}{hint}", subscription.describe()));
            continue;
        }
        let result = if options.dry_run { Ok(()) } else { api.delete(&subscription.id).await };
        let note = format!("{} foreign {}", verb("deleted", "would delete"), subscription.describe());
        report.pruned += usize::from(record(&mut report, result, note));
    }
    report
}

/// Notes a call's success (true) or its failure (false).
fn record(report: &mut Report, result: Result<(), SubscriptionError>, note: String) -> bool {
    match result {
        Ok(()) => {
            report.notes.push(note);
            true
        }
        Err(error) => {
            report.notes.push(format!("FAILED {error}"));
            report.failures.push(error);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    const OURS: &str = "https://bridge.example/webhooks/oura";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn subscription(id: &str, url: &str, event: &str, data: &str, expires_in: Option<TimeDelta>) -> Subscription {
        Subscription {
            id: id.into(),
            callback_url: url.into(),
            event_type: event.into(),
            data_type: data.into(),
            expiration_time: expires_in.map(|delta| now() + delta),
        }
    }

    fn wanted() -> Vec<Pair> {
        Pair::all_events(&default_data_types())
    }

    fn ids(subscriptions: &[Subscription]) -> Vec<&str> {
        subscriptions.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn the_defaults_are_the_mapped_data_types_with_a_webhook() {
        assert_eq!(default_data_types(), ["sleep", "daily_sleep", "daily_readiness", "daily_activity"]);
        assert_eq!(wanted().len(), 12);
    }

    #[test]
    fn with_nothing_subscribed_every_pair_is_created() {
        let plan = plan(&[], OURS, &wanted(), now(), TimeDelta::days(7));
        assert_eq!(plan.create, wanted());
        assert!(plan.renew.is_empty() && plan.keep.is_empty() && plan.foreign.is_empty());
    }

    #[test]
    fn expiring_within_the_window_or_expired_is_renewed_and_far_expiry_is_kept() {
        let pairs =
            [Pair::new("create", "sleep"), Pair::new("update", "sleep"), Pair::new("delete", "sleep"), Pair::new("create", "daily_sleep")];
        let existing = [
            subscription("soon", OURS, "create", "sleep", Some(TimeDelta::days(1))),
            subscription("far", OURS, "update", "sleep", Some(TimeDelta::days(25))),
            subscription("gone", OURS, "delete", "sleep", Some(TimeDelta::days(-2))),
            subscription("unknown", OURS, "create", "daily_sleep", None),
        ];
        let plan = plan(&existing, OURS, &pairs, now(), TimeDelta::days(7));
        assert!(plan.create.is_empty());
        assert_eq!(ids(&plan.renew), ["soon", "gone", "unknown"]);
        assert_eq!(ids(&plan.keep), ["far"]);
        assert!(plan.foreign.is_empty());
    }

    #[test]
    fn other_callback_urls_unwanted_pairs_and_second_copies_are_foreign() {
        let pairs = [Pair::new("create", "sleep")];
        let existing = [
            subscription("old-host", "https://old.example/webhooks/oura", "create", "sleep", Some(TimeDelta::days(20))),
            subscription("ours-short", OURS, "create", "sleep", Some(TimeDelta::days(10))),
            subscription("ours-long", OURS, "create", "sleep", Some(TimeDelta::days(20))),
            subscription("unwanted", OURS, "create", "tag", Some(TimeDelta::days(20))),
        ];
        let plan = plan(&existing, OURS, &pairs, now(), TimeDelta::days(7));
        assert!(plan.create.is_empty());
        assert_eq!(ids(&plan.keep), ["ours-long"]);
        assert_eq!(ids(&plan.foreign), ["old-host", "ours-short", "unwanted"]);
        // The other URL's subscription does not count for ours: the pair is created.
        let plan = super::plan(&existing[..1], OURS, &pairs, now(), TimeDelta::days(7));
        assert_eq!(plan.create, pairs);
        assert_eq!(ids(&plan.foreign), ["old-host"]);
    }

    #[test]
    fn oura_times_are_read_with_or_without_an_offset() {
        let json = r#"[{"id":"a","callback_url":"u","event_type":"create","data_type":"sleep","expiration_time":"2027-01-15T08:00:00+00:00"},
                       {"id":"b","callback_url":"u","event_type":"create","data_type":"sleep","expiration_time":"2027-01-15T08:00:00.123"},
                       {"id":"c","callback_url":"u","event_type":"create","data_type":"sleep","expiration_time":"soon"},
                       {"id":"d","callback_url":"u","event_type":"create","data_type":"sleep"}]"#;
        let parsed: Vec<Subscription> = serde_json::from_str(json).unwrap();
        assert_eq!(parsed[0].expiration_time, Some(now()));
        assert_eq!(parsed[1].expiration_time, Some(now() + TimeDelta::milliseconds(123)));
        assert_eq!((parsed[2].expiration_time, parsed[3].expiration_time), (None, None));
    }

    #[test]
    fn error_details_are_scrubbed_of_secrets() {
        let body = br#"{"detail":"token tok-123 or secret sec-456 refused\nagain"}"#;
        let text = scrub(&detail(body).unwrap(), &["sec-456", "tok-123"]);
        assert_eq!(text, "token <redacted> or secret <redacted> refused again");
        assert_eq!(detail(br#"{"detail":[{"loc":["body"],"msg":"bad"}]}"#).unwrap(), r#"[{"loc":["body"],"msg":"bad"}]"#);
        assert_eq!(detail(b"<html>"), None);
    }

    /// Records the calls; the ids in `failing` fail (a pair fails by its `Display`).
    #[derive(Default)]
    struct FakeApi {
        calls: Mutex<Vec<String>>,
        failing: Vec<String>,
    }

    impl FakeApi {
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }

        fn answer(&self, call: String, key: &str, id: &str) -> Result<Subscription, SubscriptionError> {
            self.calls.lock().unwrap().push(call.clone());
            if self.failing.iter().any(|failing| failing == key) {
                return Err(SubscriptionError { call, problem: "HTTP 500".into() });
            }
            Ok(subscription(id, OURS, "create", "sleep", Some(TimeDelta::days(30))))
        }
    }

    impl SubscriptionApi for FakeApi {
        async fn list(&self) -> Result<Vec<Subscription>, SubscriptionError> {
            unreachable!("apply does not list")
        }
        async fn create(&self, pair: &Pair, _: &str, _: &Secret) -> Result<Subscription, SubscriptionError> {
            self.answer(format!("create {pair}"), &pair.to_string(), "new")
        }
        async fn renew(&self, id: &str) -> Result<Subscription, SubscriptionError> {
            self.answer(format!("renew {id}"), id, id)
        }
        async fn delete(&self, id: &str) -> Result<(), SubscriptionError> {
            self.answer(format!("delete {id}"), id, id).map(drop)
        }
    }

    fn mixed_plan() -> Plan {
        let existing = [
            subscription("soon", OURS, "create", "sleep", Some(TimeDelta::days(1))),
            subscription("far", OURS, "update", "sleep", Some(TimeDelta::days(25))),
            subscription("old", "https://old.example/webhooks/oura", "create", "sleep", Some(TimeDelta::days(25))),
        ];
        let pairs = [Pair::new("create", "sleep"), Pair::new("update", "sleep"), Pair::new("delete", "sleep")];
        plan(&existing, OURS, &pairs, now(), TimeDelta::days(7))
    }

    fn run(api: &FakeApi, plan: &Plan, options: ApplyOptions) -> Report {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(apply(api, plan, OURS, &Secret::new("token"), options))
    }

    #[test]
    fn apply_creates_renews_and_reports_foreign_without_deleting() {
        let api = FakeApi::default();
        let report = run(&api, &mixed_plan(), ApplyOptions::default());
        assert_eq!(api.calls(), ["create delete/sleep", "renew soon"]);
        assert_eq!(report.summary(ApplyOptions::default()), "created 1, renewed 1, kept 1, foreign 1");
        assert!(
            report.notes.iter().any(|note| note.starts_with("foreign old ") && note.ends_with("(--prune deletes it)")),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn prune_deletes_the_foreign_ones() {
        let api = FakeApi::default();
        let options = ApplyOptions { prune: true, ..ApplyOptions::default() };
        let report = run(&api, &mixed_plan(), options);
        assert_eq!(api.calls(), ["create delete/sleep", "renew soon", "delete old"]);
        assert_eq!(report.summary(options), "created 1, renewed 1, kept 1, foreign 1, pruned 1");
    }

    #[test]
    fn a_dry_run_changes_nothing() {
        let api = FakeApi::default();
        let options = ApplyOptions { dry_run: true, prune: true };
        let report = run(&api, &mixed_plan(), options);
        assert!(api.calls().is_empty(), "{:?}", api.calls());
        assert_eq!(report.summary(options), "dry run, nothing changed: created 1, renewed 1, kept 1, foreign 1, pruned 1");
        assert!(report.notes.iter().any(|note| note.starts_with("would create delete/sleep")), "{:?}", report.notes);
        assert!(report.notes.iter().any(|note| note.starts_with("would delete foreign old")), "{:?}", report.notes);
    }

    #[test]
    fn a_failed_call_does_not_stop_the_others_but_stops_the_pruning() {
        let api = FakeApi { failing: vec!["create/sleep".into()], ..FakeApi::default() };
        let mut plan = mixed_plan();
        plan.create.insert(0, Pair::new("create", "sleep"));
        let options = ApplyOptions { prune: true, ..ApplyOptions::default() };
        let report = run(&api, &plan, options);
        assert_eq!(api.calls(), ["create create/sleep", "create delete/sleep", "renew soon"]);
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].to_string(), "create create/sleep: HTTP 500");
        assert_eq!(report.summary(options), "created 1, renewed 1, kept 1, foreign 1, pruned 0, failed 1");
        assert!(report.notes.iter().any(|note| note.starts_with("not pruning")), "{:?}", report.notes);
    }
}
