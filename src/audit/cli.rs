//! `biometric-bridge audit list`: reads the audit log, newest `--limit` rows that match, oldest
//! first, as aligned text or JSON lines.

use std::io::Write;

use anyhow::Context;

use super::{Action, Filter, Pseudonymizer, Row};
use crate::config::DatabaseArgs;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Print audit records: who did what to whose data, when, and the outcome.
    List {
        /// Only records about this user (needs PSEUDONYM_KEY: the log holds pseudonyms, not ids).
        #[arg(long)]
        user: Option<String>,
        /// Only this action.
        #[arg(long, value_enum)]
        action: Option<Action>,
        /// Only records at or after this time (RFC 3339 or ms since the epoch).
        #[arg(long, value_parser = crate::dlq::parse_since)]
        since: Option<i64>,
        /// Only failed actions.
        #[arg(long)]
        failed: bool,
        /// At most this many records (the newest).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::List { user, action, since, failed, limit, json, database } = command;
    let subject = match &user {
        None => None,
        Some(user) => {
            let pseudonyms = Pseudonymizer::from_env()?
                .context("--user needs PSEUDONYM_KEY (or PSEUDONYM_KEY_FILE): the log holds pseudonyms, not user ids")?;
            Some(pseudonyms.user(user))
        }
    };
    let since = since.map(|ms| chrono::DateTime::from_timestamp_millis(ms).context("--since is out of range")).transpose()?;
    let filter = Filter { subject, action, since, failed_only: failed, limit: i64::from(limit) };
    let pool = database.migrated_pool().await?;
    let rows = super::list(&pool, &filter).await.context("reading audit_log")?;
    let mut out = std::io::stdout().lock();
    for row in &rows {
        if json {
            writeln!(out, "{}", serde_json::to_string(row)?)?;
        } else {
            writeln!(out, "{}", line(row))?;
        }
    }
    Ok(())
}

/// One text line: time, outcome, action, actor, subject, target, detail.
pub fn line(row: &Row) -> String {
    format!(
        "{}  {:<6}  {:<17}  {}:{}  subject={}  target={}  {}",
        row.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        row.outcome,
        row.action,
        row.actor_kind,
        row.actor,
        row.subject.as_deref().unwrap_or("-"),
        row.target.as_deref().unwrap_or("-"),
        row.detail
    )
}
