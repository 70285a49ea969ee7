//! The open batch: rows to upsert and the offsets to store with them. Pure, so the two rules that
//! keep the sink exactly-once are unit-tested here:
//!
//! - **one row per event id, last write wins by offset**: a batch can hold the same event twice
//!   (a re-delivery, a vendor update); PostgreSQL refuses a multi-row `ON CONFLICT DO UPDATE` that
//!   touches one row twice, and the later record is the newer truth, so it replaces the earlier
//!   one here;
//! - **the stored offset is the next one to read**: past every record consumed into the batch,
//!   including those that were skipped (undecodable), and past the transaction markers and aborted
//!   records librdkafka steps over (the consumer position), so a restart neither re-reads nor
//!   misses anything and a caught-up sink's offsets equal the topics' end offsets;
//! - **an erasure deletes what came before it**: a `USER_ERASED` event drops the person's rows
//!   pushed before it in this batch and is itself never a row (it would keep their id); the
//!   writer deletes their rows already in the table before it upserts the rest, so a row the
//!   person uploaded after their erase survives.

use std::collections::{BTreeMap, HashMap};

use super::rows::EventRow;

/// `(topic, partition)`.
pub type TopicPartition = (String, i32);

/// Next offset to read, per partition: what `sink_offsets` holds.
pub type Offsets = BTreeMap<TopicPartition, i64>;

#[derive(Debug, Default)]
pub struct Batch {
    rows: Vec<EventRow>,
    /// Index into `rows` by event id, for last-write-wins.
    by_event: HashMap<uuid::Uuid, usize>,
    next_offsets: Offsets,
    records: usize,
    /// People erased by a `USER_ERASED` event in this batch.
    erased: Vec<String>,
}

