//! Fetching the records behind Oura and WHOOP notifications from the vendors' APIs.
//!
//! Those vendors' webhooks only say "record X of user U changed" (vendors.md §2.1, §3.1). The
//! processor's fetch stage reads them from `pending-fetch` (and the retry topic), and for each one
//! [`Fetcher::fetch`] GETs the record with the user's OAuth token. The answer is an
//! [`FetchOutcome`]: the record, or what to do instead (retry later, dead-letter, nothing).
//!
//! One fetch *pass* is bounded: a few attempts with jittered backoff on 5xx / timeouts, one token
//! refresh on 401, at most `max_rate_wait` waiting for the rate limiter, `Retry-After` honoured
//! inline only when short. Anything longer becomes [`FetchOutcome::Retry`], and the runtime
//! re-queues the notification on the retry topic with a delay, so a slow or limiting vendor never
//! holds a partition (or the open transaction) for long.
//!
//! - `client.rs`: one vendor API (base URL, HTTP client, rate limiter, concurrency permits);
//! - `limiter.rs`: token buckets for the documented limits; `backoff.rs`: delays and jitter;
//! - `reconcile.rs`: re-discovering records whose webhook never came; `terra_api.rs`: asking Terra
//!   to send a window again;
//! - `download.rs`: Terra payload downloads (pointers); `setup.rs`: building the stage.

pub mod backoff;
pub mod client;
pub mod command;
pub mod download;
pub mod limiter;
pub mod reconcile;
pub mod setup;
pub mod terra_api;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::connections::{AccessToken, AccessTokens, ConnectionStatus, TokenError};
use crate::event::Vendor;
use crate::vendors::PendingFetch;
use client::{Reply, VendorClient};
use download::{Download, Downloads};
use limiter::parse_limits;

/// The retry reason when no access token could be had because PostgreSQL or Redis (or the
/// vendor's token endpoint) is unavailable: retried without using up a pass.
pub const TOKEN_UNAVAILABLE: &str = "token_unavailable";

/// What fetching one notification came to.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchOutcome {
    /// The record, to be mapped as `data_type` (WHOOP recovery: the recovery found through the
    /// sleep the notification named), for our user `user_id`.
    Fetched { data_type: String, body: Vec<u8>, user_id: String },
    /// 404: the record is gone (deleted since, or never visible to this token). Nothing to emit.
    Gone,
    /// Not now: a transient failure outlasted the pass, or the vendor / our limiter asked us to
    /// wait longer than a pass may. `reason` is a bounded class.
    Retry { reason: String, retry_after: Option<Duration> },
    /// The user's authorization is gone (refresh refused, 401 after a refresh, 403): the
    /// connection is marked needs-reauth and the notification is dead-lettered.
    NeedsReauth { reason: String },
    /// No usable connection (never connected, or revoked by an operator).
    NoConnection { reason: String },
    /// The API refused the request in a way retrying cannot fix (e.g. 400), or answered
    /// something unusable.
    Rejected { reason: String },
    /// The request's deadline passed (a Terra pointer's URL expired, or its object is gone).
    Expired { reason: String },
}

impl FetchOutcome {
    /// Bounded metric label.
    pub fn label(&self) -> &'static str {
        match self {
            FetchOutcome::Fetched { .. } => "fetched",
            FetchOutcome::Gone => "gone",
            FetchOutcome::Retry { .. } => "retry",
            FetchOutcome::NeedsReauth { .. } => "needs_reauth",
            FetchOutcome::NoConnection { .. } => "no_connection",
            FetchOutcome::Rejected { .. } => "rejected",
            FetchOutcome::Expired { .. } => "expired",
        }
    }
}

