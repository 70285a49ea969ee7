//! One batch, one PostgreSQL transaction: fence check, multi-row upsert of the rows, upsert of
//! the offsets, commit. Either all of it is in the database or none of it.
//!
//! Errors are sorted by whose fault they are:
//! - a row PostgreSQL refuses (SQLSTATE class 22 "data exception" or 23 "integrity constraint
//!   violation") is the record's fault: the rows are then written one by one, each under its own
//!   savepoint, the refused one is logged, counted and skipped, and its offset is still stored —
//!   one bad row must not stop the sink forever;
//! - anything else (connection refused or lost, database restarting, a lock or serialization
//!   failure, even a missing table) is the database's: the transaction is rolled back and the
//!   caller retries the whole batch later.

use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use super::batch::{Batch, Offsets};
use super::offsets::{self, Fenced};
use super::rows::{COLUMNS, EventRow};

/// Rows per `INSERT` statement: 21 parameters each stays far below PostgreSQL's 65 535.
const ROWS_PER_STATEMENT: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a committed batch wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub rows: usize,
    pub rejected: usize,
}

/// Writes `batch` for `sink` in one transaction; `committed` is what this instance last stored.
pub async fn write(pool: &PgPool, sink: &str, batch: &Batch, committed: &Offsets) -> Result<Written, WriteError> {
    let mut tx = pool.begin().await?;
    offsets::lock_and_check(&mut tx, sink, batch.offsets().keys(), committed).await??;
    if !batch.erased().is_empty() {
        // Before the upsert: a row the person uploaded after their erase is in the batch, and stays.
        let erased = sqlx::query("DELETE FROM biometric_events WHERE user_id = ANY($1)").bind(batch.erased()).execute(&mut *tx).await?;
        tracing::info!(people = batch.erased().len(), rows = erased.rows_affected(), "USER_ERASED: deleted the people's history rows.");
    }
    let written = upsert_rows(&mut tx, batch.rows()).await?;
    if !batch.offsets().is_empty() {
        offsets::store(&mut tx, sink, batch.offsets()).await?;
    }
    tx.commit().await?;
    Ok(written)
}

/// Whether PostgreSQL refused the data itself rather than failing to store it.
fn is_refused_row(error: &sqlx::Error) -> bool {
    let code = error.as_database_error().and_then(|error| error.code());
    code.is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}

async fn execute(conn: &mut PgConnection, sql: &'static str) -> sqlx::Result<()> {
    sqlx::query(sql).execute(conn).await.map(|_| ())
}

async fn upsert_rows(conn: &mut PgConnection, rows: &[EventRow]) -> sqlx::Result<Written> {
    if rows.is_empty() {
        return Ok(Written { rows: 0, rejected: 0 });
    }
    execute(conn, "SAVEPOINT sink_rows").await?;
    let mut all_at_once = Ok(());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        all_at_once = insert(conn, chunk).await;
        if all_at_once.is_err() {
            break;
        }
    }
    match all_at_once {
        Ok(()) => Ok(Written { rows: rows.len(), rejected: 0 }),
        Err(error) if is_refused_row(&error) => {
            tracing::warn!(%error, rows = rows.len(), "PostgreSQL refused a row; writing this batch row by row to skip it.");
            execute(conn, "ROLLBACK TO SAVEPOINT sink_rows").await?;
            one_by_one(conn, rows).await
        }
        Err(error) => Err(error),
    }
}

async fn one_by_one(conn: &mut PgConnection, rows: &[EventRow]) -> sqlx::Result<Written> {
    let mut written = Written { rows: 0, rejected: 0 };
    for row in rows {
        execute(conn, "SAVEPOINT sink_row").await?;
        match insert(conn, std::slice::from_ref(row)).await {
            Ok(()) => {
                execute(conn, "RELEASE SAVEPOINT sink_row").await?;
                written.rows += 1;
            }
            Err(error) if is_refused_row(&error) => {
                execute(conn, "ROLLBACK TO SAVEPOINT sink_row").await?;
                crate::metrics::ERRORS.with_label_values(&["sink", "row_refused"]).inc();
                tracing::error!(%error, event_id = %row.event_id, "PostgreSQL refused an event row; skipped.");
                written.rejected += 1;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(written)
}

/// `INSERT ... VALUES (...), (...) ON CONFLICT (event_id) DO UPDATE SET <every column>`: a
/// re-delivered or updated event replaces its row.
async fn insert(conn: &mut PgConnection, rows: &[EventRow]) -> sqlx::Result<()> {
    let mut query = QueryBuilder::<Postgres>::new(format!("INSERT INTO biometric_events ({}) ", COLUMNS.join(", ")));
    query.push_values(rows, |mut values, row| {
        values
            .push_bind(row.event_id)
            .push_bind(&row.user_id)
            .push_bind(row.vendor)
            .push_bind(&row.vendor_user_id)
            .push_bind(&row.source_device)
            .push_bind(row.kind)
            .push_bind(row.measured_at)
            .push_bind(row.measured_until)
            .push_bind(row.local_date)
            .push_bind(row.received_at)
            .push_bind(row.hrv_rmssd_ms)
            .push_bind(row.hrv_sdnn_ms)
            .push_bind(row.priority)
            .push_bind(sqlx::types::Json(&row.triggers))
            .push_bind(sqlx::types::Json(&row.metrics))
            .push_bind(&row.trace_id)
            .push_bind(&row.source_topic)
            .push_bind(row.source_partition)
            .push_bind(row.source_offset)
            .push_bind(&row.vendor_record_id)
            .push_bind(row.retracts_event_id)
            .push_bind(sqlx::types::Json(&row.data_quality));
    });
    query.push(" ON CONFLICT (event_id) DO UPDATE SET ");
    let mut set = query.separated(", ");
    for column in &COLUMNS[1..] {
        set.push(format!("{column} = EXCLUDED.{column}"));
    }
    set.push("written_at = now()");
    query.build().execute(conn).await.map(|_| ())
}
