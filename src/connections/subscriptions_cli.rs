//! `biometric-bridge subscriptions list|ensure`: the app's Oura webhook subscriptions.
//!
//! Secrets are never flags: the client secret is `OURA_CLIENT_SECRET` and the handshake token
//! `OURA_VERIFICATION_TOKEN` (or their `_FILE`s), the same ones the ingress reads.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use super::cli::{aligned, parse_vendor, time};
use super::oauth::OAuthArgs;
use super::subscriptions::{
    ApplyOptions, OuraSubscriptions, Pair, SUBSCRIBABLE_DATA_TYPES, SubscriptionApi, apply, default_data_types, plan,
};
use crate::event::Vendor;
use crate::fetch::reconcile::parse_span;
use crate::secret::load_secret;

#[derive(Debug, Subcommand)]
pub enum SubscriptionsCommand {
    /// List the app's webhook subscriptions: id, event type, data type, callback URL, expiry.
    List {
        /// oura (WHOOP webhooks are configured in the WHOOP developer dashboard).
        #[arg(long, value_parser = parse_vendor)]
        vendor: Vendor,
        #[command(flatten)]
        oauth: OAuthArgs,
    },
    /// Create the missing webhook subscriptions and renew expiring ones; run it daily from cron.
    ///
    /// Oura subscriptions expire, and then their webhooks silently stop: run this from cron (for
    /// example daily) so that they are renewed well before. It wants one subscription at --callback-url per event type (create, update, delete) and data
    /// type. Creates the missing ones (Oura first calls the callback URL with
    /// OURA_VERIFICATION_TOKEN, which the ingress must answer), renews ours that expire within
    /// --renew-within (or have expired), keeps the rest. Subscriptions at other callback URLs,
    /// for other pairs, or second copies are reported as foreign and deleted only with --prune.
    /// Prints one summary line on stdout (`created N, renewed N, kept N, foreign N`), one line
    /// per change on stderr, and exits non-zero if any call failed (after trying the others).
    ///
    /// Needs OURA_CLIENT_ID, OURA_CLIENT_SECRET and OURA_VERIFICATION_TOKEN (each secret from
    /// the environment or NAME_FILE, never a flag).
    Ensure {
        /// oura (WHOOP webhooks are configured in the WHOOP developer dashboard).
        #[arg(long, value_parser = parse_vendor)]
        vendor: Vendor,
        /// Where Oura sends the webhooks: the ingress's public `https://<host>/webhooks/oura`.
        #[arg(long)]
        callback_url: String,
        /// The data types to subscribe to, comma-separated (default: those the fetch stage maps).
        #[arg(long, value_delimiter = ',', value_parser = parse_data_type, default_values_t = default_data_types())]
        data_types: Vec<String>,
        /// Renew subscriptions that expire within this span (`7d`, `36h`, ...).
        #[arg(long, value_parser = parse_span, default_value = "7d")]
        renew_within: Duration,
        /// Show what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete the foreign subscriptions (only when every create and renew succeeded).
        #[arg(long)]
        prune: bool,
        #[command(flatten)]
        oauth: OAuthArgs,
    },
}

fn parse_data_type(text: &str) -> Result<String, String> {
    let text = text.trim();
    if SUBSCRIBABLE_DATA_TYPES.contains(&text) {
        Ok(text.to_owned())
    } else {
        Err(format!("Oura has no webhook for {text:?}; one of: {}", SUBSCRIBABLE_DATA_TYPES.join(", ")))
    }
}

/// Only Oura's subscriptions have an API.
fn require_oura(vendor: Vendor) -> anyhow::Result<()> {
    match vendor {
        Vendor::Oura => Ok(()),
        Vendor::Whoop => anyhow::bail!(
            "WHOOP webhooks are configured in the WHOOP developer dashboard (developer.whoop.com), not through an API: \
             there are no subscriptions to list or ensure"
        ),
        other => anyhow::bail!("{} has no webhook subscriptions", other.slug()),
    }
}

/// The Oura subscription API with the app's credentials.
fn oura(oauth: &OAuthArgs) -> anyhow::Result<OuraSubscriptions> {
    let client_id = oauth.client_id(Vendor::Oura).context("OURA_CLIENT_ID (or --oura-client-id) is not set")?;
    let secret = load_secret("OURA_CLIENT_SECRET")?.context("OURA_CLIENT_SECRET (or OURA_CLIENT_SECRET_FILE) is not set")?;
    OuraSubscriptions::new(&oauth.oura_api_base, client_id, secret, Duration::from_millis(oauth.oauth_timeout_ms.max(1)))
}

pub async fn run(command: SubscriptionsCommand) -> anyhow::Result<()> {
    match command {
        SubscriptionsCommand::List { vendor, oauth } => {
            require_oura(vendor)?;
            let subscriptions = oura(&oauth)?.list().await.context("listing Oura subscriptions")?;
            let header = ["ID", "EVENT_TYPE", "DATA_TYPE", "CALLBACK_URL", "EXPIRES"].map(str::to_owned);
            let rows: Vec<[String; 5]> = std::iter::once(header)
                .chain(subscriptions.into_iter().map(|s| {
                    let expires = s.expiration_time.map_or("unknown".to_owned(), time);
                    [s.id, s.event_type, s.data_type, s.callback_url, expires]
                }))
                .collect();
            print!("{}", aligned(&rows));
        }
        SubscriptionsCommand::Ensure { vendor, callback_url, data_types, renew_within, dry_run, prune, oauth } => {
            require_oura(vendor)?;
            let token =
                load_secret("OURA_VERIFICATION_TOKEN")?.context("OURA_VERIFICATION_TOKEN (or OURA_VERIFICATION_TOKEN_FILE) is not set")?;
            let callback_url = callback_url.trim();
            let parsed = reqwest::Url::parse(callback_url).ok().filter(|url| matches!(url.scheme(), "https" | "http"));
            anyhow::ensure!(parsed.is_some(), "--callback-url must be an http(s) URL (Oura calls https://<host>/webhooks/oura)");
            let api = oura(&oauth)?;
            let existing = api.list().await.context("listing Oura subscriptions")?;
            let window = chrono::TimeDelta::from_std(renew_within).context("--renew-within is too long")?;
            let plan = plan(&existing, callback_url, &Pair::all_events(&data_types), chrono::Utc::now(), window);
            let options = ApplyOptions { dry_run, prune };
            let report = apply(&api, &plan, callback_url, &token, options).await;
            for note in &report.notes {
                eprintln!("{note}");
            }
            println!("{}", report.summary(options));
            anyhow::ensure!(report.failures.is_empty(), "{} subscription call(s) failed", report.failures.len());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_types_must_have_a_webhook() {
        assert_eq!(parse_data_type(" sleep "), Ok("sleep".to_owned()));
        assert!(parse_data_type("heartrate").unwrap_err().contains("no webhook"));
    }

    #[test]
    fn whoop_is_refused_with_the_dashboard_message() {
        assert!(require_oura(Vendor::Oura).is_ok());
        assert!(require_oura(Vendor::Whoop).unwrap_err().to_string().contains("WHOOP developer dashboard"));
    }
}