/// Where access tokens come from: [`AccessTokens`] (PostgreSQL + refresh under a Redis lock) in
/// production, a fake in unit tests.
pub trait TokenSource: Send + Sync {
    fn token<'a>(&'a self, vendor: Vendor, vendor_user_id: &'a str) -> BoxFuture<'a, Result<AccessToken, TokenError>>;
    fn after_unauthorized<'a>(
        &'a self,
        vendor: Vendor,
        vendor_user_id: &'a str,
        rejected: &'a AccessToken,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>>;
    fn mark_needs_reauth<'a>(&'a self, vendor: Vendor, vendor_user_id: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), TokenError>>;
}

impl TokenSource for AccessTokens {
    fn token<'a>(&'a self, vendor: Vendor, vendor_user_id: &'a str) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(self.access_token(vendor, vendor_user_id))
    }
    fn after_unauthorized<'a>(
        &'a self,
        vendor: Vendor,
        vendor_user_id: &'a str,
        rejected: &'a AccessToken,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(AccessTokens::after_unauthorized(self, vendor, vendor_user_id, rejected))
    }
    fn mark_needs_reauth<'a>(&'a self, vendor: Vendor, vendor_user_id: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), TokenError>> {
        Box::pin(AccessTokens::mark_needs_reauth(self, vendor, vendor_user_id, reason))
    }
}

/// The fetch settings of `biometric-bridge process` (API bases and OAuth clients are in
/// `OAuthArgs`).
#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// Attempts per fetch pass on 5xx / timeouts before the notification goes to the retry topic.
    #[arg(long, env = "FETCH_ATTEMPTS", default_value_t = 3)]
    pub fetch_attempts: u32,

    /// Timeout of one vendor API request, milliseconds.
    #[arg(long, env = "FETCH_TIMEOUT_MS", default_value_t = 10_000)]
    pub fetch_timeout_ms: u64,

    /// First backoff between attempts of a pass, milliseconds (doubled per attempt, jittered).
    #[arg(long, env = "FETCH_BACKOFF_MS", default_value_t = 200)]
    pub fetch_backoff_ms: u64,

    /// Vendor API requests in flight at once, per vendor.
    #[arg(long, env = "FETCH_CONCURRENCY", default_value_t = 8)]
    pub fetch_concurrency: usize,

    /// Longest a pass waits for the rate limiter or a `Retry-After`, milliseconds; longer waits
    /// send the notification to the retry topic instead.
    #[arg(long, env = "FETCH_MAX_WAIT_MS", default_value_t = 5_000)]
    pub fetch_max_wait_ms: u64,

    /// Oura request limits of this instance, `<requests>/<seconds>[,...]` (Oura documents 5000
    /// per 5 minutes; divide by the number of processor instances).
    #[arg(long, env = "OURA_RATE_LIMIT", default_value = "5000/300")]
    pub oura_rate_limit: String,

    /// WHOOP request limits of this instance (WHOOP documents 100 per minute and 10 000 a day).
    #[arg(long, env = "WHOOP_RATE_LIMIT", default_value = "100/60,10000/86400")]
    pub whoop_rate_limit: String,

    /// Terra payload downloads (pointers on its Kafka destination and in large webhooks).
    #[command(flatten)]
    pub downloads: download::DownloadArgs,
}

/// Per-pass limits.
#[derive(Debug, Clone, Copy)]
struct Pass {
    attempts: u32,
    backoff: Duration,
    max_wait: Duration,
}

pub struct Fetcher {
    clients: HashMap<Vendor, VendorClient>,
    tokens: Arc<dyn TokenSource>,
    downloads: Downloads,
    pass: Pass,
}

impl Fetcher {
    /// A fetcher for the vendors in `bases` (vendor -> API base URL).
    pub fn new(args: &FetchArgs, bases: &[(Vendor, String)], tokens: Arc<dyn TokenSource>) -> anyhow::Result<Fetcher> {
        let mut clients = HashMap::new();
        for (vendor, base) in bases {
            let limits = match vendor {
                Vendor::Oura => parse_limits(&args.oura_rate_limit),
                Vendor::Whoop => parse_limits(&args.whoop_rate_limit),
                _ => Ok(Vec::new()),
            }
            .map_err(|error| anyhow::anyhow!("{} rate limit: {error}", vendor.slug()))?;
            let timeout = Duration::from_millis(args.fetch_timeout_ms.max(1));
            clients.insert(*vendor, VendorClient::new(*vendor, base, &limits, args.fetch_concurrency, timeout)?);
        }
        let pass = Pass {
            attempts: args.fetch_attempts.max(1),
            backoff: Duration::from_millis(args.fetch_backoff_ms),
            max_wait: Duration::from_millis(args.fetch_max_wait_ms),
        };
        Ok(Fetcher { clients, tokens, downloads: Downloads::new(&args.downloads)?, pass })
    }

