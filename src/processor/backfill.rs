//! Terra's large historical requests, tracked to completion.
//!
//! A request for more than a month of history arrives as `large_request_processing`, then
//! `large_request_sending` with `expected_payloads`, then that many data chunks, all carrying the
//! request's `terra-reference` header (vendors.md §1.1). The chunks are ordinary data events and
//! take the normal path (a new user's backfilled nights feed their baseline from day one); this
//! module only keeps count, per (Terra user, reference): when every expected chunk has arrived the
//! backfill is reported finished (a log line and `terra_backfills_total{outcome="completed"}`);
//! when chunks are still missing `timeout_ms` after the last sign of progress, the
//! `large_request_sending` notice is dead-lettered as `terra_backfill_incomplete`, naming the
//! reference and the missing count, so an operator can re-request the window.
//!
//! Chunks are told apart by the `:chunk:<n>` suffix Terra gives their delivery id
//! (`X-Terra-Trace-Id`), else by the delivery id itself, so a re-delivered chunk counts once.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::store::{KeyValueStore, key_part};

/// What the store keeps about one large request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    /// `expected_payloads` of the `large_request_sending` notice, once it came.
    pub expected: Option<u32>,
    /// The chunks received so far (their chunk number, or a hash of their delivery id).
    pub chunks: BTreeSet<u64>,
    /// When the last notice or chunk was processed (wall clock: this is delivery progress), ms.
    pub updated_ms: i64,
    /// The `large_request_sending` record, to dead-letter if the backfill never completes.
    pub sending: Option<SourceRecord>,
}

/// Where a record was read, and its bytes (a notice: small).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// What a backfill step came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Pending,
    /// Every expected chunk is in.
    Completed {
        chunks: usize,
    },
}

/// The store key of a large request: `<terra user>|<reference>`.
pub fn key(terra_user: &str, reference: &str) -> String {
    format!("{}|{}", key_part(terra_user), key_part(reference))
}

/// The chunk a delivery id names: Terra's `<id>:chunk:<n>`, else the whole id.
fn chunk_of(delivery_id: &str) -> u64 {
    if let Some(n) = delivery_id.rsplit_once(":chunk:").and_then(|(_, n)| n.parse().ok()) {
        return n;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(delivery_id.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) | (1 << 63)
}

fn finish(store: &mut dyn KeyValueStore<Backfill>, key: String, state: Backfill) -> Progress {
    match state.expected {
        Some(expected) if state.chunks.len() >= expected as usize => {
            store.delete(&key);
            crate::metrics::TERRA_BACKFILLS.with_label_values(&["completed"]).inc();
            tracing::info!(backfill = %key, chunks = state.chunks.len(), "Terra large historical request completed.");
            Progress::Completed { chunks: state.chunks.len() }
        }
        _ => {
            store.put(key, state);
            Progress::Pending
        }
    }
}

/// `large_request_processing`: the request has started.
pub fn started(store: &mut dyn KeyValueStore<Backfill>, terra_user: &str, reference: &str, now_ms: i64) -> Progress {
    let key = key(terra_user, reference);
    let mut state = store.get(&key).cloned().unwrap_or_default();
    state.updated_ms = now_ms;
    finish(store, key, state)
}

/// `large_request_sending`: `expected` chunks will follow.
pub fn sending(
    store: &mut dyn KeyValueStore<Backfill>,
    terra_user: &str,
    reference: &str,
    expected: u32,
    record: SourceRecord,
    now_ms: i64,
) -> Progress {
    let key = key(terra_user, reference);
    let mut state = store.get(&key).cloned().unwrap_or_default();
    state.expected = Some(expected);
    state.sending = Some(record);
    state.updated_ms = now_ms;
    finish(store, key, state)
}

/// A data chunk of the request arrived.
pub fn chunk(store: &mut dyn KeyValueStore<Backfill>, terra_user: &str, reference: &str, delivery_id: &str, now_ms: i64) -> Progress {
    let key = key(terra_user, reference);
    let mut state = store.get(&key).cloned().unwrap_or_default();
    state.chunks.insert(chunk_of(delivery_id));
    state.updated_ms = now_ms;
    finish(store, key, state)
}

/// Backfills with no progress for `timeout_ms` at `now_ms`: removed from the store
/// and returned, to be dead-lettered.
pub fn expire(store: &mut dyn KeyValueStore<Backfill>, now_ms: i64, timeout_ms: i64) -> Vec<(String, Backfill)> {
    let stale = store.keys_where(&|state: &Backfill| now_ms - state.updated_ms > timeout_ms);
    stale
        .into_iter()
        .filter_map(|key| {
            let state = store.get(&key).cloned()?;
            store.delete(&key);
            crate::metrics::TERRA_BACKFILLS.with_label_values(&["incomplete"]).inc();
            Some((key, state))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::store::MemoryStore;

    fn sending_record() -> SourceRecord {
        SourceRecord { topic: "raw-webhooks".into(), partition: 1, offset: 9, key: None, payload: b"{}".to_vec() }
    }

    #[test]
    fn a_backfill_completes_when_every_chunk_is_in_once() {
        let mut store = MemoryStore::default();
        assert_eq!(started(&mut store, "u", "ref", 0), Progress::Pending);
        assert_eq!(sending(&mut store, "u", "ref", 3, sending_record(), 10), Progress::Pending);
        assert_eq!(chunk(&mut store, "u", "ref", "trace:chunk:1", 20), Progress::Pending);
        assert_eq!(chunk(&mut store, "u", "ref", "trace:chunk:1", 21), Progress::Pending, "a re-delivered chunk counts once");
        assert_eq!(chunk(&mut store, "u", "ref", "trace:chunk:2", 22), Progress::Pending);
        assert_eq!(chunk(&mut store, "u", "ref", "trace:chunk:3", 23), Progress::Completed { chunks: 3 });
        assert!(store.map.is_empty());
    }

    #[test]
    fn chunks_before_the_sending_notice_count_too() {
        let mut store = MemoryStore::default();
        chunk(&mut store, "u", "ref", "a:chunk:1", 0);
        assert_eq!(sending(&mut store, "u", "ref", 1, sending_record(), 1), Progress::Completed { chunks: 1 });
    }

    #[test]
    fn a_stalled_backfill_expires_with_its_sending_notice() {
        let mut store = MemoryStore::default();
        sending(&mut store, "u", "ref", 3, sending_record(), 0);
        chunk(&mut store, "u", "ref", "t:chunk:1", 100);
        assert!(expire(&mut store, 1_000, 5_000).is_empty());
        let expired = expire(&mut store, 10_000, 5_000);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].1.chunks.len(), 1);
        assert_eq!(expired[0].1.sending, Some(sending_record()));
        assert!(store.map.is_empty());
    }
}
