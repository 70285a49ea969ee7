//! The history table's retention job (`sink postgres --retention 365d`, off by default): every
//! hour, rows measured longer ago than the retention are deleted, in batches so no transaction
//! holds many locks, and each sweep that deleted anything is written to the audit log.
//!
//! By `measured_at`, the time the data is about, not when it arrived: a late upload of old data is
//! deleted as soon as it lands, which is what a retention promise to a person means.

use std::time::Duration;

use sqlx::PgPool;

use crate::audit::{Action, Actor, Entry};
use crate::shutdown::CancellationToken;

/// Rows per DELETE.
const BATCH: i64 = 10_000;
/// Between sweeps, and after a failed one.
const EVERY: Duration = Duration::from_secs(3600);
const AFTER_FAILURE: Duration = Duration::from_secs(60);

/// `--retention`: whole days (`365d`) or hours (`36h`).
pub fn parse_retention(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let count: u64 = number.parse().map_err(|_| format!("{raw:?}: expected a number of days or hours, e.g. 365d or 36h"))?;
    let hours = match unit {
        "d" => count.checked_mul(24),
        "h" => Some(count),
        _ => return Err(format!("{raw:?}: expected a number of days or hours, e.g. 365d or 36h")),
    };
    match hours {
        Some(hours) if hours > 0 && hours <= 100 * 365 * 24 => Ok(Duration::from_secs(hours * 3600)),
        _ => Err(format!("{raw:?}: must be between 1h and 100 years")),
    }
}

/// Deletes every history row measured before `now - retention`; returns how many.
pub async fn sweep(pool: &PgPool, retention: Duration, sink: &str) -> sqlx::Result<u64> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention).expect("bounded by parse_retention");
    let mut deleted = 0;
    loop {
        let batch = sqlx::query(
            "DELETE FROM biometric_events WHERE event_id IN
               (SELECT event_id FROM biometric_events WHERE measured_at < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        deleted += batch;
        crate::metrics::SINK_RETENTION_DELETED.inc_by(batch);
        if batch < BATCH as u64 {
            break;
        }
    }
    if deleted > 0 {
        let entry = Entry::new(Actor::Service(sink.to_owned()), Action::RetentionDelete)
            .target("biometric_events")
            .detail("deleted", deleted)
            .detail("retention_hours", retention.as_secs() / 3600);
        crate::audit::record(pool, &entry).await?;
        tracing::info!(deleted, cutoff = %cutoff, "Retention deleted history rows.");
    }
    Ok(deleted)
}

/// Runs [`sweep`] hourly until shutdown; a failed sweep is logged and tried again in a minute.
pub async fn run(pool: PgPool, retention: Duration, sink: String, shutdown: CancellationToken) {
    tracing::info!(retention_hours = retention.as_secs() / 3600, "History retention is on.");
    loop {
        let wait = match sweep(&pool, retention, &sink).await {
            Ok(_) => EVERY,
            Err(error) => {
                tracing::warn!(%error, "The history retention sweep failed; trying again in a minute.");
                AFTER_FAILURE
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_is_days_or_hours() {
        assert_eq!(parse_retention("365d"), Ok(Duration::from_secs(365 * 86_400)));
        assert_eq!(parse_retention(" 36h "), Ok(Duration::from_secs(36 * 3600)));
        for bad in ["", "d", "365", "1y", "-3d", "0d", "99999999999999999999d", "40000d"] {
            assert!(parse_retention(bad).is_err(), "{bad:?}");
        }
    }
}
