//! `biometric-bridge reconcile`: one reconciliation run from the command line (operators, cron,
//! or after an incident), with the same settings as the processor's fetch stage.

use std::sync::Arc;
use std::time::Duration;

use super::reconcile::{Reconciler, parse_span};
use crate::config::{DatabaseArgs, KafkaArgs, RedisArgs};
use crate::connections::OAuthArgs;
use crate::event::Vendor;
use crate::fetch::FetchArgs;
use crate::shutdown::CancellationToken;
use crate::topology::TopologyArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// The vendor to reconcile (`oura`, `whoop` or `terra`); every configured vendor when omitted.
    #[arg(long)]
    pub vendor: Option<String>,
    /// Terra only: this Terra user alone (default: every user linked through Terra).
    #[arg(long)]
    pub user: Option<String>,
    /// Terra's REST API (`TERRA_DEV_ID`, and `TERRA_API_KEY` or `TERRA_API_KEY_FILE`).
    #[command(flatten)]
    pub terra: super::terra_api::TerraApiArgs,
    /// How far back to look (`2d`, `6h`, ...).
    #[arg(long, value_parser = parse_span, default_value = "2d")]
    pub since: Duration,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub oauth: OAuthArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
    #[command(flatten)]
    pub topology: TopologyArgs,
}

/// Runs reconciliation once and prints one summary line per vendor. Fails (exit non-zero) when
/// the vendor is not configured or a connection (or a Terra re-request) failed.
pub async fn run(args: ReconcileArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topology = args.topology.load()?;
    let raw_topic = topology.ingress_topic();
    let pool = args.database.migrated_pool().await?;
    let terra = super::terra_api::TerraApi::from_args(&args.terra)?;
    let terra_ran = match (&args.vendor, terra) {
        (Some(vendor), None) if vendor == "terra" => {
            anyhow::bail!("Terra's API is not configured: set TERRA_DEV_ID and TERRA_API_KEY (or TERRA_API_KEY_FILE)")
        }
        (Some(vendor), Some(terra)) if vendor == "terra" => return reconcile_terra(&terra, &args, &pool).await,
        (None, Some(terra)) => {
            reconcile_terra(&terra, &args, &pool).await?;
            true
        }
        _ => false,
    };
    let setup = super::setup::fetch_setup(&args.oauth, &args.fetch, &args.redis, &pool, &shutdown).await?;
    let Some(oauth) = &setup.oauth else {
        anyhow::ensure!(terra_ran, "fetching is not configured: set TOKEN_ENCRYPTION_KEY and a vendor's OAuth client id and secret");
        return Ok(());
    };
    let vendors: Vec<Vendor> = match &args.vendor {
        Some(slug) => {
            let vendor = Vendor::from_slug(slug).filter(|v| oauth.bases.iter().any(|(b, _)| b == v));
            vec![vendor.ok_or_else(|| {
                anyhow::anyhow!("{slug:?} is not a fetched vendor here (oura or whoop, with its OAuth client configured)")
            })?]
        }
        None => oauth.bases.iter().map(|(vendor, _)| *vendor).collect(),
    };
    let reconciler = Reconciler::new(Arc::clone(&setup.fetcher), oauth.store.clone(), pool, &args.kafka, raw_topic)?;
    let mut failed = 0;
    for vendor in vendors {
        let report = reconciler.run(vendor, args.since).await?;
        println!(
            "{}: {} connections, {} records listed, {} already known, {} fed to {raw_topic}, {} connections failed{}",
            vendor.slug(),
            report.connections,
            report.listed,
            report.known,
            report.fed,
            report.failed.len(),
            report.failed.iter().map(|(user, reason)| format!(" [{user}: {reason}]")).collect::<String>()
        );
        failed += report.failed.len();
    }
    anyhow::ensure!(failed == 0, "{failed} connection(s) could not be listed");
    Ok(())
}

/// Asks Terra to re-send the window for `--user`, or every user linked through Terra.
async fn reconcile_terra(terra: &super::terra_api::TerraApi, args: &ReconcileArgs, pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let users = match &args.user {
        Some(user) => vec![user.clone()],
        None => super::terra_api::linked_users(pool).await?,
    };
    let requested = terra.resend_window(&users, args.since).await;
    let failed: Vec<&super::terra_api::Requested> = requested.iter().filter(|r| r.failure.is_some()).collect();
    println!(
        "terra: {} users, {} windows re-requested, {} failed{}",
        users.len(),
        requested.len() - failed.len(),
        failed.len(),
        failed.iter().map(|r| format!(" [{} {}: {}]", r.user, r.data_type, r.failure.as_deref().unwrap_or_default())).collect::<String>()
    );
    anyhow::ensure!(failed.is_empty(), "{} Terra re-request(s) failed", failed.len());
    Ok(())
}
