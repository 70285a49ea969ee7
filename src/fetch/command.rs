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
use crate::topology::{SourceFormat, TopologyArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// The vendor to reconcile (`oura` or `whoop`); every fetched vendor when omitted.
    #[arg(long)]
    pub vendor: Option<String>,
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
/// fetching is not configured or a connection could not be listed.
pub async fn run(args: ReconcileArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topology = args.topology.load()?;
    let raw_topic = &topology.sources.iter().find(|s| s.format == SourceFormat::Ingress).expect("validated").topic;
    let pool = args.database.migrated_pool().await?;
    let Some(setup) = crate::runtime::fetch_setup(&args.oauth, &args.fetch, &args.redis, &pool, &shutdown).await? else {
        anyhow::bail!("fetching is not configured: set TOKEN_ENCRYPTION_KEY and a vendor's OAuth client id and secret");
    };
    let vendors: Vec<Vendor> = match &args.vendor {
        Some(slug) => {
            let vendor = Vendor::from_slug(slug).filter(|v| setup.bases.iter().any(|(b, _)| b == v));
            vec![vendor.ok_or_else(|| {
                anyhow::anyhow!("{slug:?} is not a fetched vendor here (oura or whoop, with its OAuth client configured)")
            })?]
        }
        None => setup.bases.iter().map(|(vendor, _)| *vendor).collect(),
    };
    let reconciler = Reconciler::new(Arc::clone(&setup.fetcher), setup.store.clone(), pool, &args.kafka, raw_topic)?;
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
