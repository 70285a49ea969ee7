//! `biometric-bridge users chart`: where a person's nights come from (the history table, or a
//! synthetic cohort person for a demonstration), and the file the picture goes to.

use std::path::PathBuf;

use anyhow::Context as _;
use sqlx::Row as _;

use super::chart::{self, ChartNight};
use super::cohort::{self, Model};
use super::evaluate;
use crate::config::DatabaseArgs;
use crate::processor::baseline::day_of;
use crate::topology::TopologyArgs;

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// Draw one person's nights as an SVG: nightly HRV with its 7-day mean and personal band,
    /// resting HR, respiratory rate and temperature where present, and every trigger marked.
    Chart(ChartArgs),
    /// Erase a person: revoke their connections (here and at the vendor), delete every row
    /// about them and their data keys (what is sealed for them in Kafka is then unreadable);
    /// the report names each place, and the exit is non-zero while any still holds
    /// data about them. Safe to re-run.
    #[command(after_long_help = "Secrets (environment only; NAME or NAME_FILE):
  TOKEN_ENCRYPTION_KEY[_FILE]       decrypts the connections' tokens to revoke them at the vendor
  PSEUDONYM_KEY[_FILE]              names the person in the audit log
  OURA_CLIENT_SECRET[_FILE]         refreshes an expired Oura token before revoking it
  WHOOP_CLIENT_SECRET[_FILE]        the same for WHOOP")]
    Erase(Box<crate::erasure::EraseArgs>),
}

#[derive(Debug, clap::Args)]
pub struct ChartArgs {
    /// The person (the events' `user_id`), read from the history table `biometric_events`.
    #[arg(long, required_unless_present = "synthetic")]
    pub user: Option<String>,
    /// Draw a synthetic cohort person instead, `SEED:INDEX` (the `evaluate` model's base
    /// variant), judged by the topology's rules. Needs no database.
    #[arg(long, conflicts_with = "user")]
    pub synthetic: Option<String>,
    /// The SVG file to write.
    #[arg(long, default_value = "chart.svg")]
    pub out: PathBuf,
    #[command(flatten)]
    pub topology: TopologyArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

pub async fn run(command: UsersCommand) -> anyhow::Result<()> {
    let args = match command {
        UsersCommand::Chart(args) => args,
        UsersCommand::Erase(args) => return crate::erasure::run(*args).await,
    };
    let topology = args.topology.load()?;
    let params = topology.baseline.unwrap_or_default();
    let (title, nights) = match (&args.user, &args.synthetic) {
        (_, Some(spec)) => synthetic(spec, &topology)?,
        (Some(user), None) => (format!("user {user}"), history(&args.database, user).await?),
        (None, None) => anyhow::bail!("give --user or --synthetic"),
    };
    if nights.is_empty() {
        anyhow::bail!("no nights to draw for {title}");
    }
    std::fs::write(&args.out, chart::render(&title, &nights, &params)).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("{}: {} nights of {title}", args.out.display(), nights.len());
    Ok(())
}

/// A person's sleep events from the history table, oldest first.
async fn history(database: &DatabaseArgs, user: &str) -> anyhow::Result<Vec<ChartNight>> {
    let pool = database.pool()?;
    let rows = sqlx::query(
        "SELECT local_date, hrv_rmssd_ms, metrics, triggers FROM biometric_events \
         WHERE user_id = $1 AND kind = 'SLEEP' AND local_date IS NOT NULL ORDER BY local_date, measured_at",
    )
    .bind(user)
    .fetch_all(&pool)
    .await
    .context("cannot read the history table biometric_events")?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    rows.iter()
        .map(|row| {
            let date: chrono::NaiveDate = row.try_get("local_date")?;
            let metrics: serde_json::Value = row.try_get("metrics")?;
            let triggers: Vec<crate::event::Trigger> = serde_json::from_value(row.try_get("triggers")?)?;
            let metric = |name: &str| metrics.get(name).and_then(serde_json::Value::as_f64);
            Ok(ChartNight {
                day: (date - epoch).num_days() as i32,
                rmssd_ms: row.try_get("hrv_rmssd_ms")?,
                resting_hr_bpm: metric("resting_heart_rate_bpm"),
                respiratory_rate: metric("respiratory_rate_bpm"),
                temperature_deviation_c: metric("temperature_deviation_celsius"),
                triggers: triggers.into_iter().map(|t| (t.trigger_type, t.severity)).collect(),
            })
        })
        .collect()
}

/// Cohort person `SEED:INDEX`, each delivery judged as the processor would.
fn synthetic(spec: &str, topology: &crate::topology::Topology) -> anyhow::Result<(String, Vec<ChartNight>)> {
    let (seed, index) = spec.split_once(':').context("--synthetic is SEED:INDEX")?;
    let (seed, index): (u64, usize) = (seed.parse().context("SEED")?, index.parse().context("INDEX")?);
    let model = Model::default();
    anyhow::ensure!(index < model.users, "INDEX must be below {}", model.users);
    let cohort = cohort::generate(&model, seed);
    let prepared = evaluate::prepare(&cohort);
    let rules = evaluate::Rules::of(topology);
    let mut nights: Vec<ChartNight> = Vec::new();
    evaluate::judge_deliveries(&prepared, &rules, |user, _, event| {
        let day = day_of(event);
        // A late copy the processor judged anyway: the chart shows the first verdict, as the
        // coach saw it.
        if user != index || nights.iter().any(|n| n.day == day) {
            return;
        }
        nights.push(ChartNight {
            day,
            rmssd_ms: event.hrv_rmssd_ms,
            resting_hr_bpm: event.resting_heart_rate_bpm,
            respiratory_rate: event.respiratory_rate_bpm,
            temperature_deviation_c: event.temperature_deviation_celsius,
            triggers: event.triggers.iter().map(|t| (t.trigger_type.clone(), t.severity)).collect(),
        });
    });
    nights.sort_by_key(|n| n.day);
    let episode = cohort
        .episodes
        .iter()
        .find(|e| e.user == index)
        .map_or_else(|| "no episode".to_owned(), |e| format!("episode nights {}-{}, symptoms night {}", e.onset, e.end, e.symptom_night));
    Ok((format!("synthetic person {seed}:{index} ({episode})"), nights))
}