impl Batch {
    /// Records consumed into the batch, written or skipped.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Nothing to write: no record and no offset to move.
    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.next_offsets.is_empty()
    }

    /// Adds the record at `topic/partition/offset`; `row` is `None` for a record that is skipped
    /// (it still moves the offset: it must not be read again).
    pub fn push(&mut self, topic: &str, partition: i32, offset: i64, row: Option<EventRow>) {
        self.records += 1;
        self.advance(topic, partition, offset + 1);
        let Some(row) = row else { return };
        if row.kind == crate::event::EventKind::UserErased.symbol() {
            self.rows.retain(|kept| kept.user_id != row.user_id);
            self.by_event = self.rows.iter().enumerate().map(|(index, kept)| (kept.event_id, index)).collect();
            if !self.erased.contains(&row.user_id) {
                self.erased.push(row.user_id);
            }
            return;
        }
        match self.by_event.get(&row.event_id) {
            Some(&index) => self.rows[index] = row,
            None => {
                self.by_event.insert(row.event_id, self.rows.len());
                self.rows.push(row);
            }
        }
    }

    /// Moves a partition's next offset forward to `next` (never back): the consumer position can
    /// be past the last record when transaction markers or aborted records followed it.
    pub fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        let entry = self.next_offsets.entry((topic.to_owned(), partition)).or_insert(next);
        *entry = (*entry).max(next);
    }

    /// Keeps only the offsets that move past `committed` (an offset-only batch that moves
    /// nothing is then empty and needs no transaction).
    pub fn drop_unmoved(&mut self, committed: &Offsets) {
        self.next_offsets.retain(|tp, next| committed.get(tp).is_none_or(|done| *next > *done));
    }

    /// The rows, one per event id.
    pub fn rows(&self) -> &[EventRow] {
        &self.rows
    }

    /// The people whose rows already in the table are deleted before this batch's rows are written.
    pub fn erased(&self) -> &[String] {
        &self.erased
    }

    /// The offsets to store with the rows.
    pub fn offsets(&self) -> &Offsets {
        &self.next_offsets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u128, offset: i64) -> EventRow {
        EventRow {
            event_id: uuid::Uuid::from_u128(id),
            user_id: "u".into(),
            vendor: "TERRA",
            vendor_user_id: "v".into(),
            source_device: None,
            kind: "SLEEP",
            measured_at: chrono::DateTime::UNIX_EPOCH,
            measured_until: None,
            local_date: None,
            received_at: chrono::DateTime::UNIX_EPOCH,
            hrv_rmssd_ms: None,
            hrv_sdnn_ms: None,
            priority: "NORMAL",
            triggers: serde_json::json!([]),
            metrics: serde_json::json!({}),
            trace_id: None,
            source_topic: "raw".into(),
            source_partition: 0,
            source_offset: offset,
            vendor_record_id: None,
            retracts_event_id: None,
            data_quality: serde_json::json!([]),
        }
    }

    #[test]
    fn an_erasure_drops_the_person_s_earlier_rows_and_keeps_later_ones_and_others() {
        let mut batch = Batch::default();
        let of = |id: u128, user: &str, kind: &'static str, offset: i64| EventRow { user_id: user.into(), kind, ..row(id, offset) };
        batch.push("t", 0, 0, Some(of(1, "gone", "SLEEP", 0)));
        batch.push("t", 0, 1, Some(of(2, "kept", "SLEEP", 1)));
        batch.push("t", 0, 2, Some(of(3, "gone", "HRV", 2)));
        batch.push("t", 0, 3, Some(of(4, "gone", "USER_ERASED", 3)));
        batch.push("t", 0, 4, Some(of(5, "gone", "SLEEP", 4)));
        batch.push("t", 0, 5, Some(of(2, "kept", "SLEEP", 5)));
        let ids: Vec<u128> = batch.rows().iter().map(|row| row.event_id.as_u128()).collect();
        assert_eq!(ids, [2, 5], "the erased person's rows before the erase are gone, the erase is no row");
        assert_eq!(batch.rows()[0].source_offset, 5, "last write still wins after the index was rebuilt");
        assert_eq!(batch.erased(), ["gone"]);
        assert_eq!(batch.offsets()[&("t".to_owned(), 0)], 6);
    }

    #[test]
    fn the_later_record_of_an_event_wins() {
        let mut batch = Batch::default();
        batch.push("events", 0, 10, Some(row(1, 100)));
        batch.push("events", 0, 11, Some(row(2, 101)));
        batch.push("events", 0, 12, Some(row(1, 102)));
        assert_eq!(batch.records(), 3);
        let rows: Vec<(u128, i64)> = batch.rows().iter().map(|r| (r.event_id.as_u128(), r.source_offset)).collect();
        assert_eq!(rows, [(1, 102), (2, 101)]);
    }

    #[test]
    fn offsets_are_the_next_to_read_including_skipped_records() {
        let mut batch = Batch::default();
        batch.push("a", 0, 5, Some(row(1, 0)));
        batch.push("a", 1, 7, None);
        batch.push("b", 0, 0, Some(row(2, 0)));
        batch.push("a", 0, 6, None);
        let expected: Offsets = [(("a".into(), 0), 7), (("a".into(), 1), 8), (("b".into(), 0), 1)].into();
        assert_eq!(batch.offsets(), &expected);
        assert_eq!(batch.rows().len(), 2);
    }

    #[test]
    fn the_position_only_moves_offsets_forward() {
        let mut batch = Batch::default();
        batch.push("a", 0, 5, None);
        batch.advance("a", 0, 8); // a commit marker at 6, an aborted record at 7
        batch.advance("a", 0, 3);
        assert_eq!(batch.offsets().get(&("a".into(), 0)), Some(&8));
    }

    #[test]
    fn an_offset_only_batch_that_moves_nothing_is_empty() {
        let committed: Offsets = [(("a".into(), 0), 8)].into();
        let mut batch = Batch::default();
        assert!(batch.is_empty());
        batch.advance("a", 0, 8);
        batch.drop_unmoved(&committed);
        assert!(batch.is_empty());
        batch.advance("a", 0, 9);
        batch.advance("a", 1, 0);
        batch.drop_unmoved(&committed);
        assert_eq!(batch.offsets().len(), 2, "a move and a first offset are kept");
        assert!(!batch.is_empty());
    }
}
