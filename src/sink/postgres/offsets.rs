//! The sink's Kafka offsets, kept in PostgreSQL table `sink_offsets` next to the rows they
//! produced (Kafka Connect's exactly-once JDBC sink pattern): a batch's rows and its offsets commit
//! in one database transaction, so after any crash the table says exactly which records are in.
//! Kafka's own offset commits are never used.
//!
//! A batch transaction also *fences*: it takes a per-sink advisory lock, then checks that the
//! stored offsets of the partitions it moves are still the ones this instance started its batch
//! from. Another instance running under the same sink name (a zombie after a network partition, an
//! operator's mistake) has moved them otherwise, and the batch is rolled back instead of moving an
//! offset backwards or writing an older version of a row over a newer one.

use sqlx::{PgConnection, PgPool, QueryBuilder};

use super::batch::{Offsets, TopicPartition};

/// Every stored next offset of `sink`.
pub async fn load(pool: &PgPool, sink: &str) -> sqlx::Result<Offsets> {
    let rows: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT topic, partition, next_offset FROM sink_offsets WHERE sink = $1").bind(sink).fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(topic, partition, next)| ((topic, partition), next)).collect())
}

/// The stored offsets of `moving` disagree with what this instance expected.
#[derive(Debug, thiserror::Error)]
#[error("sink_offsets of {topic}[{partition}] is {stored:?}, this instance expected {expected:?}: another instance writes as this sink")]
pub struct Fenced {
    pub topic: String,
    pub partition: i32,
    pub stored: Option<i64>,
    pub expected: Option<i64>,
}

/// Inside the batch transaction: serialises writers of `sink` (lock held until commit or
/// rollback), then checks the stored offsets of the `moving` partitions against `expected`.
pub async fn lock_and_check<'a>(
    conn: &mut PgConnection,
    sink: &str,
    moving: impl Iterator<Item = &'a TopicPartition>,
    expected: &Offsets,
) -> sqlx::Result<Result<(), Fenced>> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('biometric-bridge sink ' || $1, 0))").bind(sink).execute(&mut *conn).await?;
    let stored: Offsets = sqlx::query_as::<_, (String, i32, i64)>("SELECT topic, partition, next_offset FROM sink_offsets WHERE sink = $1")
        .bind(sink)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(topic, partition, next)| ((topic, partition), next))
        .collect();
    for tp in moving {
        let (stored, expected) = (stored.get(tp).copied(), expected.get(tp).copied());
        if stored != expected {
            return Ok(Err(Fenced { topic: tp.0.clone(), partition: tp.1, stored, expected }));
        }
    }
    Ok(Ok(()))
}

/// Upserts the next offsets of `offsets` (non-empty) for `sink`.
pub async fn store(conn: &mut PgConnection, sink: &str, offsets: &Offsets) -> sqlx::Result<()> {
    let mut query = QueryBuilder::new("INSERT INTO sink_offsets (sink, topic, partition, next_offset) ");
    query.push_values(offsets, |mut values, ((topic, partition), next)| {
        values.push_bind(sink).push_bind(topic).push_bind(*partition).push_bind(*next);
    });
    query.push(" ON CONFLICT (sink, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset");
    query.build().execute(conn).await.map(|_| ())
}