    pub fn vendors(&self) -> Vec<Vendor> {
        self.clients.keys().copied().collect()
    }

    /// One fetch pass for `request`.
    pub async fn fetch(&self, request: &PendingFetch) -> FetchOutcome {
        let outcome = match self.clients.get(&request.vendor) {
            _ if request.vendor == Vendor::Terra => self.download(request).await,
            Some(client) => self.fetch_with(client, request).await,
            None => FetchOutcome::Retry { reason: "vendor_not_configured".to_owned(), retry_after: None },
        };
        crate::metrics::FETCH_OUTCOMES.with_label_values(&[request.vendor.slug(), outcome.label()]).inc();
        outcome
    }

    async fn fetch_with(&self, client: &VendorClient, request: &PendingFetch) -> FetchOutcome {
        let user = request.vendor_user_id.as_str();
        let mut token = match self.tokens.token(request.vendor, user).await {
            Ok(token) => token,
            Err(error) => return token_outcome(error),
        };
        let mut path = request.api_path.clone();
        // A WHOOP recovery notification names the sleep: GET it, then the recovery of its cycle.
        if request.vendor == Vendor::Whoop && request.data_type == "recovery" {
            let sleep = match self.get_with(client, user, &path, &mut token).await {
                Ok(body) => body,
                Err(outcome) => return outcome,
            };
            path = match crate::vendors::whoop::recovery_api_path(&sleep) {
                Ok(next) => next,
                Err(error) => return FetchOutcome::Rejected { reason: format!("sleep without a cycle: {error}") },
            };
        }
        match self.get_with(client, user, &path, &mut token).await {
            Ok(body) => FetchOutcome::Fetched { data_type: request.data_type.clone(), body, user_id: token.user_id },
            Err(outcome) => outcome,
        }
    }

