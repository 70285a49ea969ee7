//! Terra's REST API, for recovery: re-requesting a window of a user's data.
//!
//! Data lost on the way (a pointer whose URL expired while the processor was down, a webhook
//! refused for a reason since fixed, a large body a proxy dropped) can be had again from Terra:
//! `GET /v2/{activity,body,daily,sleep}?user_id=&start_date=&end_date=&to_webhook=true` with the
//! developer's `dev-id` and `x-api-key` headers makes Terra send the window again to the
//! configured destination (webhook or Kafka), where it takes the normal path; de-duplication drops
//! what had arrived after all. `reconcile --vendor terra` (and `RECONCILE_EVERY`) run it for every
//! user linked through Terra (`identity_links`), or for one.

use std::time::Duration;

use chrono::{NaiveDate, Utc};

use crate::secret::{Secret, load_secret};

/// The data types re-requested (the four Terra data events this pipeline maps).
pub const DATA_TYPES: &[&str] = &["activity", "body", "daily", "sleep"];

/// Terra API settings; the key comes from the environment or a file only.
#[derive(Debug, Clone, clap::Args)]
pub struct TerraApiArgs {
    /// Terra's REST API.
    #[arg(long, env = "TERRA_API_BASE", default_value = "https://api.tryterra.co")]
    pub terra_api_base: String,
    /// The developer id Terra's API is called with (`dev-id`).
    #[arg(long, env = "TERRA_DEV_ID")]
    pub terra_dev_id: Option<String>,
}

pub struct TerraApi {
    base: String,
    dev_id: String,
    api_key: Secret,
    http: reqwest::Client,
}

/// What one re-request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub user: String,
    pub data_type: &'static str,
    /// `None`: Terra accepted; else why not (a status, a transport error).
    pub failure: Option<String>,
}

impl TerraApi {
    /// The API client, or `None` when `TERRA_DEV_ID` / `TERRA_API_KEY` are not set.
    pub fn from_args(args: &TerraApiArgs) -> anyhow::Result<Option<TerraApi>> {
        let (Some(dev_id), Some(api_key)) = (args.terra_dev_id.clone(), load_secret("TERRA_API_KEY")?) else { return Ok(None) };
        let http = crate::connections::http::client(Duration::from_secs(30))?;
        Ok(Some(TerraApi { base: args.terra_api_base.trim_end_matches('/').to_owned(), dev_id, api_key, http }))
    }

    /// Asks Terra to send `user`'s `data_type` records of `[start, end)` to the destination again.
    pub async fn resend(&self, user: &str, data_type: &'static str, start: NaiveDate, end: NaiveDate) -> Requested {
        let url = format!("{}/v2/{data_type}", self.base);
        let query = [
            ("user_id", user.to_owned()),
            ("start_date", start.format("%Y-%m-%d").to_string()),
            ("end_date", end.format("%Y-%m-%d").to_string()),
            ("to_webhook", "true".to_owned()),
        ];
        let sent = self.http.get(&url).query(&query).header("dev-id", &self.dev_id).header("x-api-key", self.api_key.expose()).send().await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("http_{}", response.status().as_u16())),
            Err(error) if error.is_timeout() => Some("timeout".to_owned()),
            Err(_) => Some("network".to_owned()),
        };
        Requested { user: user.to_owned(), data_type, failure }
    }

    /// Re-requests every data type of the last `since` for each of `users`.
    pub async fn resend_window(&self, users: &[String], since: Duration) -> Vec<Requested> {
        let today = Utc::now().date_naive();
        let days = i64::try_from(since.as_secs().div_ceil(86_400)).unwrap_or(i64::MAX).max(1);
        let start = today - chrono::Duration::days(days);
        // Up to tomorrow, so today's records are in whatever Terra's end bound means.
        let end = today + chrono::Duration::days(1);
        let mut requested = Vec::new();
        for user in users {
            for data_type in DATA_TYPES {
                let result = self.resend(user, data_type, start, end).await;
                let label = if result.failure.is_none() { "requested" } else { "failed" };
                crate::metrics::RECONCILE_FED.with_label_values(&["terra", label]).inc();
                requested.push(result);
            }
        }
        requested
    }
}

/// Terra user ids linked to one of our users (active links).
pub async fn linked_users(pool: &sqlx::PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT vendor_user_id FROM identity_links WHERE vendor = 'TERRA' AND active ORDER BY vendor_user_id")
        .fetch_all(pool)
        .await
}

/// Re-requests the last `window` of every linked Terra user every `every`, until shutdown.
pub async fn run_scheduled(
    terra: TerraApi,
    pool: sqlx::PgPool,
    every: Duration,
    window: Duration,
    shutdown: crate::shutdown::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        match linked_users(&pool).await {
            Ok(users) => {
                let failed = terra.resend_window(&users, window).await.iter().filter(|r| r.failure.is_some()).count();
                if failed > 0 {
                    tracing::warn!(failed, "Scheduled Terra reconciliation: some re-requests failed; next run as scheduled.");
                }
            }
            Err(error) => tracing::warn!(%error, "Scheduled Terra reconciliation could not list the Terra users; next run as scheduled."),
        }
    }
}