    /// One bounded pass of downloading a Terra payload: retried with jittered backoff on
    /// transient failures while the URL is valid.
    async fn download(&self, request: &PendingFetch) -> FetchOutcome {
        let url = request.api_path.as_str();
        if let Some(reason) = self.downloads.refusal(url) {
            tracing::warn!(reason, "Terra payload URL refused.");
            return FetchOutcome::Rejected { reason: format!("url_refused: {reason}") };
        }
        let time_left = || {
            let left = request.expires_at_ms.map(|at| at - chrono::Utc::now().timestamp_millis());
            left.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
        };
        let mut failures = 0u32;
        loop {
            if time_left().is_some_and(|left| left.is_zero()) {
                return FetchOutcome::Expired { reason: "url_expired".to_owned() };
            }
            match self.downloads.get(url).await {
                Download::Ok(body) => return FetchOutcome::Fetched { data_type: request.data_type.clone(), body, user_id: String::new() },
                Download::Expired(status) => return FetchOutcome::Expired { reason: format!("http_{status}") },
                Download::Rejected(status) => return FetchOutcome::Rejected { reason: format!("http_{status}") },
                Download::Transient(class) => {
                    failures += 1;
                    if failures >= self.pass.attempts {
                        return FetchOutcome::Retry { reason: class, retry_after: None };
                    }
                    let mut delay = backoff::jittered(self.pass.backoff, self.pass.max_wait, failures - 1, backoff::unit_random());
                    if let Some(left) = time_left() {
                        delay = delay.min(left);
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// GETs `path` for the vendor user (one bounded pass, as for a notification); the error is
    /// the outcome the caller should act on. Used by reconciliation for the list endpoints.
    pub async fn get(&self, vendor: Vendor, vendor_user_id: &str, path: &str) -> Result<Vec<u8>, FetchOutcome> {
        let Some(client) = self.clients.get(&vendor) else {
            return Err(FetchOutcome::Retry { reason: "vendor_not_configured".to_owned(), retry_after: None });
        };
        let mut token = self.tokens.token(vendor, vendor_user_id).await.map_err(token_outcome)?;
        self.get_with(client, vendor_user_id, path, &mut token).await
    }

    /// One bounded pass of GETs of `path`: retries transient failures with jittered backoff,
    /// refreshes the token once on 401 (updating `token`), honours a short `Retry-After`.
    async fn get_with(&self, client: &VendorClient, user: &str, path: &str, token: &mut AccessToken) -> Result<Vec<u8>, FetchOutcome> {
        let vendor = client.vendor;
        let mut refreshed = false;
        let mut failures = 0u32;
        loop {
            let reply = client.get(path, &token.token, self.pass.max_wait).await;
            match reply {
                Reply::Ok(body) => return Ok(body),
                Reply::NotFound => return Err(FetchOutcome::Gone),
                Reply::Unauthorized if !refreshed => {
                    refreshed = true;
                    *token = self.tokens.after_unauthorized(vendor, user, token).await.map_err(token_outcome)?;
                }
                Reply::Unauthorized | Reply::Forbidden => {
                    let reason = if matches!(reply, Reply::Forbidden) { "api_forbidden" } else { "api_unauthorized_after_refresh" };
                    // Not marked (PostgreSQL down): retried, and judged again then.
                    self.tokens.mark_needs_reauth(vendor, user, reason).await.map_err(token_outcome)?;
                    return Err(FetchOutcome::NeedsReauth { reason: reason.to_owned() });
                }
                Reply::RateLimited(retry_after) => {
                    let wait = retry_after.unwrap_or(Duration::from_secs(60));
                    // The limiter now holds every request to this vendor until Retry-After.
                    client.limiter.back_off(std::time::Instant::now(), wait);
                    failures += 1;
                    if wait > self.pass.max_wait || failures >= self.pass.attempts {
                        return Err(FetchOutcome::Retry { reason: "rate_limited".to_owned(), retry_after: Some(wait) });
                    }
                }
                Reply::Throttled(wait) => return Err(FetchOutcome::Retry { reason: "throttled".to_owned(), retry_after: Some(wait) }),
                Reply::Transient(class) => {
                    failures += 1;
                    if failures >= self.pass.attempts {
                        return Err(FetchOutcome::Retry { reason: class, retry_after: None });
                    }
                    let delay = backoff::jittered(self.pass.backoff, self.pass.max_wait, failures - 1, backoff::unit_random());
                    tokio::time::sleep(delay).await;
                }
                Reply::Rejected(status) => return Err(FetchOutcome::Rejected { reason: format!("http_{status}") }),
            }
        }
    }
}

/// A token problem as an outcome: only an unavailable dependency is worth a retry.
fn token_outcome(error: TokenError) -> FetchOutcome {
    match error {
        TokenError::NoConnection => FetchOutcome::NoConnection { reason: "no_connection".to_owned() },
        TokenError::Inactive(ConnectionStatus::NeedsReauth) => FetchOutcome::NeedsReauth { reason: "connection_needs_reauth".to_owned() },
        TokenError::Inactive(_) => FetchOutcome::NoConnection { reason: "connection_revoked".to_owned() },
        TokenError::NeedsReauth(_) => FetchOutcome::NeedsReauth { reason: "refresh_refused".to_owned() },
        TokenError::Unavailable(_) => FetchOutcome::Retry { reason: TOKEN_UNAVAILABLE.to_owned(), retry_after: None },
        TokenError::Rejected(_) => FetchOutcome::Rejected { reason: "database_rejected".to_owned() },
    }
}
